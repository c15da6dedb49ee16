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

use rustix::fs::{FileType, Mode, OFlags};
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
    #[cfg(test)]
    pub fn carries(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) && self.has_gid(gid)
    }

    /// Carries `gid` (real, effective, saved or supplementary).
    pub fn has_gid(&self, gid: u32) -> bool {
        self.gids.contains(&gid) || self.groups.contains(&gid)
    }
}

/// Whose processes an ending is about: a user's uid and the subordinate uids /etc/subuid
/// gives them (rootless containers run under those).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u32,
    /// (first uid, count) ranges of /etc/subuid; never one holding uid 0.
    pub subuids: Vec<(u32, u32)>,
}

impl Owner {
    /// `uid` is the user's or one of their subordinate uids.
    pub fn has(&self, uid: u32) -> bool {
        uid == self.uid
            || self
                .subuids
                .iter()
                .any(|&(first, count)| uid >= first && uid - first < count)
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
    /// Terminal devices (st_rdev) it runs on: its controlling terminal (tty_nr of
    /// /proc/PID/stat). Its standard descriptors are not looked at: that needs ptrace access
    /// (which pimd lacks) and could block on a FUSE or NFS file.
    pub terminals: Vec<u64>,
    /// Its command line, escaped (no control characters) and at most [`MAX_COMMAND_BYTES`].
    pub command: String,
    /// For a process in a user namespace other than pimd's: the host uids its namespace's
    /// uid_map maps to (the first outside uid of each line). Empty in pimd's namespace.
    pub userns_outside: Vec<u32>,
    /// It has more threads than [`MAX_THREADS`]; those beyond were not looked at.
    pub unexamined_threads: bool,
}

impl Process {
    #[cfg(test)]
    pub fn carries(&self, uid: u32, gid: u32) -> bool {
        self.threads.iter().any(|t| t.carries(uid, gid))
            || (self.unexamined_threads && self.threads.iter().any(|t| t.uids.contains(&uid)))
    }

    /// The process is `owner`'s: one of its threads acts as the user or a subordinate uid
    /// (real, effective or saved), or its user namespace maps to one of those.
    pub fn belongs_to(&self, owner: &Owner) -> bool {
        self.userns_outside.iter().any(|&u| owner.has(u))
            || self
                .threads
                .iter()
                .any(|t| t.uids.iter().any(|&u| owner.has(u)))
    }

    /// `owner`'s and carrying `gid` (in any thread).
    pub fn carries_for(&self, owner: &Owner, gid: u32) -> bool {
        self.belongs_to(owner)
            && (self.unexamined_threads || self.threads.iter().any(|t| t.has_gid(gid)))
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
    /// Sends `signal` to `process` if it is still that process, still `owner`'s and (with a
    /// gid) still carries `gid`.
    fn signal(
        &self,
        process: &Process,
        owner: &Owner,
        gid: Option<u32>,
        signal: Signal,
    ) -> io::Result<Sent>;
    /// SIGCONT to a process of `owner` that pimd stopped (no gid asked).
    fn resume(&self, process: &Process, owner: &Owner) -> io::Result<Sent> {
        self.signal(process, owner, None, Signal::CONT)
    }
    /// SIGSTOP to every process of `uid` at once: kill(-1, SIGSTOP) from a helper acting as
    /// `uid` (with `gid` as its only group), which the kernel makes atomic with respect to
    /// fork. It reaches the processes whose real or saved uid is `uid`, and those in user
    /// namespaces `uid` owns.
    fn freeze(&self, uid: u32, gid: u32) -> io::Result<()>;
    /// The subordinate uid ranges of `user` (uid `uid`) in /etc/subuid, by name or uid.
    fn subuids(&self, user: &str, uid: u32) -> io::Result<Vec<(u32, u32)>> {
        let _ = (user, uid);
        Ok(Vec::new())
    }
    /// Writes `line` to the terminal device `device` if it is a terminal owned by `uid`,
    /// never becoming its controlling terminal and never waiting on it.
    fn write_terminal(&self, device: u64, uid: u32, line: &str) -> io::Result<()>;
}

/// The real thing: /proc.
pub struct SystemProcesses;

/// How much of /etc/subuid is read.
const MAX_SUBUID_BYTES: u64 = 1 << 20;

/// The ranges of `user` (by name or uid) in an /etc/subuid text ("name:first:count"); never a
/// range holding uid 0.
pub fn parse_subuid(text: &str, user: &str, uid: u32) -> Vec<(u32, u32)> {
    let uid_text = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (who, first, count) = (f.next()?, f.next()?, f.next()?);
            if who != user && who != uid_text {
                return None;
            }
            let (first, count): (u32, u32) = (first.parse().ok()?, count.parse().ok()?);
            (first > 0 && count > 0 && first.checked_add(count - 1).is_some())
                .then_some((first, count))
        })
        .collect()
}

