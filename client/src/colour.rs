//! Colour on a terminal: only where the stream is one, never when `NO_COLOR` is set to
//! anything (no-color.org) or `TERM` is `dumb`. Errors and warnings only: what a person must
//! not miss; tables stay plain.

use std::ffi::OsStr;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `pim:` before an error: bold red.
    Error,
    /// Something to act on: yellow.
    Warning,
}

/// Whether a stream that `is_terminal` gets colour, given `NO_COLOR` and `TERM`.
pub fn wanted(is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty) && term != Some(OsStr::new("dumb"))
}

fn wanted_here(is_terminal: bool) -> bool {
    wanted(
        is_terminal,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// Whether standard output gets colour.
pub fn stdout() -> bool {
    wanted_here(std::io::stdout().is_terminal())
}

/// Whether standard error gets colour.
pub fn stderr() -> bool {
    wanted_here(std::io::stderr().is_terminal())
}

/// `text` in `style` when `on`, each line on its own (a colour never spans a line end).
pub fn paint(text: &str, style: Style, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let start = match style {
        Style::Error => "\x1b[1;31m",
        Style::Warning => "\x1b[33m",
    };
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(body) => format!("{start}{body}\x1b[0m\n"),
            None => format!("{start}{line}\x1b[0m"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_terminal_then_colour_unless_no_color_or_a_dumb_terminal() {
        let os = |s| Some(OsStr::new(s));
        assert!(wanted(true, None, os("xterm-256color")));
        assert!(wanted(true, None, None));
        assert!(
            wanted(true, os(""), None),
            "an empty NO_COLOR does not count"
        );
        assert!(!wanted(true, os("1"), os("xterm")));
        assert!(!wanted(true, None, os("dumb")));
        assert!(!wanted(false, None, os("xterm")));
    }

    #[test]
    fn given_lines_then_each_is_painted_and_reset_before_its_end() {
        assert_eq!(
            paint("a\nb\n", Style::Warning, true),
            "\x1b[33ma\x1b[0m\n\x1b[33mb\x1b[0m\n"
        );
        assert_eq!(paint("pim:", Style::Error, true), "\x1b[1;31mpim:\x1b[0m");
        assert_eq!(paint("a\n", Style::Error, false), "a\n");
    }
}
