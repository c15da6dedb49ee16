//! What is read from the person at the keyboard: TOTP codes (never echoed), and a reason or
//! ticket a role asks for when the command line left it out.

use crate::error::Failure;
use pim_common::text;
use std::io::{self, BufRead, IsTerminal, Write};

/// Longest code accepted (TOTP codes have 6 to 8 digits; recovery codes are longer).
const MAX_CODE_BYTES: usize = 64;

/// The terminal and standard input, behind a trait so the logic can be tested.
pub trait Console {
    /// Whether standard input is a terminal (then we may ask).
    fn interactive(&self) -> bool;
    /// One line from standard input without its line ending; `None` at end of input.
    fn read_line(&mut self) -> io::Result<Option<String>>;
    /// Asks on the terminal with echo off.
    fn ask_hidden(&mut self, prompt: &str) -> io::Result<String>;
    /// Asks on the terminal with echo on.
    fn ask(&mut self, prompt: &str) -> io::Result<String>;
}

/// The real thing: stdin, stderr for prompts, /dev/tty for hidden input.
pub struct Terminal;

impl Console for Terminal {
    fn interactive(&self) -> bool {
        io::stdin().is_terminal()
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        read_line_from(&mut io::stdin().lock())
    }

    fn ask_hidden(&mut self, prompt: &str) -> io::Result<String> {
        rpassword::prompt_password(prompt)
    }

    fn ask(&mut self, prompt: &str) -> io::Result<String> {
        let mut err = io::stderr().lock();
        err.write_all(prompt.as_bytes())?;
        err.flush()?;
        Ok(self.read_line()?.unwrap_or_default())
    }
}