/// The helper's group when the user's primary one cannot be told.
const NOGROUP: u32 = 65534;

/// How long the freeze helper may take.
const FREEZE_HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// pimd's hidden argument that makes it the freeze helper ([`freeze_as`]).
pub const FREEZE_ARG: &str = "--freeze-uid";

/// The freeze helper (`pimd --freeze-uid UID GID`): drops every group and becomes UID (real,
/// effective and saved; with root's capabilities gone, as setresuid from root to a non-zero
/// uid drops them), then sends SIGSTOP to every process it may signal: kill(-1) is atomic
/// with respect to fork, so no child of the user's is born unstopped after it.
pub fn freeze_as(uid: u32, gid: u32) -> Result<(), String> {
    use nix::unistd::{Gid, Uid};
    if uid == 0 {
        return Err("never root".into());
    }
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(g, g, g).map_err(|e| format!("setresgid {gid}: {e}"))?;
    nix::unistd::setresuid(u, u, u).map_err(|e| format!("setresuid {uid}: {e}"))?;
    let ids = nix::unistd::getresuid().map_err(|e| e.to_string())?;
    if [ids.real, ids.effective, ids.saved] != [u; 3]
        || nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok()
    {
        return Err(format!("could not become uid {uid} for good"));
    }
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-1),
        nix::sys::signal::Signal::SIGSTOP,
    ) {
        // No process of the user's at all.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(format!("kill(-1, SIGSTOP): {e}")),
    }
}

/// Reads at most `max` bytes of `name` below the directory `dir`, into a buffer that grows
/// only as far as the file goes.
fn read_bounded(dir: impl AsFd, name: &str, max: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let mut out = Vec::with_capacity(4096.min(max));
    std::fs::File::from(fd)
        .take(max as u64)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// What a read of a process's /proc files gives: an error that only says it ended meanwhile
/// (ENOENT, ESRCH) makes it absent; any other (EACCES, EPERM under hidepid, say) is an error
/// of the whole scan, never a process silently left out.
fn or_gone<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if vanished(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub use pim_common::mounts::proc_hidepid;

/// Whether this process has CAP_SYS_PTRACE (bit 19 of CapEff), which sees through hidepid.
fn can_ptrace() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 19) != 0)
}

/// The problem with reading every process here, if there is one: /proc mounted with hidepid
/// while pimd cannot ptrace (logged at start, reported by `pim doctor`, and an error of every
/// ending's step).
pub fn proc_problem() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let hidden = proc_hidepid(&mountinfo)?;
    (!can_ptrace()).then(|| {
        format!(
            "/proc is mounted with {hidden}: pimd cannot see other users' processes, so it \
             cannot end those that carry a group at a grant's end (mount /proc without \
             hidepid, or give pimd CAP_SYS_PTRACE)"
        )
    })
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

/// The first outside uid of each line of a uid_map, unless it is the identity map of pimd's
/// own namespace.
pub fn parse_uid_map(map: &[u8]) -> Vec<u32> {
    let text = String::from_utf8_lossy(map);
    let lines: Vec<Vec<u64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .filter(|v: &Vec<u64>| v.len() == 3)
        .collect();
    if lines.len() == 1 && lines[0] == [0, 0, 4_294_967_295] {
        return Vec::new();
    }
    lines.iter().map(|v| v[1] as u32).collect()
}

