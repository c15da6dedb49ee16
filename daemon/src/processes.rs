//! The host's processes, beside `Accounts`: whom each acts as and which groups it carries
//! (from /proc), signals to them, and one-line notes on the terminals they run on. Behind a
//! trait so that what happens at a grant's end (ending.rs) is tested with a fake.
//!
//! A process is told apart from a later one that reuses its pid by its start time: signals
//! go through a descriptor of its /proc directory (pidfd_send_signal accepts one), opened and
//! checked against the listed start time and credentials first, so a signal never reaches a
//! process that was not the one listed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::process::Signal;

/// The ids one thread acts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective and saved uid.
    pub uids: [u32; 3],
    /// Real, effective and saved gid.
    pub gids: [u32; 3],
    pub groups: Vec<u32>,
}

impl Credentials {
    /// Acts as `uid` (real, effective or saved) and carries `gid` (real, effective, saved or
    /// supplementary).
    pub fn carries(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) && (self.gids.contains(&gid) || self.groups.contains(&gid))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Clock ticks after boot (field 22 of /proc/PID/stat): with the pid, names the process.
    pub start_time: u64,
    /// Stopped (by a signal or a tracer): it runs no code, so it cannot fork.
    pub stopped: bool,
    /// One entry per thread: credentials are per thread, and one thread may keep a group the
    /// others dropped.
    pub threads: Vec<Credentials>,
    /// Terminal devices (st_rdev) it runs on: its controlling terminal and those of its
    /// standard descriptors (a process without a controlling terminal may still write to one).
    pub terminals: Vec<u64>,
    /// Its command line, escaped (no control characters) and at most [`MAX_COMMAND_BYTES`].
    pub command: String,
}

impl Process {
    pub fn carries(&self, uid: u32, gid: u32) -> bool {
        self.threads.iter().any(|t| t.carries(uid, gid))
    }
}

/// How much of a command line a record keeps.
pub const MAX_COMMAND_BYTES: usize = 128;
/// /proc/PID/status with 65536 supplementary groups is about 720 KiB.
const MAX_STATUS_BYTES: usize = 1 << 20;
const MAX_STAT_BYTES: usize = 4096;
const MAX_CMDLINE_BYTES: usize = 512;
/// Threads of one process looked at, at most (each has its own credentials).
const MAX_THREADS: usize = 4096;

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The process had ended, or its pid now names another process (which got nothing).
    Gone,
}

pub trait ProcessTable: Send + Sync {
    /// Every live process (zombies, which can do nothing, are left out). A process that ends
    /// while the table is read is simply not listed; only an unreadable /proc is an error.
    fn list(&self) -> io::Result<Vec<Process>>;
    /// Sends `signal` to `process` if it is still that process and still carries
    /// (`uid`, `gid`).
    fn signal(&self, process: &Process, uid: u32, gid: u32, signal: Signal) -> io::Result<Sent>;
    /// Writes `line` to the terminal device `device` if it is a terminal owned by `uid`,
    /// never becoming its controlling terminal and never waiting on it.
    fn write_terminal(&self, device: u64, uid: u32, line: &str) -> io::Result<()>;
}

/// The real thing: /proc.
pub struct SystemProcesses;

/// Reads at most `max` bytes of `name` below the directory `dir`.
fn read_bounded(dir: impl AsFd, name: &str, max: usize) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let mut out = vec![0u8; max];
    let mut filled = 0;
    while filled < max {
        let n = rustix::io::read(&fd, &mut out[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    out.truncate(filled);
    Ok(out)
}

/// The (start time, tty_nr) of /proc/PID/stat. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last ')'.
pub fn parse_stat(stat: &[u8]) -> Option<(char, u64, u64)> {
    let text = std::str::from_utf8(&stat[stat.iter().rposition(|&b| b == b')')? + 1..]).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    // After the name: state (3), ppid, pgrp, session, tty_nr (7) ... starttime (22).
    let state = fields.first()?.chars().next()?;
    let tty = fields.get(4)?.parse::<i64>().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start, tty as u32 as u64))
}

/// A zombie or a dead task: it runs no code and holds nothing.
fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Stopped by a signal, or by a tracer.
fn is_stopped(state: char) -> bool {
    matches!(state, 'T' | 't')
}

/// The state letter of a /proc/PID/status ("State:\tS (sleeping)").
fn status_state(status: &[u8]) -> Option<char> {
    let text = String::from_utf8_lossy(status);
    let rest = text.lines().find_map(|l| l.strip_prefix("State:"))?;
    rest.trim_start().chars().next()
}

