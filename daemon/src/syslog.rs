//! Audit lines to syslog (facility authpriv, ident `pimd`) through the `syslog` crate's
//! datagram transport to `/dev/log`, with pimd's own line format: control characters escaped
//! and the message cut, so nothing from a user can forge a line, and a socket whose sends wait
//! at most [`SEND_TIMEOUT`], so a stuck syslog daemon cannot stall pimd. Best effort: the
//! database's audit table is authoritative, so callers may ignore the errors returned here.

use crate::clock::{civil_from_days, Clock, SystemClock};
use ::syslog::{Facility, LogFormat, Logger, LoggerBackend};
use pim_common::text::escape_unsafe;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The local syslog socket (journald or rsyslog listen here).
pub const DEV_LOG: &str = "/dev/log";
/// authpriv: security messages that only root may read.
const FACILITY: Facility = Facility::LOG_AUTHPRIV;
const IDENT: &str = "pimd";
/// Longest message part, in bytes; longer ones are cut. Keeps every datagram well under
/// the sizes syslog daemons accept.
pub const MAX_MESSAGE_BYTES: usize = 2048;
/// A busy syslog daemon must not stall the daemon for long; the line is then dropped.
const SEND_TIMEOUT: Duration = Duration::from_millis(250);

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Notice,
    /// Something a person should look at now (a change of MFA device by a recovery code).
    Warning,
    Error,
}

impl Severity {
    fn level(self) -> ::syslog::Severity {
        match self {
            Severity::Error => ::syslog::Severity::LOG_ERR,
            Severity::Notice => ::syslog::Severity::LOG_NOTICE,
            Severity::Warning => ::syslog::Severity::LOG_WARNING,
            Severity::Info => ::syslog::Severity::LOG_INFO,
        }
    }
}

/// pimd's lines, `<PRI>Mmm dd hh:mm:ss pimd[PID]: message`, RFC 3164 style, stamped `now`.
/// The crate's own formatter is not used: it neither escapes nor bounds the message.
struct PimdFormat {
    now: i64,
    pid: u32,
}

impl LogFormat<&str> for PimdFormat {
    /// The timestamp is in UTC (the daemon does not read time zone files); journald and
    /// rsyslog stamp lines on receipt anyway. Control characters left in `message` are
    /// escaped so that nothing can forge lines (the callers escape user text themselves,
    /// backslashes included, so those are left alone here), and the message is cut to
    /// `MAX_MESSAGE_BYTES` on a character boundary. One `write!`: one datagram.
    fn format<W: Write>(
        &self,
        w: &mut W,
        severity: ::syslog::Severity,
        message: &str,
    ) -> ::syslog::Result<()> {
        let pri = FACILITY as u8 | severity as u8;
        let (_, month, day) = civil_from_days(self.now.div_euclid(86_400));
        let secs = self.now.rem_euclid(86_400);
        let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
        let mut message = escape_unsafe(message);
        let mut cut = message.len().min(MAX_MESSAGE_BYTES);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        write!(
            w,
            "<{pri}>{} {day:>2} {hh:02}:{mm:02}:{ss:02} {IDENT}[{}]: {message}",
            MONTHS[month as usize - 1],
            self.pid
        )
        .map_err(::syslog::Error::Write)
    }
}

/// A syslog connection for the process, opened on first use and reopened when the syslog
/// daemon has restarted.
pub struct Syslog {
    path: PathBuf,
    logger: Mutex<Option<Logger<LoggerBackend, PimdFormat>>>,
}

impl std::fmt::Debug for Syslog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syslog").field("path", &self.path).finish()
    }
}

impl Default for Syslog {
    fn default() -> Self {
        Self::new()
    }
}

impl Syslog {
    /// Logs to `/dev/log`. Nothing is opened until the first `send`.
    pub fn new() -> Self {
        Self::at(PathBuf::from(DEV_LOG))
    }

    fn at(path: PathBuf) -> Self {
        Self {
            path,
            logger: Mutex::new(None),
        }
    }

    /// Sends `message` at `severity`, stamped with the current time and this process's id.
    pub fn send(&self, severity: Severity, message: &str) -> io::Result<()> {
        let format = || PimdFormat {
            now: SystemClock.now(),
            pid: std::process::id(),
        };
        // The Option is valid whatever a panicking holder was doing, so poison is harmless.
        let mut logger = self.logger.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = logger.as_mut() {
            open.formatter = format();
            match log(open, severity, message) {
                Ok(()) => return Ok(()),
                // The receiver is alive but busy: reconnecting would not help.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(e)
                }
                // Typically ECONNREFUSED: the syslog daemon restarted and bound a new socket.
                Err(_) => *logger = None,
            }
        }
        let mut fresh = Logger::new(connect(&self.path)?, format());
        log(&mut fresh, severity, message)?;
        *logger = Some(fresh);
        Ok(())
    }
}

fn log(
    logger: &mut Logger<LoggerBackend, PimdFormat>,
    severity: Severity,
    message: &str,
) -> io::Result<()> {
    let sent = logger
        .formatter
        .format(&mut logger.backend, severity.level(), message);
    sent.map_err(|e| match e {
        ::syslog::Error::Write(e) | ::syslog::Error::Io(e) => e,
        ::syslog::Error::Initialization(e) => io::Error::other(e),
    })
}

/// The line pimd sends for `message` at `severity`, stamped `now`, from process `pid`.
#[cfg(test)]
pub fn format_line(severity: Severity, now: i64, pid: u32, message: &str) -> String {
    let mut line = Vec::new();
    PimdFormat { now, pid }
        .format(&mut line, severity.level(), message)
        .unwrap();
    String::from_utf8(line).unwrap()
}

