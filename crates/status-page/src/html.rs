//! The pieces every page is made of: escaping, the frame with its style sheet, and how instants
//! and spans of time are written.

use std::fmt::{self, Display, Write as _};

use doorsync_access::Window;
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
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #fff; }
header { display: flex; gap: 1.5rem; align-items: baseline; padding: .8rem 1.5rem; background: var(--ink); color: #fff; }
header a { color: #fff; text-decoration: none; opacity: .85; }
header a:hover { opacity: 1; text-decoration: underline; }
header .brand { font-weight: 700; font-size: 1.1rem; opacity: 1; }
header .clock { margin-left: auto; font-variant-numeric: tabular-nums; opacity: .8; }
main { padding: 1rem 1.5rem 3rem; max-width: 1400px; }
h1 { font-size: 1.4rem; margin: .4rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.8rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: .95rem; margin: 1rem 0 .4rem; color: var(--muted); }
a { color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem 1rem; background: #fff; }
.card h2 { margin-top: .2rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0 .6rem; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; font-size: .85rem; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600; }
.pill.ok { background: #dff3e8; color: var(--ok); }
.pill.warn { background: #fff0d9; color: var(--warn); }
.pill.bad { background: #fbe2e0; color: var(--bad); }
.pill.idle { background: var(--soft); color: var(--muted); }
.group { display: inline-block; margin: 0 .3rem .2rem 0; padding: 0 .45rem; border-radius: 4px; background: #e3ebfb; white-space: nowrap; }
.group.next { background: var(--soft); }
.muted { color: var(--muted); }
.alert { border-left: 4px solid var(--bad); background: #fdf1f0; padding: .5rem .8rem; margin: .5rem 0; }
.note { border-left: 4px solid var(--warn); background: #fff8ec; padding: .5rem .8rem; margin: .5rem 0; }
.pager { display: flex; gap: 1rem; align-items: center; margin: .5rem 0; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85em; }
.timeline { width: 100%; height: auto; max-width: 1300px; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
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
.legend span { display: inline-block; margin-right: 1rem; }
.legend i { display: inline-block; width: 1.4em; height: .8em; margin-right: .3em; vertical-align: middle; border-radius: 2px; }
form.inline { display: inline; margin-right: .3rem; }
"#;

/// A whole page: the header with the navigation and the time, then `body`. With `refresh`, the
/// browser reloads the page every that many seconds.
pub(crate) fn page(title: &str, now: Timestamp, refresh: Option<u32>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 1_024);
    put!(&mut out, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    put!(&mut out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(seconds) = refresh {
        put!(&mut out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    put!(&mut out, "<title>{} · doorsync</title><style>{STYLE}</style></head><body>", Esc(title));
    let reload = match refresh {
        Some(seconds) => format!("reloads every {seconds} s · <a href=\"?\">stop</a>"),
        None => "<a href=\"?refresh=10\">reload every 10 s</a>".to_owned(),
    };
    put!(
        &mut out,
        "<header><a class=\"brand\" href=\"/\">doorsync</a><a href=\"/\">Overview</a>\
         <a href=\"/dead-letters\">Dead letters</a><span class=\"clock\">{} · {reload}</span></header>\
         <main>{body}</main></body></html>",
        instant(now)
    );
    out
}

/// `2026-12-01 09:15:00 UTC`
pub(crate) fn instant(at: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(at.as_unix_millis()) {
        Ok(instant) => instant.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => at.to_string(),
    }
}

/// `09:15` (UTC), for labels where the day is clear.
pub(crate) fn clock_time(at: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(at.as_unix_millis()) {
        Ok(instant) => instant.strftime("%H:%M").to_string(),
        Err(_) => at.to_string(),
    }
}

/// `Tue 1 Dec` (UTC).
pub(crate) fn day(at: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(at.as_unix_millis()) {
        Ok(instant) => instant.strftime("%a %-d %b").to_string(),
        Err(_) => at.to_string(),
    }
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

/// An instant with how far it is from now, for tables: `2026-12-01 09:15:00 UTC (in 5 min)`.
pub(crate) fn instant_from_now(at: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", instant(at), relative(at, now))
}

/// `from 09:00 (Tue 1 Dec) until 10:30 (Tue 1 Dec)`, open ends said as such.
pub(crate) fn window(window: &Window) -> String {
    let at = |instant: Timestamp| format!("{} ({})", clock_time(instant), day(instant));
    match (window.from, window.until) {
        (Some(from), Some(until)) => format!("from {} until {}", at(from), at(until)),
        (Some(from), None) => format!("from {}, no end", at(from)),
        (None, Some(until)) => format!("until {}", at(until)),
        (None, None) => "always".to_owned(),
    }
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
    use super::*;

    #[test]
    fn markup_in_text_is_escaped_for_content_and_attributes() {
        let text = r#"Ada <script>alert("x")</script> & Bo's"#;
        assert_eq!(Esc(text).to_string(), "Ada &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Bo&#39;s");
        assert_eq!(Esc("plain").to_string(), "plain");
        assert_eq!(Esc("é ü — ok").to_string(), "é ü — ok");
    }

    #[test]
    fn instants_are_written_in_utc_and_relative_to_now() {
        // 2026-12-01T09:15:00Z
        let at = Timestamp::from_unix_millis(1_796_116_500_000);
        assert_eq!(instant(at), "2026-12-01 09:15:00 UTC");
        assert_eq!(clock_time(at), "09:15");
        assert_eq!(day(at), "Tue 1 Dec");
        let later = |minutes: i64| Timestamp::from_unix_millis(at.as_unix_millis() + minutes * 60_000);
        assert_eq!(relative(later(0), at), "now");
        assert_eq!(relative(later(5), at), "in 5 min");
        assert_eq!(relative(later(-120), at), "2 h ago");
        assert_eq!(relative(later(125), at), "in 2 h 5 min");
        assert_eq!(relative(later(3 * 1_440), at), "in 3 days");
        let open = Window { from: Some(at), until: None };
        assert_eq!(window(&open), "from 09:15 (Tue 1 Dec), no end");
        let closed = Window { from: Some(at), until: Some(later(90)) };
        assert_eq!(window(&closed), "from 09:15 (Tue 1 Dec) until 10:45 (Tue 1 Dec)");
    }

    #[test]
    fn a_page_has_the_navigation_the_clock_and_an_escaped_title() {
        let html = page("Member <1>", Timestamp::from_unix_millis(0), Some(10), "<p>body</p>");
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<title>Member &lt;1&gt; · doorsync</title>"));
        assert!(html.contains("href=\"/dead-letters\""));
        assert!(html.contains("1970-01-01 00:00:00 UTC"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(html.contains("reloads every 10 s · <a href=\"?\">stop</a>"));
        assert!(html.ends_with("<p>body</p></main></body></html>"));
        let still = page("Status", Timestamp::from_unix_millis(0), None, "");
        assert!(!still.contains("http-equiv") && still.contains("<a href=\"?refresh=10\">reload every 10 s</a>"));
    }
}