/// The credentials in a /proc/PID/status (or task status); None if any is missing.
pub fn parse_status(status: &[u8]) -> Option<Credentials> {
    let text = String::from_utf8_lossy(status);
    let ids = |key: &str| -> Option<Vec<u32>> {
        let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
        rest.split_whitespace().map(|n| n.parse().ok()).collect()
    };
    let three = |v: Vec<u32>| -> Option<[u32; 3]> { Some([*v.first()?, *v.get(1)?, *v.get(2)?]) };
    Some(Credentials {
        uids: three(ids("Uid:")?)?,
        gids: three(ids("Gid:")?)?,
        groups: ids("Groups:")?,
    })
}

/// A command line as a record shows it: arguments separated by spaces, escaped, bounded.
pub fn command_text(cmdline: &[u8]) -> String {
    let joined: Vec<u8> = cmdline
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    let escaped = pim_common::text::escape_bytes(joined.trim_ascii());
    if escaped.len() <= MAX_COMMAND_BYTES {
        return escaped;
    }
    let mut at = MAX_COMMAND_BYTES - 3;
    while !escaped.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}...", &escaped[..at])
}

/// Whether `device` is a terminal a user logs in on: a virtual console or serial line
/// (major 4) or a pseudo-terminal (majors 136 to 143). /dev/tty and /dev/console are not.
fn is_terminal_device(device: u64) -> bool {
    let major = rustix::fs::major(device);
    major == 4 || (136..=143).contains(&major)
}

/// The /dev path of a terminal device (see [`is_terminal_device`]).
fn terminal_path(device: u64) -> Option<String> {
    let (major, minor) = (rustix::fs::major(device), rustix::fs::minor(device));
    match major {
        136..=143 => Some(format!("/dev/pts/{}", (major - 136) * 256 + minor)),
        4 if (1..64).contains(&minor) => Some(format!("/dev/tty{minor}")),
        4 if minor >= 64 => Some(format!("/dev/ttyS{}", minor - 64)),
        _ => None,
    }
}

/// Reads one process through its /proc directory; None when it is gone or a zombie.
fn read_process(dir: &OwnedFd, pid: u32) -> Option<Process> {
    let (state, start_time, tty) = parse_stat(&read_bounded(dir, "stat", MAX_STAT_BYTES).ok()?)?;
    // Every live thread: a main thread that exited (pthread_exit) leaves the process listed
    // as a zombie while its other threads run on, with the group.
    let mut threads = Vec::new();
    let mut all_stopped = true;
    if let Ok(tasks) = rustix::fs::openat(
        dir,
        "task",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        if let Ok(names) = rustix::fs::Dir::read_from(&tasks) {
            let names = names
                .flatten()
                .filter_map(|e| e.file_name().to_str().ok()?.parse::<u32>().ok())
                .take(MAX_THREADS);
            for tid in names {
                let Ok(status) = read_bounded(&tasks, &format!("{tid}/status"), MAX_STATUS_BYTES)
                else {
                    continue;
                };
                let thread_state = status_state(&status);
                if thread_state.is_none_or(is_dead) {
                    continue;
                }
                if let Some(creds) = parse_status(&status) {
                    all_stopped &= thread_state.is_some_and(is_stopped);
                    threads.push(creds);
                }
            }
        }
    }
    if threads.is_empty() {
        if is_dead(state) {
            return None;
        }
        threads.push(parse_status(
            &read_bounded(dir, "status", MAX_STATUS_BYTES).ok()?,
        )?);
        all_stopped = is_stopped(state);
    }
    let mut terminals = Vec::new();
    if tty != 0 && is_terminal_device(tty) {
        terminals.push(tty);
    }
    for fd in ["fd/0", "fd/1", "fd/2"] {
        if let Ok(st) = rustix::fs::statat(dir, fd, AtFlags::empty()) {
            let device = st.st_rdev;
            if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
                && is_terminal_device(device)
                && !terminals.contains(&device)
            {
                terminals.push(device);
            }
        }
    }
    let command = match read_bounded(dir, "cmdline", MAX_CMDLINE_BYTES) {
        Ok(cmdline) if !cmdline.is_empty() => command_text(&cmdline),
        // A kernel thread, or one that cleared its arguments.
        _ => format!("[pid {pid}]"),
    };
    Some(Process {
        pid,
        start_time,
        stopped: all_stopped,
        threads,
        terminals,
        command,
    })
}