/// Reads one process through its /proc directory; None when it is gone or a zombie, an
/// error when something other than its end keeps it from being read.
fn read_process(dir: &OwnedFd, pid: u32) -> io::Result<Option<Process>> {
    let Some(stat) = or_gone(read_bounded(dir, "stat", MAX_STAT_BYTES))? else {
        return Ok(None);
    };
    let Some((state, start_time, tty)) = parse_stat(&stat) else {
        return Ok(None);
    };
    // Every live thread: a main thread that exited (pthread_exit) leaves the process listed
    // as a zombie while its other threads run on, with the group.
    let mut threads = Vec::new();
    let mut all_stopped = true;
    let tasks = or_gone(
        rustix::fs::openat(
            dir,
            "task",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from),
    )?;
    let mut at_limit = false;
    if let Some(tasks) = tasks {
        let names = or_gone(rustix::fs::Dir::read_from(&tasks).map_err(io::Error::from))?;
        for (n, tid) in names
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok()?.parse::<u32>().ok())
            .enumerate()
        {
            if n == MAX_THREADS {
                at_limit = true;
                break;
            }
            let Some(status) = or_gone(read_bounded(
                &tasks,
                &format!("{tid}/status"),
                MAX_STATUS_BYTES,
            ))?
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
    if threads.is_empty() {
        if is_dead(state) {
            return Ok(None);
        }
        let Some(status) = or_gone(read_bounded(dir, "status", MAX_STATUS_BYTES))? else {
            return Ok(None);
        };
        let Some(creds) = parse_status(&status) else {
            return Ok(None);
        };
        threads.push(creds);
        all_stopped = is_stopped(state);
    }
    let mut terminals = Vec::new();
    if tty != 0 && is_terminal_device(tty) {
        terminals.push(tty);
    }
    let command = match or_gone(read_bounded(dir, "cmdline", MAX_CMDLINE_BYTES))? {
        Some(cmdline) if !cmdline.is_empty() => command_text(&cmdline),
        // A kernel thread, or one that cleared its arguments.
        _ => format!("[pid {pid}]"),
    };
    let userns_outside = or_gone(read_bounded(dir, "uid_map", MAX_STAT_BYTES))?
        .map(|m| parse_uid_map(&m))
        .unwrap_or_default();
    Ok(Some(Process {
        pid,
        start_time,
        stopped: all_stopped,
        threads,
        terminals,
        command,
        userns_outside,
        // More threads than are looked at: the rest may carry any group, so the process
        // counts as carrying every one (it is still ended only if it is the user's).
        unexamined_threads: at_limit,
    }))
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
        if let Some(problem) = proc_problem() {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, problem));
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Some(dir) = or_gone(open_proc_dir(pid))? else {
                continue;
            };
            if let Some(process) = read_process(&dir, pid)? {
                out.push(process);
            }
        }
        Ok(out)
    }

    fn signal(
        &self,
        process: &Process,
        owner: &Owner,
        gid: Option<u32>,
        signal: Signal,
    ) -> io::Result<Sent> {
        let Some(dir) = or_gone(open_proc_dir(process.pid))? else {
            return Ok(Sent::Gone);
        };
        // Read through the descriptor, which stays with the process it was opened for.
        match read_process(&dir, process.pid)? {
            Some(now)
                if now.start_time == process.start_time
                    && now.belongs_to(owner)
                    && gid.is_none_or(|g| now.carries_for(owner, g)) => {}
            _ => return Ok(Sent::Gone),
        }
        match rustix::process::pidfd_send_signal(&dir, signal) {
            Ok(()) => Ok(Sent::Delivered),
            Err(rustix::io::Errno::SRCH) => Ok(Sent::Gone),
            Err(e) => Err(e.into()),
        }
    }

    fn subuids(&self, user: &str, uid: u32) -> io::Result<Vec<(u32, u32)>> {
        use std::io::Read;
        let mut text = String::new();
        match std::fs::File::open("/etc/subuid") {
            Ok(f) => f.take(MAX_SUBUID_BYTES).read_to_string(&mut text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(parse_subuid(&text, user, uid))
    }

    fn freeze(&self, uid: u32, gid: u32) -> io::Result<()> {
        if uid == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "never root"));
        }
        // pimd itself, again: it forbids unsafe code, so the helper is a fresh exec, not a
        // fork with code run before exec (see main.rs, --freeze-uid).
        // The helper's only group: the user's primary one (any but root's would do).
        let gid = match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) if u.gid.as_raw() != 0 => u.gid.as_raw(),
            _ if gid != 0 => gid,
            _ => NOGROUP,
        };
        let mut child = std::process::Command::new("/proc/self/exe")
            .args([FREEZE_ARG, &uid.to_string(), &gid.to_string()])
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        // Once it is the user, the user may signal it (stop it, say): never wait for it long.
        let deadline = std::time::Instant::now() + FREEZE_HELPER_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the helper stopping the processes of uid {uid} did not finish"),
                ));
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        };
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "the helper stopping the processes of uid {uid} failed ({status})"
            )))
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
        /// Uids frozen (kill(-1, SIGSTOP) as the uid), in order.
        pub freezes: Vec<u32>,
        /// Pids pimd continued (SIGCONT after a freeze), in order.
        pub resumed: Vec<u32>,
        /// Pids that, whenever listed while not stopped, continue every stopped process of
        /// their uid (a `kill(-1, SIGCONT)` loop).
        pub continuing: Vec<u32>,
        /// Pids that fork a child and exit whenever listed while not stopped (a
        /// fork-and-exit chain: a listed pid is always gone by the time it is signalled).
        pub chain: Vec<u32>,
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
                userns_outside: Vec::new(),
                unexamined_threads: false,
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
            // A member of a chain that runs forks its successor and exits; the list shows
            // the member, which is gone once pimd signals it (the successor is not listed).
            let running_chain: Vec<Process> = s
                .processes
                .iter()
                .filter(|p| s.chain.contains(&p.pid) && !s.stopped.contains(&p.pid))
                .cloned()
                .collect();
            // A SIGCONT loop that runs continues every stopped process of its uid.
            let continuing: Vec<u32> = s
                .processes
                .iter()
                .filter(|p| s.continuing.contains(&p.pid) && !s.stopped.contains(&p.pid))
                .map(|p| p.threads[0].uids[0])
                .collect();
            for uid in continuing {
                let theirs: Vec<u32> = s
                    .processes
                    .iter()
                    .filter(|p| p.threads[0].uids[0] == uid)
                    .map(|p| p.pid)
                    .collect();
                s.stopped.retain(|pid| !theirs.contains(pid));
            }
            let stopped = s.stopped.clone();
            for p in &mut s.processes {
                p.stopped = stopped.contains(&p.pid);
            }
            let listed = s.processes.clone();
            for member in running_chain {
                s.next_pid = s.next_pid.max(10_000) + 1;
                let next = Process {
                    pid: s.next_pid,
                    start_time: u64::from(s.next_pid),
                    ..member.clone()
                };
                s.chain.push(next.pid);
                s.processes.retain(|p| p.pid != member.pid);
                s.processes.push(next);
            }
            Ok(listed)
        }

        fn signal(
            &self,
            process: &Process,
            owner: &Owner,
            gid: Option<u32>,
            signal: Signal,
        ) -> io::Result<Sent> {
            let mut s = self.state();
            let Some(at) = s.processes.iter().position(|p| {
                p.pid == process.pid
                    && p.start_time == process.start_time
                    && p.belongs_to(owner)
                    && gid.is_none_or(|g| p.carries_for(owner, g))
            }) else {
                return Ok(Sent::Gone);
            };
            s.signals.push((process.pid, signal.as_raw()));
            let ends = signal == Signal::KILL
                || (signal == Signal::TERM && !s.ignore_term.contains(&process.pid));
            if ends {
                s.processes.remove(at);
                s.stopped.retain(|&pid| pid != process.pid);
            } else if signal == Signal::STOP && !s.unstoppable.contains(&process.pid) {
                s.stopped.push(process.pid);
            } else if signal == Signal::CONT {
                s.stopped.retain(|&pid| pid != process.pid);
            }
            Ok(Sent::Delivered)
        }

        fn resume(&self, process: &Process, owner: &Owner) -> io::Result<Sent> {
            let mut s = self.state();
            let here = s.processes.iter().any(|p| {
                p.pid == process.pid && p.start_time == process.start_time && p.belongs_to(owner)
            });
            if !here {
                return Ok(Sent::Gone);
            }
            s.resumed.push(process.pid);
            s.stopped.retain(|&pid| pid != process.pid);
            Ok(Sent::Delivered)
        }

        /// As the kernel's kill(-1) from `uid`: every process whose real or saved uid is
        /// `uid`, or whose user namespace maps to it, at once.
        fn freeze(&self, uid: u32, _gid: u32) -> io::Result<()> {
            let mut s = self.state();
            s.freezes.push(uid);
            let reached: Vec<u32> = s
                .processes
                .iter()
                .filter(|p| {
                    p.userns_outside.contains(&uid)
                        || p.threads
                            .iter()
                            .any(|t| t.uids[0] == uid || t.uids[2] == uid)
                })
                .map(|p| p.pid)
                .filter(|pid| !s.unstoppable.contains(pid) && !s.stopped.contains(pid))
                .collect();
            s.stopped.extend(reached);
            Ok(())
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

    #[test]
    fn given_proc_mounted_with_hidepid_then_it_is_a_problem_and_plain_proc_is_not() {
        let plain = "22 28 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n";
        assert_eq!(proc_hidepid(plain), None);
        let hidden = "22 28 0:5 / /proc rw,nosuid shared:12 - proc proc rw,hidepid=invisible\n";
        assert_eq!(proc_hidepid(hidden).as_deref(), Some("hidepid=invisible"));
        let two = "22 28 0:5 / /proc rw - proc proc rw,hidepid=2,gid=4\n";
        assert_eq!(proc_hidepid(two).as_deref(), Some("hidepid=2"));
        let off = "22 28 0:5 / /proc rw - proc proc rw,hidepid=0\n";
        assert_eq!(proc_hidepid(off), None);
        let elsewhere = "30 28 0:5 / /mnt/proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(proc_hidepid(elsewhere), None);
    }

    #[test]
    fn given_read_errors_then_only_a_process_that_ended_is_left_out() {
        let gone = io::Error::from_raw_os_error(libc_errno::ENOENT);
        let dead = io::Error::from_raw_os_error(libc_errno::ESRCH);
        let denied = io::Error::from_raw_os_error(libc_errno::EACCES);
        let perm = io::Error::from_raw_os_error(libc_errno::EPERM);
        assert!(or_gone::<()>(Err(gone)).unwrap().is_none());
        assert!(or_gone::<()>(Err(dead)).unwrap().is_none());
        assert!(
            or_gone::<()>(Err(denied)).is_err(),
            "hidepid: an error, not none"
        );
        assert!(or_gone::<()>(Err(perm)).is_err());
    }

    mod libc_errno {
        pub const EPERM: i32 = 1;
        pub const ENOENT: i32 = 2;
        pub const ESRCH: i32 = 3;
        pub const EACCES: i32 = 13;
    }

    #[test]
    fn given_an_etc_subuid_then_the_users_ranges_are_read_by_name_or_uid() {
        let text = "alice:100000:65536\nbob:165536:65536\n1000:300000:10\nroot:0:5\nbad line\n";
        assert_eq!(
            parse_subuid(text, "alice", 1000),
            vec![(100000, 65536), (300000, 10)]
        );
        assert_eq!(parse_subuid(text, "root", 0), vec![]);
    }

    #[test]
    fn given_uid_maps_then_the_host_uids_of_a_namespace_are_read() {
        assert_eq!(
            parse_uid_map(b"         0          0 4294967295\n"),
            Vec::<u32>::new()
        );
        assert_eq!(
            parse_uid_map(b"0 1000 1\n1 100000 65536\n"),
            vec![1000, 100000]
        );
        let owner = Owner {
            uid: 1000,
            subuids: vec![(100_000, 65_536)],
        };
        assert!(owner.has(1000) && owner.has(165_535) && !owner.has(165_536) && !owner.has(0));
    }
}