/// Reads one line, without the trailing `\n` or `\r\n`; `None` at end of input.
pub fn read_line_from(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

fn io_failure(what: &str, e: io::Error) -> Failure {
    Failure::Failed(format!("cannot read {what}: {e}"))
}

/// The TOTP (or recovery) code to send.
///
/// `given` is `--code`'s value: a code, or `-` for one line of standard input. Without it the
/// code is asked for on the terminal (echo off) when `needed` and standard input is a terminal;
/// otherwise "" is sent and the daemon says whether one was required.
pub fn code(
    given: Option<&str>,
    needed: bool,
    user: &str,
    console: &mut dyn Console,
) -> Result<String, Failure> {
    let (code, from) =
        match given {
            Some("-") => match console.read_line() {
                Ok(Some(line)) => (line, "the code on standard input"),
                Ok(None) => return Err(Failure::Usage(
                    "--code -: standard input ended before a code; pipe one line holding the code"
                        .into(),
                )),
                Err(e) => return Err(io_failure("the code from standard input", e)),
            },
            Some(code) => (code.to_string(), "--code"),
            None if needed && console.interactive() => {
                let prompt = format!("TOTP code for {}: ", text::escape(user));
                let code = console
                    .ask_hidden(&prompt)
                    .map_err(|e| io_failure("the code from the terminal", e))?;
                (code, "the code")
            }
            None => return Ok(String::new()),
        };
    let code = code.trim().to_string();
    if code.is_empty() && given.is_some() {
        return Err(Failure::Usage(format!(
            "{from} is empty; give the code your authenticator app shows"
        )));
    }
    text::check(from, &code, MAX_CODE_BYTES).map_err(Failure::Usage)?;
    Ok(code)
}

/// Longest enrolment ticket sent (pimd's own bound).
const MAX_TICKET_BYTES: usize = 64;

/// The enrolment ticket `--ticket` gives: the ticket, or `-` for one line of standard input.
pub fn ticket(given: &str, console: &mut dyn Console) -> Result<String, Failure> {
    let (ticket, from) =
        match given {
            "-" => match console.read_line() {
                Ok(Some(line)) => (line, "the ticket on standard input"),
                Ok(None) => return Err(Failure::Usage(
                    "--ticket -: standard input ended before a ticket; pipe one line holding it"
                        .into(),
                )),
                Err(e) => return Err(io_failure("the ticket from standard input", e)),
            },
            ticket => (ticket.to_string(), "--ticket"),
        };
    let ticket = ticket.trim().to_string();
    if ticket.is_empty() {
        return Err(Failure::Usage(format!(
            "{from} is empty; give the enrolment ticket a fleet administrator issued for you"
        )));
    }
    text::check(from, &ticket, MAX_TICKET_BYTES).map_err(Failure::Usage)?;
    Ok(ticket)
}

/// A reason (or other line of text) from the command line, or asked for on the terminal when
/// `ask` holds a prompt and standard input is a terminal; "" otherwise.
pub fn text_or_ask(
    given: Option<&str>,
    what: &str,
    max: usize,
    ask: Option<&str>,
    console: &mut dyn Console,
) -> Result<String, Failure> {
    let value = match (given, ask) {
        (Some(value), _) => value.to_string(),
        (None, Some(prompt)) if console.interactive() => console
            .ask(prompt)
            .map_err(|e| io_failure(what, e))?
            .trim()
            .to_string(),
        (None, _) => String::new(),
    };
    text::check(what, &value, max).map_err(Failure::Usage)?;
    Ok(value)
}

/// The name of the user running pim, for the code prompt.
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Cursor;

    /// A console with scripted stdin lines and terminal answers.
    #[derive(Default)]
    pub struct FakeConsole {
        pub tty: bool,
        pub stdin: VecDeque<String>,
        pub answers: VecDeque<String>,
        pub prompts: Vec<(String, bool)>,
    }

    impl Console for FakeConsole {
        fn interactive(&self) -> bool {
            self.tty
        }
        fn read_line(&mut self) -> io::Result<Option<String>> {
            Ok(self.stdin.pop_front())
        }
        fn ask_hidden(&mut self, prompt: &str) -> io::Result<String> {
            self.prompts.push((prompt.to_string(), true));
            Ok(self.answers.pop_front().unwrap_or_default())
        }
        fn ask(&mut self, prompt: &str) -> io::Result<String> {
            self.prompts.push((prompt.to_string(), false));
            Ok(self.answers.pop_front().unwrap_or_default())
        }
    }

    fn console(tty: bool, stdin: &[&str], answers: &[&str]) -> FakeConsole {
        FakeConsole {
            tty,
            stdin: stdin.iter().map(|s| s.to_string()).collect(),
            answers: answers.iter().map(|s| s.to_string()).collect(),
            prompts: Vec::new(),
        }
    }

    #[test]
    fn given_code_dash_then_one_line_of_stdin_is_the_code() {
        let mut c = console(false, &["123456", "654321"], &[]);
        assert_eq!(code(Some("-"), true, "alice", &mut c).unwrap(), "123456");
        assert_eq!(c.stdin.len(), 1, "only one line is consumed");
        assert!(c.prompts.is_empty());
    }

    #[test]
    fn given_real_stdin_bytes_then_line_endings_are_dropped() {
        let mut r = Cursor::new(b"123456\r\nrest\n".to_vec());
        assert_eq!(read_line_from(&mut r).unwrap().as_deref(), Some("123456"));
        assert_eq!(read_line_from(&mut r).unwrap().as_deref(), Some("rest"));
        assert_eq!(read_line_from(&mut r).unwrap(), None);
        let mut r = Cursor::new(b"987654".to_vec());
        assert_eq!(read_line_from(&mut r).unwrap().as_deref(), Some("987654"));
    }

    #[test]
    fn given_code_dash_and_empty_stdin_then_usage_error() {
        let mut c = console(false, &[], &[]);
        let err = code(Some("-"), true, "alice", &mut c).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let mut c = console(false, &["  "], &[]);
        assert_eq!(
            code(Some("-"), true, "alice", &mut c)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn given_code_on_the_command_line_then_used_trimmed_without_prompt() {
        let mut c = console(true, &[], &[]);
        assert_eq!(
            code(Some(" 123456 "), false, "alice", &mut c).unwrap(),
            "123456"
        );
        assert!(c.prompts.is_empty());
    }

    #[test]
    fn given_no_code_and_a_terminal_then_asked_without_echo() {
        let mut c = console(true, &[], &["246810\n"]);
        assert_eq!(code(None, true, "alice", &mut c).unwrap(), "246810");
        assert_eq!(c.prompts, vec![("TOTP code for alice: ".to_string(), true)]);
    }

    #[test]
    fn given_no_code_and_not_needed_then_never_asked() {
        let mut c = console(true, &[], &["1"]);
        assert_eq!(code(None, false, "alice", &mut c).unwrap(), "");
        assert!(c.prompts.is_empty());
    }

    #[test]
    fn given_no_code_and_no_terminal_then_empty_code_is_sent() {
        let mut c = console(false, &["123456"], &[]);
        assert_eq!(code(None, true, "alice", &mut c).unwrap(), "");
        assert_eq!(c.stdin.len(), 1, "stdin is left alone");
    }

    #[test]
    fn given_a_code_with_control_characters_then_usage_error() {
        let mut c = console(false, &[], &[]);
        let err = code(Some("12\x1b34"), true, "alice", &mut c).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn given_no_reason_and_a_terminal_and_a_prompt_then_asked_with_echo() {
        let mut c = console(true, &[], &["  fix INC42  "]);
        let r = text_or_ask(None, "reason", 1024, Some("Reason: "), &mut c).unwrap();
        assert_eq!(r, "fix INC42");
        assert_eq!(c.prompts, vec![("Reason: ".to_string(), false)]);
    }

    #[test]
    fn given_no_reason_and_no_prompt_or_no_terminal_then_empty() {
        let mut c = console(true, &[], &["x"]);
        assert_eq!(text_or_ask(None, "reason", 1024, None, &mut c).unwrap(), "");
        let mut c = console(false, &["x"], &["x"]);
        assert_eq!(
            text_or_ask(None, "reason", 1024, Some("Reason: "), &mut c).unwrap(),
            ""
        );
        assert!(c.prompts.is_empty());
    }

    #[test]
    fn given_a_reason_too_long_or_with_control_characters_then_usage_error() {
        let mut c = console(false, &[], &[]);
        let long = "a".repeat(1025);
        assert_eq!(
            text_or_ask(Some(&long), "reason", 1024, None, &mut c)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            text_or_ask(Some("a\nb"), "reason", 1024, None, &mut c)
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
