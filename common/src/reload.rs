//! The outcome of pimd's last configuration reload. pimd writes it after each SIGHUP to
//! [`LAST_RELOAD_PATH`] (root's alone, removed when pimd starts: a pimd that started has a
//! valid configuration), so that `pimd --reload` (systemd's `ExecReload=`) can wait for the
//! answer and fail the reload, and `pim doctor` can say that pimd runs an older configuration
//! than the file.
//!
//! The file: a first line `ok` or `failed`, a second `received NS` (when pimd received the
//! SIGHUP it answers, in nanoseconds of `CLOCK_MONOTONIC`, which every process reads alike:
//! `pimd --reload` takes only an answer to a signal received after it sent its own, not that
//! of an earlier reload finishing late), then what pimd said, one printable line each.

/// Where pimd leaves the outcome (systemd's `RuntimeDirectory=pim`).
pub const LAST_RELOAD_PATH: &str = "/run/pim/last-reload";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastReload {
    pub ok: bool,
    /// When pimd received the SIGHUP this answers (`CLOCK_MONOTONIC`, nanoseconds).
    pub received: u64,
    /// The configuration's problems or the refusal, each one line without control characters.
    pub messages: Vec<String>,
}

impl LastReload {
    pub fn to_text(&self) -> String {
        let mut text = String::from(if self.ok { "ok\n" } else { "failed\n" });
        text.push_str(&format!("received {}\n", self.received));
        for message in &self.messages {
            for line in message.lines() {
                text.push_str(&crate::text::escape_unsafe(line));
                text.push('\n');
            }
        }
        text
    }

    pub fn parse(text: &str) -> Result<LastReload, String> {
        let mut lines = text.lines();
        let ok = match lines.next() {
            Some("ok") => true,
            Some("failed") => false,
            Some(other) => {
                return Err(format!(
                    "first line is '{}', not 'ok' or 'failed'",
                    crate::text::escape(other)
                ))
            }
            None => return Err("the file is empty".into()),
        };
        let received = lines
            .next()
            .and_then(|line| line.strip_prefix("received "))
            .and_then(|ns| ns.parse().ok())
            .ok_or("the second line is not 'received' and a time")?;
        Ok(LastReload {
            ok,
            received,
            messages: lines.map(crate::text::escape_unsafe).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_failed_reload_then_its_text_parses_back_with_control_characters_escaped() {
        let written = LastReload {
            ok: false,
            received: 1234,
            messages: vec![
                "/etc/pim/pim.toml:3: roles.admin.group: missing".into(),
                "two\nlines and a \u{1b}[31m escape".into(),
            ],
        };
        let read = LastReload::parse(&written.to_text()).unwrap();
        assert!(!read.ok);
        assert_eq!(read.received, 1234);
        assert_eq!(read.messages.len(), 3);
        assert_eq!(read.messages[0], written.messages[0]);
        assert!(read.messages.iter().all(|m| !m.contains('\u{1b}')));
    }

    #[test]
    fn given_a_success_then_ok_and_no_messages() {
        let text = LastReload {
            ok: true,
            received: 5,
            messages: vec![],
        }
        .to_text();
        assert_eq!(text, "ok\nreceived 5\n");
        assert_eq!(
            LastReload::parse(&text).unwrap(),
            LastReload {
                ok: true,
                received: 5,
                messages: vec![]
            }
        );
    }

    #[test]
    fn given_garbage_then_an_error_names_the_first_line() {
        assert!(LastReload::parse("").unwrap_err().contains("empty"));
        assert!(LastReload::parse("maybe\n")
            .unwrap_err()
            .contains("'maybe'"));
        assert!(LastReload::parse("ok\n")
            .unwrap_err()
            .contains("second line"));
        assert!(LastReload::parse("ok\nreceived soon\n")
            .unwrap_err()
            .contains("second line"));
    }
}
