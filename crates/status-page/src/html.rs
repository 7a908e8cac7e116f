//! The pieces every page is made of: escaping, links that keep a page's query, the frame with
//! its navigation, clock, auto-refresh switch and style sheet (which stacks tables into cards on a
//! narrow screen), and how far an instant is from now. Instants themselves are written by
//! `doorsync-catalogue`'s `LocalTimes`, in a named zone.

use std::fmt::{self, Display, Write as _};

use doorsync_catalogue::LocalTimes;
use doorsync_proto::Timestamp;
/// Writes its text with `&`, `<`, `>`, `"` and `'` escaped, so that names and emails from Nexudus
/// (or any other text) can go into element content and attribute values alike.
pub(crate) struct Esc<T>(pub(crate) T);

impl<T: Display> Display for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// Appends formatted text to a page being built; writing to a `String` cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = ::std::fmt::Write::write_fmt(&mut *$out, format_args!($($arg)*));
    }};
}
pub(crate) use put;

const STYLE: &str = r#"
:root { --ink: #1d2430; --muted: #5b6574; --line: #d9dee6; --soft: #f4f6f9; --accent: #2458c6;
        --ok: #1f7a4d; --warn: #a15c00; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #fff; overflow-wrap: anywhere; }
header { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; align-items: baseline; padding: .7rem 1.5rem; background: var(--ink); color: #fff; }
header a { color: #fff; text-decoration: none; opacity: .85; }
header a:hover, header a[aria-current] { opacity: 1; text-decoration: underline; }
header .brand { font-weight: 700; font-size: 1.1rem; opacity: 1; }
header .clock { margin-left: auto; font-variant-numeric: tabular-nums; opacity: .85; }
header .toggle { border: 1px solid #ffffff66; border-radius: 999px; padding: 0 .6rem; }
main { padding: 1rem 1.5rem 3rem; max-width: 1400px; }
h1 { font-size: 1.4rem; margin: .4rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.8rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: .95rem; margin: 1rem 0 .4rem; color: var(--muted); }
a { color: var(--accent); }
small, .id { color: var(--muted); font-size: .8em; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(320px, 100%), 1fr)); gap: 1rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem 1rem; background: #fff; min-width: 0; }
.card h2 { margin-top: .2rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; min-width: 0; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0 .6rem; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; font-size: .85rem; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600; }
.pill.ok { background: #dff3e8; color: var(--ok); }
.pill.warn { background: #fff0d9; color: var(--warn); }
.pill.bad { background: #fbe2e0; color: var(--bad); }
.pill.idle { background: var(--soft); color: var(--muted); }
.group { display: inline-block; margin: 0 .3rem .2rem 0; padding: 0 .45rem; border-radius: 4px; background: #e3ebfb; }
.group.next { background: var(--soft); }
.muted { color: var(--muted); }
.alert { border-left: 4px solid var(--bad); background: #fdf1f0; padding: .5rem .8rem; margin: .5rem 0; }
.note { border-left: 4px solid var(--warn); background: #fff8ec; padding: .5rem .8rem; margin: .5rem 0; }
.banner { border: 2px solid var(--bad); background: #fdf1f0; border-radius: 8px; padding: .6rem .9rem; margin: 0 0 1rem; }
.pager { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; margin: .5rem 0; }
form.search { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 .6rem; }
form.search input[type=search] { flex: 1 1 16rem; min-width: 0; padding: .35rem .5rem; font: inherit; }
form.search select, form.search button { font: inherit; padding: .3rem .5rem; }
nav.filters { display: flex; flex-wrap: wrap; gap: .3rem .8rem; margin: 0 0 1rem; }
nav.filters a[aria-current] { font-weight: 700; color: var(--ink); text-decoration: none; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85em; }
.timeline-box { overflow-x: auto; max-width: 100%; }
.timeline { width: 100%; min-width: 640px; height: auto; max-width: 1300px; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
.timeline text { font: 11px system-ui, sans-serif; fill: var(--ink); }
.timeline .tick { stroke: #eef1f5; }
.timeline .tick.day { stroke: #b8c0cc; }
.timeline .ticklabel { fill: var(--muted); }
.timeline .now { stroke: var(--bad); stroke-width: 2; }
.timeline .nowlabel { fill: var(--bad); font-weight: 600; }
.timeline .lane { fill: var(--soft); }
.timeline .lanehead { font-weight: 600; }
.timeline .bar.access { fill: #2458c6; }
.timeline .bar.access.later { fill: #7d9de0; }
.timeline .bar.booking { fill: #3a9bd9; }
.timeline .bar.pass { fill: #2e9e6a; }
.timeline .bar.contract { fill: #8a5cc2; }
.timeline .bar.kisi { fill: #fff; stroke: #1d2430; stroke-width: 1.5; stroke-dasharray: 4 2; }
.timeline .outside { fill: var(--muted); font-style: italic; }
ul.agenda { list-style: none; padding: 0; margin: .4rem 0 1rem; }
ul.agenda li { padding: .3rem 0; border-bottom: 1px solid var(--line); }
.legend span { display: inline-block; margin-right: 1rem; }
.legend i { display: inline-block; width: 1.4em; height: .8em; margin-right: .3em; vertical-align: middle; border-radius: 2px; }
form.inline { display: inline; margin-right: .3rem; }
@media (max-width: 720px) {
  header, main { padding-left: .8rem; padding-right: .8rem; }
  header .clock { margin-left: 0; }
  table.stack, table.stack tbody, table.stack tr, table.stack td { display: block; width: 100%; }
  table.stack tr:first-child:has(th) { display: none; }
  table.stack tr { border: 1px solid var(--line); border-radius: 8px; margin: 0 0 .6rem; padding: .3rem .2rem; }
  table.stack td { border: 0; padding: .15rem .5rem; text-align: left; }
  table.stack td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); font-size: .85em; }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd { margin-bottom: .3rem; }
}
"#;

/// The sections the header links to; the one a page belongs to is marked current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    FrontDesk,
    System,
    DeadLetters,
}

/// How often a page reloads itself when auto-refresh is on.
pub(crate) const REFRESH_SECONDS: u32 = 10;

/// What surrounds a page's body.
pub(crate) struct Frame<'a> {
    pub(crate) title: &'a str,
    pub(crate) section: Option<Section>,
    /// The time now in the operator's zone, zone named.
    pub(crate) clock: String,
    /// Reload every this many seconds.
    pub(crate) refresh: Option<u32>,
    /// The page's path and its query but `refresh`: where the auto-refresh switch leads.
    pub(crate) path: &'a str,
    pub(crate) query: Vec<(&'static str, String)>,
}

/// A whole page: the header with the navigation, the clock and the auto-refresh switch, then
/// `body`.
pub(crate) fn page(frame: &Frame<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 1_024);
    put!(&mut out, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    put!(&mut out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(seconds) = frame.refresh {
        put!(&mut out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    put!(&mut out, "<title>{} · doorsync</title><style>{STYLE}</style>", Esc(frame.title));
    out.push_str("</head><body><header><a class=\"brand\" href=\"/\">doorsync</a>");
    for (section, href, label) in [
        (Section::FrontDesk, "/", "Front desk"),
        (Section::System, "/system", "System"),
        (Section::DeadLetters, "/dead-letters", "Dead letters"),
    ] {
        let current = if frame.section == Some(section) { " aria-current=\"page\"" } else { "" };
        put!(&mut out, "<a href=\"{href}\"{current}>{label}</a>");
    }
    put!(&mut out, "<span class=\"clock\">{}</span>{}</header>", Esc(&frame.clock), refresh_switch(frame));
    put!(&mut out, "<main>{body}</main></body></html>");
    out
}

/// "Auto-refresh: off" leading to the page reloading itself, or "Auto-refresh: every 10 s"
/// leading back to the still page; either keeps the page's own query.
fn refresh_switch(frame: &Frame<'_>) -> String {
    let (on, text, mut query) = match frame.refresh {
        Some(seconds) => (true, format!("Auto-refresh: every {seconds} s"), frame.query.clone()),
        None => {
            let mut query = frame.query.clone();
            query.push(("refresh", REFRESH_SECONDS.to_string()));
            (false, "Auto-refresh: off".to_owned(), query)
        }
    };
    query.retain(|(_, value)| !value.is_empty());
    let title = if on { "Stop reloading this page" } else { "Reload this page every 10 seconds" };
    format!(
        "<a class=\"toggle\" role=\"switch\" aria-checked=\"{on}\" title=\"{title}\" href=\"{}\">{}</a>",
        Esc(link(frame.path, &query)),
        Esc(text)
    )
}

/// `path` with `query` (names and values percent-encoded; empty values left out).
pub(crate) fn link(path: &str, query: &[(&str, String)]) -> String {
    let mut out = path.to_owned();
    let mut separator = '?';
    for (name, value) in query.iter().filter(|(_, value)| !value.is_empty()) {
        put!(&mut out, "{separator}{}={}", encode(name), encode(value));
        separator = '&';
    }
    out
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            put!(&mut out, "%{byte:02X}");
        }
    }
    out
}

/// How far `at` is from `now`: `in 2 h 5 min`, `3 min ago`, `now`.
pub(crate) fn relative(at: Timestamp, now: Timestamp) -> String {
    let millis = at.as_unix_millis() - now.as_unix_millis();
    let minutes = millis.unsigned_abs() / 60_000;
    let span = match minutes {
        0 => return "now".to_owned(),
        1..60 => format!("{minutes} min"),
        60..2_880 if minutes.is_multiple_of(60) => format!("{} h", minutes / 60),
        60..2_880 => format!("{} h {} min", minutes / 60, minutes % 60),
        _ => format!("{} days", minutes / 1_440),
    };
    if millis > 0 { format!("in {span}") } else { format!("{span} ago") }
}

/// An instant in `times`'s zone with how far it is from now: `13:15 Europe/London (in 5 min)`.
pub(crate) fn instant_from_now(times: &LocalTimes, at: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", times.instant(at), relative(at, now))
}

/// Appends a `<dl>` of labels and values; each value is HTML already (escape text with [`Esc`]).
pub(crate) fn facts<'a>(out: &mut String, rows: impl IntoIterator<Item = (&'a str, String)>) {
    out.push_str("<dl class=\"facts\">");
    for (label, value) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", Esc(label));
    }
    out.push_str("</dl>");
}

/// A coloured label: `tone` is one of `ok`, `warn`, `bad`, `idle`.
pub(crate) fn pill(tone: &str, text: &str) -> String {
    format!("<span class=\"pill {tone}\">{}</span>", Esc(text))
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;

    #[test]
    fn markup_in_text_is_escaped_for_content_and_attributes() {
        let text = r#"Ada <script>alert("x")</script> & Bo's"#;
        assert_eq!(Esc(text).to_string(), "Ada &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Bo&#39;s");
        assert_eq!(Esc("plain").to_string(), "plain");
        assert_eq!(Esc("é ü — ok").to_string(), "é ü — ok");
    }

    #[test]
    fn instants_are_told_relative_to_now_and_in_a_named_zone() {
        // 2026-12-01T09:15:00Z
        let at = Timestamp::from_unix_millis(1_796_116_500_000);
        let later = |minutes: i64| Timestamp::from_unix_millis(at.as_unix_millis() + minutes * 60_000);
        assert_eq!(relative(later(0), at), "now");
        assert_eq!(relative(later(5), at), "in 5 min");
        assert_eq!(relative(later(-120), at), "2 h ago");
        assert_eq!(relative(later(125), at), "in 2 h 5 min");
        assert_eq!(relative(later(3 * 1_440), at), "in 3 days");
        let new_york = LocalTimes::new(TimeZone::get("America/New_York").unwrap(), at);
        assert_eq!(instant_from_now(&new_york, later(5), at), "04:20 America/New_York (in 5 min)");
    }

    fn frame(refresh: Option<u32>) -> Frame<'static> {
        Frame {
            title: "Member <1>",
            section: Some(Section::FrontDesk),
            clock: "09:15 Europe/London".into(),
            refresh,
            path: "/",
            query: vec![("q", "ada & co".into()), ("filter", String::new())],
        }
    }

    #[test]
    fn a_page_has_the_navigation_the_clock_and_an_auto_refresh_switch_that_keeps_the_query() {
        let html = page(&frame(None), "<p>body</p>");
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<title>Member &lt;1&gt; · doorsync</title>"));
        assert!(html.contains("<a href=\"/\" aria-current=\"page\">Front desk</a><a href=\"/system\">System</a>"));
        assert!(html.contains("<a href=\"/dead-letters\">Dead letters</a>"));
        assert!(html.contains("<span class=\"clock\">09:15 Europe/London</span>"));
        assert!(!html.contains("http-equiv") && !html.contains("<script"), "still, and no script: {html}");
        assert!(html.contains("aria-checked=\"false\""), "{html}");
        assert!(html.contains("href=\"/?q=ada%20%26%20co&amp;refresh=10\">Auto-refresh: off</a>"), "{html}");
        assert!(html.ends_with("<p>body</p></main></body></html>"));

        let reloading = page(&frame(Some(10)), "");
        assert!(reloading.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(reloading.contains("aria-checked=\"true\""));
        assert!(reloading.contains("href=\"/?q=ada%20%26%20co\">Auto-refresh: every 10 s</a>"), "{reloading}");
    }

    #[test]
    fn links_encode_their_query_and_leave_out_empty_values() {
        assert_eq!(link("/", &[("q", "é/ü?".into()), ("page", String::new())]), "/?q=%C3%A9%2F%C3%BC%3F");
        assert_eq!(link("/system", &[]), "/system");
    }
}
