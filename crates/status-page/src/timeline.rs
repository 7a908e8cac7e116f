//! A member's access drawn as an SVG picture: a time axis in a named zone (the zone of the
//! member's first door's location) with hour ticks and a line at "now", and one lane per door
//! (Kisi group) with a row of bars for each thing that opens it. On a narrow screen the picture
//! scrolls in its box; the member page lists the same stretches as text above it.

use doorsync_access::Window;
use doorsync_catalogue::LocalTimes;
use doorsync_proto::{KisiGroupId, Timestamp};

use super::html::{Esc, put};

const HOUR_MS: i64 = 3_600_000;
const LABEL_WIDTH: f64 = 250.0;
const PLOT_WIDTH: f64 = 1_040.0;
const RIGHT_MARGIN: f64 = 10.0;
const AXIS_HEIGHT: f64 = 38.0;
const LANE_HEAD_HEIGHT: f64 = 24.0;
const ROW_HEIGHT: f64 = 22.0;
const BAR_HEIGHT: f64 = 14.0;
const LANE_GAP: f64 = 8.0;

/// What the picture shows: `start..end` with a line at `now`.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
    pub(crate) now: Timestamp,
    /// The zone the axis and the bars' tooltips are in.
    pub(crate) times: LocalTimes,
    pub(crate) lanes: Vec<Lane>,
}

/// One Kisi group and the rows that say why, and whether, it opens.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    pub(crate) group: KisiGroupId,
    /// The door's name ("Kisi group 12" when it has none).
    pub(crate) title: String,
    pub(crate) rows: Vec<Row>,
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) label: String,
    pub(crate) kind: BarKind,
    pub(crate) bars: Vec<Bar>,
    /// Said on the row when it has no bar at all.
    pub(crate) empty_note: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub(crate) window: Window,
    /// Shown as the bar's tooltip, before its span.
    pub(crate) title: String,
    /// Drawn lighter: a stretch that comes after the one written to Kisi now.
    pub(crate) later: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BarKind {
    /// The merged stretches in which the member may open the group's doors.
    Access,
    Booking,
    Pass,
    Contract,
    /// What Kisi holds, as the writer reported it.
    Kisi,
}

impl BarKind {
    fn class(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Booking => "booking",
            Self::Pass => "pass",
            Self::Contract => "contract",
            Self::Kisi => "kisi",
        }
    }
}

impl Timeline {
    fn x(&self, at: Timestamp) -> f64 {
        let span = (self.end.as_unix_millis() - self.start.as_unix_millis()).max(1) as f64;
        let offset = (at.as_unix_millis() - self.start.as_unix_millis()) as f64;
        LABEL_WIDTH + (offset / span).clamp(0.0, 1.0) * PLOT_WIDTH
    }

    fn height(&self) -> f64 {
        let lanes: f64 = self.lanes.iter().map(|lane| lane_height(lane) + LANE_GAP).sum();
        AXIS_HEIGHT + lanes.max(ROW_HEIGHT) + 6.0
    }

    /// Where each lane starts, from the top.
    fn lane_tops(&self) -> Vec<f64> {
        let mut top = AXIS_HEIGHT;
        self.lanes
            .iter()
            .map(|lane| {
                let this = top;
                top += lane_height(lane) + LANE_GAP;
                this
            })
            .collect()
    }

    /// The SVG element.
    pub(crate) fn svg(&self) -> String {
        let width = LABEL_WIDTH + PLOT_WIDTH + RIGHT_MARGIN;
        let height = self.height();
        let mut out = String::new();
        put!(
            &mut out,
            "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
             width=\"{width}\" role=\"img\" aria-label=\"Access from {} to {}\">",
            Esc(self.times.time(self.start)),
            Esc(self.times.instant(self.end)),
        );
        put!(&mut out, "<text x=\"8\" y=\"16\" class=\"lanehead\">Times in {}</text>", Esc(self.times.zone_name()));
        // Backgrounds first, so that the hour ticks show through the lanes.
        let tops = self.lane_tops();
        for (lane, top) in self.lanes.iter().zip(&tops) {
            put!(
                &mut out,
                "<rect class=\"lane\" x=\"0\" y=\"{top}\" width=\"{}\" height=\"{}\" rx=\"4\"/>",
                LABEL_WIDTH + PLOT_WIDTH + RIGHT_MARGIN,
                lane_height(lane)
            );
        }
        self.axis(&mut out, height);
        if self.lanes.is_empty() {
            put!(
                &mut out,
                "<text x=\"{}\" y=\"{}\" class=\"outside\">no Kisi group in view</text>",
                LABEL_WIDTH + 8.0,
                AXIS_HEIGHT + 15.0
            );
        }
        for (lane, top) in self.lanes.iter().zip(tops) {
            self.lane(&mut out, lane, top);
        }
        let now = self.x(self.now);
        put!(&mut out, "<line class=\"now\" x1=\"{now:.1}\" y1=\"22\" x2=\"{now:.1}\" y2=\"{height}\"/>");
        put!(
            &mut out,
            "<text class=\"nowlabel\" x=\"{:.1}\" y=\"16\">now {}</text>",
            now + 3.0,
            Esc(self.times.clock_face(self.now))
        );
        out.push_str("</svg>");
        out
    }