/// Sends one already formatted line to the datagram socket at `path`.
#[cfg(test)]
fn send_to(path: &Path, line: &str) -> io::Result<()> {
    connect(path)?.write_all(line.as_bytes())
}

/// The crate's datagram transport on a socket of our own: `syslog::unix_custom` connects
/// without a send timeout, and falls back to a stream socket whose connect can block.
fn connect(path: &Path) -> io::Result<LoggerBackend> {
    let socket = UnixDatagram::unbound()?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    socket.connect(path)?;
    Ok(LoggerBackend::Unix(socket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A bound datagram socket standing in for /dev/log, removed on drop.
    struct Receiver {
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl Receiver {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "pimd-syslog-test-{}-{}.sock",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            Self::at(path)
        }

        fn at(path: PathBuf) -> Self {
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Self { path, socket }
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 8192];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn given_each_severity_then_pri_is_authpriv() {
        for (severity, pri) in [
            (Severity::Info, "<86>"),
            (Severity::Notice, "<85>"),
            (Severity::Warning, "<84>"),
            (Severity::Error, "<83>"),
        ] {
            assert!(
                format_line(severity, 0, 1, "x").starts_with(pri),
                "{severity:?}"
            );
        }
    }

    #[test]
    fn given_time_and_pid_then_rfc3164_header() {
        // 2009-02-13 23:31:30 UTC.
        assert_eq!(
            format_line(Severity::Notice, 1_234_567_890, 4242, "grant alice admin"),
            "<85>Feb 13 23:31:30 pimd[4242]: grant alice admin"
        );
        // Single-digit days are space-padded.
        assert_eq!(
            format_line(Severity::Info, 0, 1, "m"),
            "<86>Jan  1 00:00:00 pimd[1]: m"
        );
    }

    #[test]
    fn given_calendar_edges_then_month_and_day_right() {
        let cases: [(i64, &str); 8] = [
            (951_782_400, "Feb 29 00:00:00"),   // 2000-02-29, leap century
            (951_868_800, "Mar  1 00:00:00"),   // 2000-03-01
            (1_709_251_199, "Feb 29 23:59:59"), // 2024-02-29
            (1_709_251_200, "Mar  1 00:00:00"), // 2024-03-01
            (4_107_542_400, "Mar  1 00:00:00"), // 2100-03-01, no 29 Feb in 2100
            (1_735_689_599, "Dec 31 23:59:59"), // 2024-12-31
            (2_147_483_648, "Jan 19 03:14:08"), // past the 32-bit rollover
            (-1, "Dec 31 23:59:59"),            // 1969-12-31
        ];
        for (now, stamp) in cases {
            let line = format_line(Severity::Info, now, 1, "m");
            assert_eq!(&line[4..19], stamp, "{now}");
        }
    }

    #[test]
    fn given_control_characters_then_escaped() {
        let line = format_line(
            Severity::Info,
            0,
            1,
            "reason: x\nJan  1 00:00:00 pimd[1]: forged\x1b[0m",
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.ends_with("reason: x\\x0aJan  1 00:00:00 pimd[1]: forged\\x1b[0m"));
    }

    #[test]
    fn given_long_message_then_cut_on_char_boundary() {
        let header = format_line(Severity::Info, 0, 1, "").len();
        let ascii = format_line(Severity::Info, 0, 1, &"a".repeat(5000));
        assert_eq!(ascii.len(), header + MAX_MESSAGE_BYTES);
        // 'é' is 2 bytes; start at an odd offset so the cap falls inside one.
        let text = format!("a{}", "é".repeat(3000));
        let line = format_line(Severity::Info, 0, 1, &text);
        assert_eq!(line.len(), header + MAX_MESSAGE_BYTES - 1);
        assert!(line.ends_with('é'));
    }

    #[test]
    fn given_listening_socket_then_send_to_delivers_line() {
        let receiver = Receiver::new();
        let line = format_line(Severity::Notice, 1_234_567_890, 7, "lockout bob");
        send_to(&receiver.path, &line).unwrap();
        assert_eq!(receiver.recv(), line);
    }

    #[test]
    fn given_missing_socket_then_send_fails_without_panic() {
        let path = std::env::temp_dir().join(format!(
            "pimd-syslog-test-{}-absent.sock",
            std::process::id()
        ));
        assert!(send_to(&path, "x").is_err());
        assert!(Syslog::at(path).send(Severity::Info, "x").is_err());
    }

    #[test]
    fn given_a_receiver_that_never_reads_then_send_gives_up_with_an_error() {
        // A stuck syslog daemon: its queue fills, and then each send waits at most
        // SEND_TIMEOUT and fails instead of blocking pimd.
        let receiver = Receiver::new();
        let syslog = Syslog::at(receiver.path.clone());
        let failed = (0..100_000)
            .find_map(|_| syslog.send(Severity::Info, "x").err())
            .expect("a send that fails once the queue is full");
        assert!(
            matches!(
                failed.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn given_syslog_then_send_stamps_pid_and_reconnects_after_restart() {
        let receiver = Receiver::new();
        let syslog = Syslog::at(receiver.path.clone());
        syslog.send(Severity::Notice, "first").unwrap();
        let got = receiver.recv();
        assert!(got.starts_with("<85>"), "{got}");
        let tail = format!(" pimd[{}]: first", std::process::id());
        assert!(got.ends_with(&tail), "{got}");

        // The syslog daemon restarts: same path, new socket.
        let path = receiver.path.clone();
        drop(receiver);
        let restarted = Receiver::at(path);
        syslog.send(Severity::Notice, "second").unwrap();
        assert!(restarted.recv().ends_with("]: second"));
    }
}