fn open_proc_dir(pid: u32) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        format!("/proc/{pid}"),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// A process that ended between listing and now.
fn vanished(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::SRCH)
    )
}

impl ProcessTable for SystemProcesses {
    fn list(&self) -> io::Result<Vec<Process>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(process) = open_proc_dir(pid).ok().and_then(|d| read_process(&d, pid)) {
                out.push(process);
            }
        }
        Ok(out)
    }

    fn signal(&self, process: &Process, uid: u32, gid: u32, signal: Signal) -> io::Result<Sent> {
        let dir = match open_proc_dir(process.pid) {
            Ok(dir) => dir,
            Err(e) if vanished(&e) => return Ok(Sent::Gone),
            Err(e) => return Err(e),
        };
        // Read through the descriptor, which stays with the process it was opened for.
        match read_process(&dir, process.pid) {
            Some(now) if now.start_time == process.start_time && now.carries(uid, gid) => {}
            _ => return Ok(Sent::Gone),
        }
        match rustix::process::pidfd_send_signal(&dir, signal) {
            Ok(()) => Ok(Sent::Delivered),
            Err(rustix::io::Errno::SRCH) => Ok(Sent::Gone),
            Err(e) => Err(e.into()),
        }
    }

    fn write_terminal(&self, device: u64, uid: u32, line: &str) -> io::Result<()> {
        let path = terminal_path(device)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a login terminal"))?;
        let fd = rustix::fs::open(
            path.as_str(),
            OFlags::WRONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
            || st.st_rdev != device
            || st.st_uid != uid
            || !rustix::termios::isatty(&fd)
        {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{path} is not a terminal of uid {uid}"),
            ));
        }
        // Non-blocking: a terminal that does not take the whole line now gets what it took.
        rustix::io::write(&fd, line.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct State {
        pub processes: Vec<Process>,
        /// (pid, signal number), in order.
        pub signals: Vec<(u32, i32)>,
        /// Pids that ignore SIGTERM.
        pub ignore_term: Vec<u32>,
        /// Pids that fork a child carrying the same credentials whenever they are listed
        /// while not stopped.
        pub forking: Vec<u32>,
        pub stopped: Vec<u32>,
        /// Pids whose SIGSTOP never shows (a tracer of theirs continues them).
        pub unstoppable: Vec<u32>,
        /// (device, uid, line) written.
        pub written: Vec<(u64, u32, String)>,
        /// Devices and the uid that owns each.
        pub terminals: Vec<(u64, u32)>,
        pub next_pid: u32,
        pub fail_list: bool,
    }

    /// Processes in memory; clones share them. Signals act as the kernel would: SIGKILL ends,
    /// SIGTERM ends unless ignored, SIGSTOP stops (a stopped process does not fork).
    #[derive(Clone, Default)]
    pub struct FakeProcesses(pub Arc<Mutex<State>>);

    impl FakeProcesses {
        pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        /// Adds a process of `uid` with primary gid `gid` and these supplementary groups.
        pub fn add(&self, pid: u32, uid: u32, gid: u32, groups: &[u32], command: &str) {
            self.add_on_terminal(pid, uid, gid, groups, command, &[]);
        }

        pub fn add_on_terminal(
            &self,
            pid: u32,
            uid: u32,
            gid: u32,
            groups: &[u32],
            command: &str,
            terminals: &[u64],
        ) {
            self.state().processes.push(Process {
                pid,
                start_time: u64::from(pid),
                stopped: false,
                threads: vec![Credentials {
                    uids: [uid; 3],
                    gids: [gid; 3],
                    groups: groups.to_vec(),
                }],
                terminals: terminals.to_vec(),
                command: command.into(),
            });
        }

        pub fn alive(&self, pid: u32) -> bool {
            self.state().processes.iter().any(|p| p.pid == pid)
        }

        pub fn pids(&self) -> Vec<u32> {
            self.state().processes.iter().map(|p| p.pid).collect()
        }
    }

    impl ProcessTable for FakeProcesses {
        fn list(&self) -> io::Result<Vec<Process>> {
            let mut s = self.state();
            if s.fail_list {
                return Err(io::Error::other("simulated /proc failure"));
            }
            let forking: Vec<Process> = s
                .processes
                .iter()
                .filter(|p| s.forking.contains(&p.pid) && !s.stopped.contains(&p.pid))
                .cloned()
                .collect();
            for parent in forking {
                s.next_pid = s.next_pid.max(10_000) + 1;
                let child = Process {
                    pid: s.next_pid,
                    start_time: u64::from(s.next_pid),
                    ..parent
                };
                s.forking.push(child.pid);
                s.processes.push(child);
            }
            let stopped = s.stopped.clone();
            for p in &mut s.processes {
                p.stopped = stopped.contains(&p.pid);
            }
            Ok(s.processes.clone())
        }

        fn signal(
            &self,
            process: &Process,
            uid: u32,
            gid: u32,
            signal: Signal,
        ) -> io::Result<Sent> {
            let mut s = self.state();
            let Some(at) = s.processes.iter().position(|p| {
                p.pid == process.pid && p.start_time == process.start_time && p.carries(uid, gid)
            }) else {
                return Ok(Sent::Gone);
            };
            s.signals.push((process.pid, signal.as_raw()));
            let ends = signal == Signal::KILL
                || (signal == Signal::TERM && !s.ignore_term.contains(&process.pid));
            if ends {
                s.processes.remove(at);
            } else if signal == Signal::STOP && !s.unstoppable.contains(&process.pid) {
                s.stopped.push(process.pid);
            }
            Ok(Sent::Delivered)
        }

        fn write_terminal(&self, device: u64, uid: u32, line: &str) -> io::Result<()> {
            let mut s = self.state();
            if !s.terminals.contains(&(device, uid)) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "not theirs",
                ));
            }
            s.written.push((device, uid, line.into()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_stat_line_with_a_name_holding_parentheses_then_fields_are_counted_after_it() {
        let stat = b"4242 (my (odd) name) S 1 4242 4242 34816 4242 4194304 1 0 0 0 2 1 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(('S', 987654, 34816)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn given_a_status_then_real_effective_saved_and_supplementary_ids_are_read() {
        let status = b"Name:\tbash\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t27\t102\t27\nGroups:\t4 24 999\n";
        let creds = parse_status(status).expect("parsed");
        assert_eq!(creds.uids, [1000, 1001, 1002]);
        assert_eq!(creds.gids, [100, 27, 102]);
        assert_eq!(creds.groups, vec![4, 24, 999]);
        assert!(creds.carries(1002, 999) && creds.carries(1000, 27) && creds.carries(1001, 102));
        assert!(
            !creds.carries(1003, 27),
            "the file-system uid is not whom it acts as"
        );
        assert!(!creds.carries(1000, 5));
        assert!(!creds.carries(0, 27));
        assert_eq!(parse_status(b"Name:\tbash\nUid:\t1000\n"), None);
        assert_eq!(status_state(b"Name:\tx\nState:\tT (stopped)\n"), Some('T'));
        assert!(is_dead('Z') && is_stopped('t') && !is_stopped('S'));
    }

    #[test]
    fn given_a_command_line_with_control_characters_then_it_is_escaped_and_bounded() {
        assert_eq!(command_text(b"sleep\x00100\x00"), "sleep 100");
        assert_eq!(command_text(b"evil\x1b[2J\n"), "evil\\x1b[2J");
        let long = vec![b'a'; 1000];
        let shown = command_text(&long);
        assert!(shown.len() <= MAX_COMMAND_BYTES && shown.ends_with("..."));
    }

    #[test]
    fn given_terminal_devices_then_only_consoles_serial_lines_and_ptys_have_paths() {
        let dev = |major, minor| rustix::fs::makedev(major, minor);
        assert_eq!(terminal_path(dev(136, 3)).as_deref(), Some("/dev/pts/3"));
        assert_eq!(terminal_path(dev(137, 1)).as_deref(), Some("/dev/pts/257"));
        assert_eq!(terminal_path(dev(4, 2)).as_deref(), Some("/dev/tty2"));
        assert_eq!(terminal_path(dev(4, 65)).as_deref(), Some("/dev/ttyS1"));
        assert_eq!(terminal_path(dev(5, 0)), None, "/dev/tty");
        assert_eq!(terminal_path(dev(5, 1)), None, "/dev/console");
        assert!(!is_terminal_device(dev(1, 3)));
    }

    #[test]
    fn given_this_process_then_the_table_lists_it_with_its_credentials() {
        let me = std::process::id();
        let listed = SystemProcesses.list().expect("list");
        let this = listed.iter().find(|p| p.pid == me).expect("listed");
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        assert!(this.carries(uid, gid));
        let argv0 = std::env::args().next().expect("argv[0]");
        assert!(
            this.command.starts_with(&argv0[..argv0.len().min(100)]),
            "{}",
            this.command
        );
    }
}