    /// Hour ticks across the plot at the zone's hours, labelled every two hours, with the day at
    /// each local midnight.
    fn axis(&self, out: &mut String, height: f64) {
        // Local hours start where UTC's do, shifted by the zone's offset (as of the view's start).
        let offset = self.times.offset_millis(self.start);
        let first = (self.start.as_unix_millis() + offset).div_euclid(HOUR_MS) + 1;
        let last = (self.end.as_unix_millis() + offset).div_euclid(HOUR_MS);
        for hour in first..=last {
            let at = Timestamp::from_unix_millis(hour * HOUR_MS - offset);
            let x = self.x(at);
            let midnight = hour.rem_euclid(24) == 0;
            let class = if midnight { "tick day" } else { "tick" };
            put!(out, "<line class=\"{class}\" x1=\"{x:.1}\" y1=\"{AXIS_HEIGHT}\" x2=\"{x:.1}\" y2=\"{height}\"/>");
            let label = if midnight {
                self.times.day_face(at)
            } else if hour.rem_euclid(2) == 0 {
                self.times.clock_face(at)
            } else {
                continue;
            };
            let class = if midnight { "ticklabel lanehead" } else { "ticklabel" };
            put!(out, "<text class=\"{class}\" x=\"{:.1}\" y=\"32\">{}</text>", x + 2.0, Esc(label));
        }
    }

    /// Draws `lane`'s heading and rows from `top` down (its background is drawn already).
    fn lane(&self, out: &mut String, lane: &Lane, top: f64) {
        put!(out, "<g class=\"group-lane\" data-group=\"{}\">", lane.group);
        put!(out, "<text class=\"lanehead\" x=\"8\" y=\"{}\">{}</text>", top + 16.0, Esc(&lane.title));
        let mut y = top + LANE_HEAD_HEIGHT;
        for row in &lane.rows {
            self.row(out, row, y);
            y += ROW_HEIGHT;
        }
        out.push_str("</g>");
    }

    fn row(&self, out: &mut String, row: &Row, top: f64) {
        let class = row.kind.class();
        put!(out, "<g class=\"row\" data-kind=\"{class}\" data-label=\"{}\">", Esc(&row.label));
        put!(out, "<text x=\"20\" y=\"{}\">{}</text>", top + 14.0, Esc(&row.label));
        let bar_top = top + (ROW_HEIGHT - BAR_HEIGHT) / 2.0;
        let mut drawn = 0;
        for bar in &row.bars {
            let from = bar.window.from.unwrap_or(self.start);
            let until = bar.window.until.unwrap_or(self.end);
            if until <= self.start || from >= self.end {
                continue;
            }
            drawn += 1;
            let x = self.x(from);
            let width = (self.x(until) - x).max(2.0);
            let later = if bar.later { " later" } else { "" };
            put!(
                out,
                "<rect class=\"bar {class}{later}\" x=\"{x:.1}\" y=\"{bar_top}\" width=\"{width:.1}\" height=\"{BAR_HEIGHT}\" rx=\"3\">\
                 <title>{}: {}</title></rect>",
                Esc(&bar.title),
                Esc(self.times.window(bar.window.from, bar.window.until)),
            );
        }
        let hidden: Vec<&Bar> = row.bars.iter().filter(|bar| !self.shows(bar)).collect();
        if drawn == 0 {
            let note = match hidden.first() {
                Some(bar) => format!("outside this view: {}", self.times.window(bar.window.from, bar.window.until)),
                None => row.empty_note.to_owned(),
            };
            put!(out, "<text class=\"outside\" x=\"{}\" y=\"{}\">{}</text>", LABEL_WIDTH + 6.0, top + 14.0, Esc(note));
        }
        out.push_str("</g>");
    }

    fn shows(&self, bar: &Bar) -> bool {
        bar.window.from.is_none_or(|from| from < self.end) && bar.window.until.is_none_or(|until| until > self.start)
    }
}

