//! Plain text tables for the operator commands' output.

use std::fmt::Write as _;

use doorsync_access::Window;
use doorsync_proto::Timestamp;

/// `rows` under `headers`, each column as wide as its widest cell and two spaces apart; the last
/// column is not padded, so long reasons do not push trailing blanks.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_cells: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index == last {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        text.push('\n');
    }
    text
}

/// "1 assignment", "2 assignments".
pub(crate) fn count(number: usize, one: &str, many: &str) -> String {
    format!("{number} {}", if number == 1 { one } else { many })
}

/// A window as `from .. until`, with `open` for a missing bound.
pub(crate) fn window(window: Window) -> String {
    let bound = |at: Option<Timestamp>| at.map_or_else(|| "open".to_owned(), |at| at.to_string());
    format!("{} .. {}", bound(window.from), bound(window.until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_the_last_one_is_not_padded() {
        let rows = vec![
            vec!["7".to_owned(), "create".to_owned(), "a long reason".to_owned()],
            vec!["1234".to_owned(), "x".to_owned(), "r".to_owned()],
        ];
        let text = render(&["MEMBER", "ACTION", "WHY"], &rows);
        assert_eq!(text, "MEMBER  ACTION  WHY\n7       create  a long reason\n1234    x       r\n");
    }

    #[test]
    fn counts_take_the_plural_unless_there_is_exactly_one() {
        assert_eq!(count(1, "user", "users"), "1 user");
        assert_eq!(count(0, "user", "users"), "0 users");
        assert_eq!(count(3, "window", "windows"), "3 windows");
    }
}