fn lane_height(lane: &Lane) -> f64 {
    LANE_HEAD_HEIGHT + ROW_HEIGHT * lane.rows.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_116_500_000; // 2026-12-01T09:15:00Z

    fn at_hours(hours: f64) -> Timestamp {
        Timestamp::from_unix_millis(NOW + (hours * HOUR_MS as f64) as i64)
    }

    fn bar(from: f64, until: Option<f64>) -> Bar {
        Bar {
            window: Window { from: Some(at_hours(from)), until: until.map(at_hours) },
            title: "booking <7>".to_owned(),
            later: false,
        }
    }

    fn timeline_in(zone: &str, lanes: Vec<Lane>) -> Timeline {
        let times = LocalTimes::new(jiff::tz::TimeZone::get(zone).unwrap(), at_hours(0.0));
        Timeline { start: at_hours(-2.0), end: at_hours(24.0), now: at_hours(0.0), times, lanes }
    }

    fn timeline(lanes: Vec<Lane>) -> Timeline {
        timeline_in("Europe/London", lanes)
    }

    fn lane(group: u64, rows: Vec<Row>) -> Lane {
        Lane { group: KisiGroupId(group), title: format!("Door <{group}>"), rows }
    }

    #[test]
    fn bars_sit_where_their_windows_are_and_the_now_line_where_now_is() {
        let rows = vec![Row {
            label: "booking 7 · resource 3".to_owned(),
            kind: BarKind::Booking,
            bars: vec![bar(-1.0, Some(1.0))],
            empty_note: "",
        }];
        let svg = timeline(vec![lane(8101, rows)]).svg();
        // 26 hours over 1040 px: 40 px an hour from x = 250, so now (2 h in) is at 330.
        assert!(svg.contains("<line class=\"now\" x1=\"330.0\""), "{svg}");
        assert!(svg.contains("class=\"bar booking\" x=\"290.0\" y=\"66\" width=\"80.0\""), "{svg}");
        assert!(svg.contains("data-group=\"8101\""));
        assert!(svg.contains("<title>booking &lt;7&gt;: 08:15–10:15 Europe/London</title>"), "{svg}");
        assert!(svg.contains("Times in Europe/London"));
        assert!(svg.contains(">Door &lt;8101&gt;</text>"), "the door's name heads its lane: {svg}");
        assert!(svg.contains(">Wed 2 Dec</text>"), "midnight is labelled with the day: {svg}");
    }

    #[test]
    fn open_and_overlong_windows_are_clipped_to_the_view_and_far_ones_are_noted() {
        let rows = vec![
            Row { label: "contract".to_owned(), kind: BarKind::Contract, bars: vec![bar(-30.0, None)], empty_note: "" },
            Row { label: "pass".to_owned(), kind: BarKind::Pass, bars: vec![bar(30.0, Some(40.0))], empty_note: "" },
            Row { label: "Kisi holds".to_owned(), kind: BarKind::Kisi, bars: vec![], empty_note: "nothing reported" },
        ];
        let svg = timeline(vec![lane(1, rows)]).svg();
        assert!(svg.contains("class=\"bar contract\" x=\"250.0\" y=\"66\" width=\"1040.0\""), "{svg}");
        assert!(!svg.contains("class=\"bar pass"), "a pass two days out is not drawn: {svg}");
        assert!(svg.contains("outside this view: Wed 2 Dec 15:15 – Thu 3 Dec 01:15 Europe/London"), "{svg}");
        assert!(svg.contains(">nothing reported</text>"));
    }

    #[test]
    fn labels_are_escaped() {
        let rows = vec![Row { label: "<b>x</b>".to_owned(), kind: BarKind::Access, bars: vec![], empty_note: "" }];
        let svg = timeline(vec![lane(1, rows)]).svg();
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!svg.contains("<b>"));
    }

    #[test]
    fn ticks_fall_on_the_zones_own_hours_and_days() {
        // 09:15 UTC is 14:45 in Kolkata (UTC+05:30): the view starts at 12:45 there.
        let svg = timeline_in("Asia/Kolkata", vec![]).svg();
        // 13:00 local is a quarter of an hour in: 10 px from x = 250.
        assert!(svg.contains("<line class=\"tick\" x1=\"260.0\""), "{svg}");
        assert!(svg.contains("<text class=\"ticklabel\" x=\"302.0\" y=\"32\">14:00</text>"), "{svg}");
        assert!(svg.contains(">now 14:45</text>") && svg.contains("Times in Asia/Kolkata"), "{svg}");
        assert!(svg.contains(">Wed 2 Dec</text>"), "{svg}");
    }
}
