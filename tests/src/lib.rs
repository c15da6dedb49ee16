//! End-to-end harness for pim: a throwaway Linux sandbox with its own system bus, users and
//! groups, in which the real `pimd`, `pim`, `pam_pim.so`, `gpasswd`, `sudo` and `pamtester`
//! run as they would on a host.
//!
//! # How it works
//!
//! [`Sandbox::start`] spawns, as a *child* of the test process,
//!
//! ```text
//! unshare --mount --pid --fork --mount-proc --net --uts --ipc --propagation private \
//!         --kill-child=KILL -- bash tests/sandbox/init.sh --policy packaging/dbus/... ...
//! ```
//!
//! `init.sh` is PID 1 of the new PID namespace. It puts a tmpfs on `/run` (scratch space is
//! `/run/.sandbox`) and a private `/dev` (a tmpfs with the host's device nodes and devpts bound
//! in), overlays `/etc` and `/var` with upper layers inside that tmpfs, puts tmpfs on `/home`,
//! `/tmp` and `/dev/shm`, pins NSS to `files`, starts a syslog collector on `/dev/log` (read
//! with [`Sandbox::syslog_lines`]), installs our bus policy file, starts `dbus-daemon
//! --system`, brings `lo` up, prints `READY` and then blocks reading its stdin, whose write end
//! only this process holds. Dropping the [`Sandbox`] (or the test process dying) closes it:
//! PID 1 exits, the kernel kills everything in the namespace and the mounts vanish with it.
//! Nothing is written on the host: `/usr` is not overlaid, `/dev` is the sandbox's own, and
//! [`Sandbox::write_file`] refuses paths outside the private mounts.
//!
//! The test process itself never enters a namespace. Every command runs as
//! `nsenter --target <host pid of PID 1> --mount --pid --net --uts --ipc -- /run/.sandbox/runas
//! USER -- ...`, and `runas` (tests/sandbox/runas.sh) drops to the user with `setpriv --reuid
//! --regid --init-groups` and a clean environment: each command is a fresh login as far as
//! supplementary groups go.
//!
//! The binaries under test are bind-mounted into the sandbox: `pim` and `pimd` in
//! `/run/.sandbox/bin` (first on every user's PATH), `libpam_pim.so` as [`PAM_MODULE`].
#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Scratch directory inside the sandbox (on the tmpfs mounted over `/run`).
pub const SANDBOX_DIR: &str = "/run/.sandbox";
/// Where `pim`, `pimd` (and whatever else is bind-mounted as a binary) live in the sandbox.
pub const BIN_DIR: &str = "/run/.sandbox/bin";
/// The PAM module under test, as seen inside the sandbox (use it by absolute path in
/// `/etc/pam.d/*`).
pub const PAM_MODULE: &str = "/run/.sandbox/lib/pam_pim.so";
/// `pimd`'s stdout and stderr, appended to across restarts.
pub const PIMD_LOG: &str = "/run/.sandbox/pimd.log";
/// What the sandbox's syslog collector received on `/dev/log`: each datagram, bytes unchanged,
/// followed by a newline.
pub const SYSLOG_LOG: &str = "/run/.sandbox/syslog.log";
/// The configuration file [`Sandbox::start_pimd`] points `pimd` at.
pub const CONFIG_PATH: &str = "/etc/pim/pim.toml";
/// The daemon's well-known bus name.
pub const BUS_NAME: &str = "org.pim.Manager1";

/// How long start-up steps (namespace, bus, daemon) may take before we call it a failure.
/// Generous on purpose: waits return as soon as the condition holds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit for one command run with [`Sandbox::run`] and friends (override with the
/// environment variable `PIM_E2E_COMMAND_TIMEOUT`, in seconds).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Directories searched for the host tools the harness needs (independent of the test
/// process's PATH).
const TOOL_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Host tools the sandbox needs, with the Debian package that ships each.
const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
    ("mount", "mount"),
    ("bash", "bash"),
    ("timeout", "coreutils"),
    ("dbus-daemon", "dbus"),
    ("busctl", "systemd"),
    ("useradd", "passwd"),
    ("groupadd", "passwd"),
    ("gpasswd", "passwd"),
    ("getent", "libc-bin"),
    ("ip", "iproute2"),
    ("oathtool", "oathtool"),
    ("python3", "python3-minimal"),
];

pub mod fleet;
pub mod postgres;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

// ---------------------------------------------------------------------------------------------
// Locating things
// ---------------------------------------------------------------------------------------------

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// The workspace's target directory (`$CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `target/debian/pim.deb` (built by `scripts/package`), resolved; panics with what to do when
/// it is missing.
pub fn built_deb() -> PathBuf {
    let link = target_dir().join("debian").join("pim.deb");
    match fs::canonicalize(&link) {
        Ok(path) if path.is_file() => path,
        _ => panic!(
            "{} is missing: build the package with scripts/package (scripts/test does that \
             before cargo test)",
            link.display()
        ),
    }
}

fn target_dir_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // The profile directory this very test binary was built into: target/<profile>/deps/x.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name().is_some_and(|n| n == "deps") {
                if let Some(profile) = deps.parent() {
                    dirs.push(profile.to_path_buf());
                }
            }
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_relative() {
            workspace_root().join(dir)
        } else {
            dir
        };
        dirs.push(dir.join("debug"));
    }
    dirs.push(workspace_root().join("target").join("debug"));
    dirs.dedup();
    dirs
}

fn find_binary(name: &str) -> Option<PathBuf> {
    target_dir_candidates()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// `target/debug/<name>` (or wherever the workspace's target directory is: the directory this
/// test binary was built into, then `$CARGO_TARGET_DIR/debug`, then `target/debug`).
/// Panics when it is missing.
pub fn binary(name: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| {
        panic!(
            "{name} not found in {:?}: run `cargo build --workspace` first",
            target_dir_candidates()
        )
    })
}

fn tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

fn host_tool(name: &str) -> PathBuf {
    tool(name).unwrap_or_else(|| panic!("{name} is not installed: run scripts/deps (as root)"))
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn preflight() {
    match effective_uid() {
        Some(0) => {}
        other => panic!(
            "the end-to-end tests must run as root (they create namespaces, mount overlays and \
             run dbus-daemon; nothing on the host is changed). Current euid: {other:?}. \
             Run scripts/test as root."
        ),
    }
    let missing: Vec<String> = REQUIRED_TOOLS
        .iter()
        .filter(|(name, _)| tool(name).is_none())
        .map(|(name, package)| format!("{name} (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        panic!(
            "tools needed by the end-to-end sandbox are missing: {}. Run scripts/deps as root.",
            missing.join(", ")
        );
    }
    for file in [
        workspace_root().join("tests/sandbox/init.sh"),
        workspace_root().join("tests/sandbox/runas.sh"),
        policy_file(),
    ] {
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

fn policy_file() -> PathBuf {
    workspace_root().join("packaging/dbus/org.pim.Manager1.conf")
}

/// The time now, in seconds since the epoch (the sandbox shares the host's clock).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// Quotes a word for display in a shell-like command line.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn command_line(user: &str, argv: &[&str]) -> String {
    let words: Vec<String> = argv.iter().map(|w| quote(w)).collect();
    format!("[as {user}] {}", words.join(" "))
}

fn status_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Last `max_lines` lines of `text`.
fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// Polls `f` (quickly at first, then every 200 ms) until it returns true, or `timeout` has
/// passed: then false.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Output of a command
// ---------------------------------------------------------------------------------------------

/// What a command run in the sandbox did. Every `assert_*` prints all of it on failure:
/// the command, its exit status, stdout, stderr and the tail of pimd's log at that moment.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Exit status; 128+N when killed by signal N; 124 when the command timed out.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command as run, e.g. `[as alice] pim activate admin -r '...'`.
    pub command: String,
    /// The last lines of pimd's log when the command ended (empty if pimd never ran).
    pub pimd_log_tail: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Panics (printing everything) unless the exit status is 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        if self.status != 0 {
            panic!("command failed (expected exit status 0):\n{self}");
        }
        self
    }

    /// Panics (printing everything) unless the exit status is `expected`.
    #[track_caller]
    pub fn assert_status(&self, expected: i32) -> &Self {
        if self.status != expected {
            panic!("expected exit status {expected}:\n{self}");
        }
        self
    }

    /// Panics (printing everything) if the command succeeded.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        if self.status == 0 {
            panic!("command succeeded but was expected to fail:\n{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            panic!("stdout does not contain {needle:?}:\n{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            panic!("stderr does not contain {needle:?}:\n{self}");
        }
        self
    }

    /// stdout parsed as one JSON document (for `--json`); panics with everything if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(&self.stdout) {
            Ok(value) => value,
            Err(e) => panic!("stdout is not a JSON document ({e}):\n{self}"),
        }
    }

    /// stdout with surrounding whitespace removed.
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.command)?;
        writeln!(f, "  exit status: {}", self.status)?;
        writeln!(f, "  --- stdout ---")?;
        writeln!(f, "{}", self.stdout.trim_end())?;
        writeln!(f, "  --- stderr ---")?;
        writeln!(f, "{}", self.stderr.trim_end())?;
        if !self.pimd_log_tail.is_empty() {
            writeln!(f, "  --- pimd log (tail) ---")?;
            writeln!(f, "{}", self.pimd_log_tail.trim_end())?;
        }
        write!(f, "  --- end ---")
    }
}

// ---------------------------------------------------------------------------------------------
// Reading pipes without ever blocking the test
// ---------------------------------------------------------------------------------------------

/// Drains a pipe on a thread into a shared buffer; `done` fires at end of file.
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
    finished: bool,
}

impl Collector {
    fn new(mut reader: impl Read + Send + 'static) -> Collector {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&buf);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => lock(&sink).extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(());
        });
        Collector {
            buf,
            done,
            finished: false,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.buf)).into_owned()
    }

    /// Waits for end of file up to `timeout`; false if something (a background process the
    /// command left behind) still holds the pipe open.
    fn finish(&mut self, timeout: Duration) -> bool {
        if !self.finished {
            self.finished = self.done.recv_timeout(timeout).is_ok();
        }
        self.finished
    }
}

/// `unshare` making the new mount, PID, network, UTS and IPC namespaces whose PID 1 is the
/// command to come; killed with unshare (`--kill-child`), and with it everything inside.
fn unshare_namespaces() -> Command {
    let mut cmd = Command::new(host_tool("unshare"));
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "--net",
        "--uts",
        "--ipc",
        "--propagation",
        "private",
        "--kill-child=KILL",
        "--",
    ]);
    cmd
}

/// Spawns `cmd` (an [`unshare_namespaces`]) with its stdio piped (stdin is its lifeline) and
/// a clean environment.
fn spawn_pid1(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", TOOL_DIRS.join(":"))
        .env("LANG", "C.UTF-8");
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start unshare: {e}"))
}

/// Reads the stdout of a namespace's PID 1 (`child`) until it prints `READY`, within
/// [`STARTUP_TIMEOUT`]. Returns every other line it printed (kept up to date afterwards),
/// whether it got ready, and its stderr.
fn wait_for_ready(child: &mut Child) -> (Arc<Mutex<String>>, bool, Collector) {
    let stderr = Collector::new(child.stderr.take().expect("stderr is piped"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let printed = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<bool>();
    {
        let printed = Arc::clone(&printed);
        thread::spawn(move || {
            use std::io::BufRead;
            let mut ready = false;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !ready && line.trim() == "READY" {
                    ready = true;
                    let _ = tx.send(true);
                } else {
                    let mut out = lock(&printed);
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            if !ready {
                let _ = tx.send(false);
            }
        });
    }
    let ready = rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or(false);
    (printed, ready, stderr)
}

/// Polls `child` until it exits or `deadline` passes.
fn wait_child(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for a child process: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

const PIPE_NOTE: &str = "[harness: the output pipe is still held open by a process the command \
                         left running; redirect the output of background processes]";

/// Runs `cmd` to its end with `stdin` (or none), collecting its output; panics with what it
/// printed after `limit`. `log_tail` is read when it ends (the daemon's log, for `Output`).
fn run_to_end(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    display: String,
    limit: Duration,
    log_tail: impl Fn() -> String,
) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run nsenter for {display}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut out = Collector::new(child.stdout.take().expect("stdout is piped"));
    let mut err = Collector::new(child.stderr.take().expect("stderr is piped"));
    let status = match wait_child(&mut child, Instant::now() + limit) {
        Some(status) => status_code(status),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            out.finish(Duration::from_secs(2));
            err.finish(Duration::from_secs(2));
            panic!(
                "command did not finish within {limit:?}:\n{}",
                Output {
                    status: -1,
                    stdout: out.text(),
                    stderr: err.text(),
                    command: display,
                    pimd_log_tail: log_tail(),
                }
            );
        }
    };
    let out_done = out.finish(Duration::from_secs(5));
    let err_done = err.finish(Duration::from_secs(1));
    let stderr_note = if out_done && err_done {
        String::new()
    } else {
        format!("\n{PIPE_NOTE}")
    };
    Output {
        status,
        stdout: out.text(),
        stderr: err.text() + &stderr_note,
        command: display,
        pimd_log_tail: log_tail(),
    }
}

// ---------------------------------------------------------------------------------------------
// The sandbox
// ---------------------------------------------------------------------------------------------

/// One throwaway sandbox: namespaces, private /etc, /var, /run, /home, /tmp, a system
/// dbus-daemon loading our policy, and (once started) pimd. Dropping it tears everything down.
///
/// All methods take `&self`; a `Sandbox` may be shared between threads (e.g. one thread waiting
/// in `pim activate --wait` while another approves).
pub struct Sandbox {
    unshare: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pid1: u32,
    marker: String,
    init_output: Arc<Mutex<String>>,
    pimd: Mutex<Option<Child>>,
    has_pimd: bool,
    has_pam_module: bool,
    command_timeout: Duration,
}

impl Sandbox {
    /// Creates the namespaces and starts the bus. Panics with a clear message when not run as
    /// root, when tools are missing, or when the setup fails (printing the setup's output).
    pub fn start() -> Sandbox {
        preflight();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let marker = format!("pim-e2e-sandbox-{}-{id}", std::process::id());
        let root = workspace_root();

        let mut cmd = unshare_namespaces();
        cmd.arg(host_tool("bash"))
            .arg(root.join("tests/sandbox/init.sh"))
            .arg("--policy")
            .arg(policy_file())
            .args(["--marker", &marker]);
        let mut has_pimd = false;
        for name in ["pim", "pimd"] {
            if let Some(path) = find_binary(name) {
                cmd.arg("--bin").arg(format!("{name}={}", path.display()));
                has_pimd |= name == "pimd";
            }
        }
        let pam = find_binary("libpam_pim.so");
        if let Some(path) = &pam {
            cmd.arg("--lib")
                .arg(format!("pam_pim.so={}", path.display()));
        }
        let mut child = spawn_pid1(cmd);

        // init.sh sends its stderr to stdout until READY; unshare's own complaints arrive on
        // stderr.
        let (init_output, ready, mut stderr) = wait_for_ready(&mut child);
        if !ready {
            let _ = child.kill();
            let status = wait_child(&mut child, Instant::now() + Duration::from_secs(10));
            stderr.finish(Duration::from_secs(2));
            panic!(
                "the sandbox did not come up (status {:?}).\n--- setup output ---\n{}\n\
                 --- unshare stderr ---\n{}\n--- end ---",
                status.map(status_code),
                lock(&init_output),
                stderr.text()
            );
        }

        let pid1 = find_pid1(child.id()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "cannot find the sandbox's PID 1 (child of unshare {})",
                child.id()
            )
        });
        let stdin = child.stdin.take();
        let command_timeout = std::env::var("PIM_E2E_COMMAND_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        Sandbox {
            unshare: Mutex::new(child),
            stdin: Mutex::new(stdin),
            pid1,
            marker,
            init_output,
            pimd: Mutex::new(None),
            has_pimd,
            has_pam_module: pam.is_some(),
            command_timeout,
        }
    }

    /// Host PID of the sandbox's PID 1 (the target of `nsenter`).
    pub fn host_pid(&self) -> u32 {
        self.pid1
    }

    /// A word unique to this sandbox that appears in its PID 1's command line.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// The sandbox's PID namespace as the host names it, e.g. `pid:[4026532291]`.
    pub fn pid_namespace(&self) -> String {
        fs::read_link(format!("/proc/{}/ns/pid", self.pid1))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// True when `libpam_pim.so` was built and is available as [`PAM_MODULE`].
    pub fn has_pam_module(&self) -> bool {
        self.has_pam_module
    }

    fn nsenter(&self) -> Command {
        let mut cmd = Command::new(host_tool("nsenter"));
        cmd.arg("--target")
            .arg(self.pid1.to_string())
            .args(["--mount", "--pid", "--net", "--uts", "--ipc", "--"])
            .env_clear()
            .env("PATH", TOOL_DIRS.join(":"))
            .env("LANG", "C.UTF-8");
        cmd
    }

    /// `runas USER [options] -- argv` as a word list.
    fn runas_argv(&self, user: &str, options: &[String], argv: &[&str]) -> Vec<String> {
        let mut words = vec![format!("{SANDBOX_DIR}/runas"), user.to_string()];
        words.extend(options.iter().cloned());
        words.push("--".into());
        words.extend(argv.iter().map(|s| s.to_string()));
        words
    }

    fn exec(&self, words: &[String], stdin: Option<&[u8]>, display: String) -> Output {
        let mut cmd = self.nsenter();
        cmd.args(words);
        // runas enforces the command timeout inside; this is the backstop.
        run_to_end(
            cmd,
            stdin,
            display,
            self.command_timeout + Duration::from_secs(30),
            || self.pimd_log_tail(40),
        )
    }

    fn run_inner(
        &self,
        user: &str,
        groups: Option<&[&str]>,
        argv: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        assert!(!argv.is_empty(), "run: empty command");
        let mut options = vec![
            "--timeout".to_string(),
            self.command_timeout.as_secs().max(1).to_string(),
            "--env".into(),
            "RUST_BACKTRACE=1".into(),
        ];
        let mut display = command_line(user, argv);
        if let Some(groups) = groups {
            options.push("--groups".into());
            options.push(groups.join(","));
            display = format!("{display}   (supplementary groups fixed to {groups:?})");
        }
        let words = self.runas_argv(user, &options, argv);
        self.exec(&words, stdin, display)
    }

    /// Runs `argv` as `user` ("root" allowed) in a fresh process: the user's groups as the group
    /// database has them now, a clean environment (PATH finds `pim`), the home directory as
    /// working directory and stdin at end of file. Killed after the command timeout (status 124).
    pub fn run(&self, user: &str, argv: &[&str]) -> Output {
        self.run_inner(user, None, argv, None)
    }

    /// Like [`Sandbox::run`], feeding `stdin` to the command.
    pub fn run_with_stdin(&self, user: &str, argv: &[&str], stdin: &str) -> Output {
        self.run_inner(user, None, argv, Some(stdin.as_bytes()))
    }

    /// Like [`Sandbox::run`], but with exactly these supplementary groups instead of those in
    /// the group database: a process that logged in before a change and kept its old groups.
    pub fn run_with_groups(&self, user: &str, groups: &[&str], argv: &[&str]) -> Output {
        self.run_inner(user, Some(groups), argv, None)
    }

    /// `bash -c SCRIPT` as `user`.
    pub fn sh(&self, user: &str, script: &str) -> Output {
        self.run(user, &["bash", "-c", script])
    }

    /// Runs `argv` as `user` in the background (same rules as [`Sandbox::run`], no timeout).
    /// See [`Background`]. It returns once the process exists, which may be before the command
    /// itself has started (and before its supplementary groups are set): when that matters,
    /// wait for its first output with [`Background::wait_for_stdout`].
    pub fn spawn(&self, user: &str, argv: &[&str]) -> Background<'_> {
        assert!(!argv.is_empty(), "spawn: empty command");
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let pid_file = format!("{SANDBOX_DIR}/bg/{id}.pid");
        let mut words: Vec<String> = vec![
            "bash".into(),
            "-c".into(),
            // The pid written is that of the command itself: runas, setpriv and env all exec.
            r#"mkdir -p "${1%/*}" && echo $$ >"$1" && shift && exec "$@""#.into(),
            "bash".into(),
            pid_file.clone(),
        ];
        words.extend(self.runas_argv(user, &["--env".into(), "RUST_BACKTRACE=1".into()], argv));
        let mut cmd = self.nsenter();
        cmd.args(&words)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let display = command_line(user, argv) + "   (in the background)";
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nsenter for {display}: {e}"));
        let stdout = Collector::new(child.stdout.take().expect("stdout is piped"));
        let stderr = Collector::new(child.stderr.take().expect("stderr is piped"));
        let bg = Background {
            sb: self,
            child: Some(child),
            pid_file,
            stdout,
            stderr,
            command: display,
            status: None,
        };
        // Make sure the pid file exists before handing it out, so that signal() works at once.
        let path = bg.pid_file_on_host();
        self.wait_until(&format!("{} to start", bg.command), STARTUP_TIMEOUT, || {
            path.exists() || !bg.child_alive()
        });
        bg
    }

    /// Runs a root command and panics with everything if it fails.
    #[track_caller]
    fn root_ok(&self, argv: &[&str]) -> Output {
        let out = self.run("root", argv);
        out.assert_success();
        out
    }

    /// Writes a file inside the sandbox (creating parent directories) with the given mode.
    /// Only paths on the sandbox's private mounts are accepted (/etc, /var, /run, /home, /tmp).
    #[track_caller]
    pub fn write_file(&self, path: &str, contents: &str, mode: u32) {
        assert_private_path(path);
        let script =
            r#"set -e; umask 022; mkdir -p -- "$(dirname -- "$1")"; cat >"$1"; chmod "$2" -- "$1""#;
        self.run_with_stdin(
            "root",
            &["bash", "-c", script, "bash", path, &format!("{mode:o}")],
            contents,
        )
        .assert_success();
    }

    /// Reads a file inside the sandbox (as root). Panics if it cannot be read.
    #[track_caller]
    pub fn read_file(&self, path: &str) -> String {
        self.root_ok(&["cat", "--", path]).stdout
    }

    /// Adds a group (groupadd). Panics if it exists already.
    #[track_caller]
    pub fn add_group(&self, name: &str) {
        self.root_ok(&["groupadd", "--", name]);
    }

    /// `useradd -m -U -s /bin/bash NAME`, member of `groups` (each created first if missing).
    #[track_caller]
    pub fn add_user(&self, name: &str, groups: &[&str]) {
        let script = r#"set -e
name=$1; shift
for g in "$@"; do getent group "$g" >/dev/null || groupadd -- "$g"; done
if (($#)); then
    list=$(IFS=,; echo "$*")
    useradd -m -U -s /bin/bash -G "$list" -- "$name"
else
    useradd -m -U -s /bin/bash -- "$name"
fi"#;
        let mut argv = vec!["bash", "-c", script, "bash", name];
        argv.extend_from_slice(groups);
        self.root_ok(&argv);
    }

    /// Supplementary groups of a FRESH login of `user` (`id -Gn` under `setpriv --init-groups`),
    /// primary group included.
    #[track_caller]
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let out = self.run(user, &["id", "-Gn"]);
        out.assert_success();
        out.stdout.split_whitespace().map(str::to_string).collect()
    }

    /// Members listed for `group` in the sandbox's group database (`getent group`). Panics if
    /// the group does not exist.
    #[track_caller]
    pub fn group_members(&self, group: &str) -> Vec<String> {
        let out = self.run("root", &["getent", "group", "--", group]);
        if out.status == 2 {
            panic!("group {group} does not exist in the sandbox:\n{out}");
        }
        out.assert_success();
        let line = out.stdout.trim();
        let members = line.splitn(4, ':').nth(3).unwrap_or("");
        members
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// True when `user` is listed as a member of `group` in the group database.
    pub fn is_member(&self, user: &str, group: &str) -> bool {
        self.group_members(group).iter().any(|m| m == user)
    }

    /// The 6-digit TOTP code for `secret_base32` at unix time `at_unix` (oathtool, SHA-1, 30 s).
    pub fn totp(&self, secret_base32: &str, at_unix: i64) -> String {
        totp_code(secret_base32, at_unix)
    }

    /// Enrols `user` in TOTP (`pim --json mfa enroll`, then `pim mfa confirm` with a first
    /// code) and returns their authenticator, which has spent that first code. Panics with
    /// everything when either step fails. pimd must be running.
    #[track_caller]
    pub fn enroll_mfa(&self, user: &str) -> Authenticator {
        self.enroll_mfa_with(user, &[])
    }

    /// [`Sandbox::enroll_mfa`] with more arguments to `pim mfa enroll` (a fleet's
    /// `--ticket T`).
    #[track_caller]
    pub fn enroll_mfa_with(&self, user: &str, args: &[&str]) -> Authenticator {
        let mut argv = vec!["pim", "--json", "mfa", "enroll"];
        argv.extend_from_slice(args);
        let enroll = self.run(user, &argv);
        let doc = enroll.assert_success().json();
        let Some(secret) = doc["secret"].as_str() else {
            panic!("no secret in `pim mfa enroll`'s JSON:\n{enroll}");
        };
        let mut phone = Authenticator::new(secret);
        let code = phone.next_code(self);
        self.run(user, &["pim", "mfa", "confirm", &code])
            .assert_success();
        phone
    }

    /// `pim --json audit ARGS...` as `user`: the records. Panics with everything when the
    /// command fails or prints no `records` array.
    #[track_caller]
    pub fn audit_records(&self, user: &str, args: &[&str]) -> Vec<serde_json::Value> {
        let mut argv = vec!["pim", "--json", "audit"];
        argv.extend_from_slice(args);
        let out = self.run(user, &argv);
        match out.assert_success().json()["records"].as_array() {
            Some(records) => records.clone(),
            None => panic!("no records array in `pim --json audit`:\n{out}"),
        }
    }

    /// Polls `f` until it returns true; panics naming `what` (with pimd's log) after `timeout`.
    /// Returns as soon as the condition holds.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) {
        if !poll_until(timeout, f) {
            panic!(
                "timed out after {:?} waiting for {what}\n--- pimd log (tail) ---\n{}\n--- end ---",
                timeout,
                self.pimd_log_tail(60)
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // pimd
    // -----------------------------------------------------------------------------------------

    /// Starts `pimd --config /etc/pim/pim.toml` as root in the background, output appended to
    /// [`PIMD_LOG`], and waits until it owns `org.pim.Manager1` on the bus. Panics (with the
    /// log) if it exits or does not show up within [`STARTUP_TIMEOUT`].
    #[track_caller]
    pub fn start_pimd(&self) {
        self.start_pimd_with_args(&["--config", CONFIG_PATH]);
    }

    /// Like [`Sandbox::start_pimd`] with other arguments.
    #[track_caller]
    pub fn start_pimd_with_args(&self, args: &[&str]) {
        if !self.has_pimd {
            binary("pimd"); // panics with the build hint
            panic!("pimd was built after this sandbox started; start a new sandbox");
        }
        let mut guard = lock(&self.pimd);
        if let Some(child) = guard.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                panic!("start_pimd: pimd is already running");
            }
        }
        let mut options = vec!["--env".to_string(), "RUST_BACKTRACE=1".to_string()];
        if let Ok(filter) = std::env::var("RUST_LOG") {
            options.push("--env".into());
            options.push(format!("RUST_LOG={filter}"));
        }
        let script = format!(
            r#"echo $$ >{SANDBOX_DIR}/pimd.pid
echo "=== $(date '+%F %T') starting: pimd $*" >>{PIMD_LOG}
exec pimd "$@" >>{PIMD_LOG} 2>&1"#
        );
        let mut argv = vec!["bash", "-c", script.as_str(), "pimd"];
        argv.extend_from_slice(args);
        let words = self.runas_argv("root", &options, &argv);
        let mut child = self
            .nsenter()
            .args(&words)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pimd: {e}"));

        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "pimd exited during start-up with status {}\n--- pimd log ---\n{}\n--- end ---",
                    status_code(status),
                    self.pimd_log()
                );
            }
            if self.bus_name_owned(BUS_NAME) {
                break;
            }
            if start.elapsed() >= STARTUP_TIMEOUT {
                let _ = child.kill();
                panic!(
                    "pimd did not take {BUS_NAME} on the bus within {STARTUP_TIMEOUT:?}\n\
                     --- pimd log ---\n{}\n--- end ---",
                    self.pimd_log()
                );
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        *guard = Some(child);
    }

    /// True while pimd (as started by [`Sandbox::start_pimd`]) runs.
    pub fn pimd_running(&self) -> bool {
        lock(&self.pimd)
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "HUP") to pimd and, unless it is one that does not
    /// end a process (HUP, USR1, USR2, CONT, STOP), waits until pimd is gone and its bus name is
    /// released. Returns pimd's exit status (128+N when killed by signal N), or None when pimd
    /// keeps running.
    #[track_caller]
    pub fn kill_pimd(&self, signal: &str) -> Option<i32> {
        let mut guard = lock(&self.pimd);
        let Some(child) = guard.as_mut() else {
            panic!("kill_pimd: pimd was never started");
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "kill_pimd: pimd is not running (it exited with status {})\n--- pimd log ---\n{}",
                status_code(status),
                self.pimd_log_tail(60)
            );
        }
        self.root_ok(&[
            "bash",
            "-c",
            r#"kill -s "$1" "$(cat "$2")""#,
            "bash",
            signal,
            &format!("{SANDBOX_DIR}/pimd.pid"),
        ]);
        let keeps_running = matches!(
            signal.trim_start_matches("SIG"),
            "HUP" | "USR1" | "USR2" | "CONT" | "STOP" | "WINCH" | "0"
        );
        if keeps_running {
            return None;
        }
        let status = match wait_child(child, Instant::now() + STARTUP_TIMEOUT) {
            Some(status) => status_code(status),
            None => panic!(
                "pimd did not exit within {STARTUP_TIMEOUT:?} after SIG{signal}\n\
                 --- pimd log ---\n{}",
                self.pimd_log_tail(60)
            ),
        };
        *guard = None;
        drop(guard);
        self.wait_until(
            &format!("{BUS_NAME} to be released after pimd exited"),
            STARTUP_TIMEOUT,
            || !self.bus_name_owned(BUS_NAME),
        );
        Some(status)
    }

    /// pimd's whole log (stdout and stderr of every run).
    pub fn pimd_log(&self) -> String {
        fs::read(self.host_path(PIMD_LOG))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of pimd's log.
    pub fn pimd_log_tail(&self, lines: usize) -> String {
        tail(&self.pimd_log(), lines)
    }

    /// Starts a new system bus, as `tests/sandbox/init.sh` does, after the first was killed
    /// (its log appended to [`Sandbox::dbus_log`]'s).
    #[track_caller]
    pub fn start_new_bus(&self) {
        self.sh(
            "root",
            &format!(
                "rm -f /run/dbus/system_bus_socket; \
                 dbus-daemon --system --fork --nopidfile --nosyslog >>{SANDBOX_DIR}/dbus.log 2>&1"
            ),
        )
        .assert_success();
    }

    /// The bus daemon's own log.
    pub fn dbus_log(&self) -> String {
        fs::read_to_string(self.host_path(&format!("{SANDBOX_DIR}/dbus.log"))).unwrap_or_default()
    }

    /// Every syslog line sent to the sandbox's `/dev/log` so far (pimd, `pam_syslog`, sudo,
    /// useradd...), oldest first: one datagram each, exactly as sent (`<PRI>` header
    /// included), split only at the newline the collector adds after each datagram.
    pub fn syslog_lines(&self) -> Vec<String> {
        let bytes = fs::read(self.host_path(SYSLOG_LOG)).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .split_terminator('\n')
            .map(str::to_string)
            .collect()
    }

    /// Waits until a syslog line satisfies `matches` and returns the first that does; panics
    /// naming `what` after `timeout` (the sandbox's diagnostics then show the syslog). Lines
    /// arrive asynchronously (the collector is a process of its own): poll, never read once.
    #[track_caller]
    pub fn wait_for_syslog_line(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let mut found = None;
        self.wait_until(&format!("a syslog line: {what}"), timeout, || {
            found = self.syslog_lines().into_iter().find(|l| matches(l));
            found.is_some()
        });
        found.unwrap_or_default()
    }

    /// Path through which the host may READ a file of ours in the sandbox's /run/.sandbox.
    /// Only used for files the harness itself creates there (no symlinks to follow).
    fn host_path(&self, sandbox_path: &str) -> PathBuf {
        assert!(sandbox_path.starts_with(SANDBOX_DIR));
        PathBuf::from(format!("/proc/{}/root{sandbox_path}", self.pid1))
    }

    /// `busctl --system call` of pimd's METHOD with SIGNATURE and ARGS as `user`: a call
    /// straight to the daemon, past the client's own checks.
    pub fn call_pimd(&self, user: &str, method: &str, signature: &str, args: &[&str]) -> Output {
        let mut argv = vec!["busctl", "--system", "call", BUS_NAME, "/org/pim/Manager1"];
        argv.extend([BUS_NAME, method, signature]);
        argv.extend_from_slice(args);
        self.run(user, &argv)
    }

    /// `busctl --system call` of the bus's own METHOD (org.freedesktop.DBus) with SIGNATURE
    /// ("" for none) and ARGS as `user`.
    pub fn call_bus_driver(
        &self,
        user: &str,
        method: &str,
        signature: &str,
        args: &[&str],
    ) -> Output {
        let bus = "org.freedesktop.DBus";
        let mut argv = vec![
            "busctl",
            "--system",
            "call",
            bus,
            "/org/freedesktop/DBus",
            bus,
        ];
        argv.push(method);
        if !signature.is_empty() {
            argv.push(signature);
        }
        argv.extend_from_slice(args);
        self.run(user, &argv)
    }

    /// True when `name` has an owner on the sandbox's system bus.
    pub fn bus_name_owned(&self, name: &str) -> bool {
        let out = self.call_bus_driver("root", "NameHasOwner", "s", &[name]);
        out.success() && out.stdout.trim() == "b true"
    }

    // -----------------------------------------------------------------------------------------
    // sudo
    // -----------------------------------------------------------------------------------------

    /// Configures sudo in the sandbox: `Defaults !fqdn`, a secure_path that finds `pim`, members
    /// of `sudo` may run anything without a password, and, when `pam_args` is given, `account required pam_pim.so
    /// <pam_args>` in the `sudo` and `sudo-i` PAM stacks (after common-account).
    #[track_caller]
    pub fn setup_sudo(&self, pam_args: Option<&str>) {
        self.write_file(
            "/etc/sudoers.d/pim-e2e",
            "Defaults !fqdn\nDefaults !lecture\n\
             Defaults secure_path=\"/run/.sandbox/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
             %sudo ALL=(ALL:ALL) NOPASSWD: ALL\n",
            0o440,
        );
        let Some(args) = pam_args else { return };
        assert!(
            self.has_pam_module,
            "setup_sudo: libpam_pim.so is not built: run `cargo build --workspace` first"
        );
        let pim_line = format!("account    required   {PAM_MODULE} {args}\n");
        let sudo = format!(
            "#%PAM-1.0\nsession    required   pam_limits.so\n@include common-auth\n\
             @include common-account\n{pim_line}@include common-session-noninteractive\n"
        );
        let sudo_i = format!(
            "#%PAM-1.0\nsession    required   pam_limits.so\n@include common-auth\n\
             @include common-account\n{pim_line}@include common-session\n"
        );
        self.write_file("/etc/pam.d/sudo", &sudo, 0o644);
        self.write_file("/etc/pam.d/sudo-i", &sudo_i, 0o644);
        self.root_ok(&["visudo", "-c"]);
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- sandbox {} (PID 1 = host pid {}) ---\n--- sandbox setup output ---\n{}\n\
             --- dbus-daemon log ---\n{}\n--- pimd log (tail) ---\n{}\n\
             --- syslog (tail) ---\n{}\n--- end ---",
            self.marker,
            self.pid1,
            lock(&self.init_output).trim_end(),
            self.dbus_log().trim_end(),
            self.pimd_log_tail(80),
            tail(&self.syslog_lines().join("\n"), 40)
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        // End of file on PID 1's stdin: it exits and the kernel kills the rest.
        drop(lock(&self.stdin).take());
        let mut unshare = lock(&self.unshare);
        if wait_child(&mut unshare, Instant::now() + Duration::from_secs(30)).is_none() {
            // unshare was started with --kill-child=KILL: killing it kills PID 1 too.
            eprintln!(
                "sandbox {}: PID 1 did not exit on EOF; killing it",
                self.marker
            );
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
        if let Some(mut pimd) = lock(&self.pimd).take() {
            if wait_child(&mut pimd, Instant::now() + Duration::from_secs(10)).is_none() {
                let _ = pimd.kill();
                let _ = pimd.wait();
            }
        }
    }
}

/// Paths the sandbox has private copies of; anything else would be the host's own.
fn assert_private_path(path: &str) {
    let ok = path.starts_with('/')
        && !path.split('/').any(|c| c == "..")
        && ["/etc/", "/var/", "/run/", "/home/", "/tmp/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
    assert!(
        ok,
        "write_file({path:?}): only absolute paths under /etc, /var, /run, /home or /tmp are \
         private to the sandbox"
    );
}

fn find_pid1(unshare_pid: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children =
            fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
        if children.is_some() {
            return children;
        }
        // Kernels without CONFIG_PROC_CHILDREN: scan for the process whose parent is unshare.
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...; comm may contain spaces and parentheses.
                let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
                if after.split_whitespace().nth(1) == Some(&unshare_pid.to_string()) {
                    return Some(pid);
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Background commands
// ---------------------------------------------------------------------------------------------

/// A command running in the sandbox in the background ([`Sandbox::spawn`]). Dropping it kills
/// the command if it still runs.
pub struct Background<'a> {
    sb: &'a Sandbox,
    child: Option<Child>,
    pid_file: String,
    stdout: Collector,
    stderr: Collector,
    command: String,
    status: Option<i32>,
}

impl Background<'_> {
    fn pid_file_on_host(&self) -> PathBuf {
        self.sb.host_path(&self.pid_file)
    }

    fn child_alive(&self) -> bool {
        // try_wait needs &mut; peek through /proc instead (the nsenter process on the host).
        self.child.as_ref().is_some_and(|c| {
            fs::read_to_string(format!("/proc/{}/stat", c.id()))
                .map(|s| {
                    let state = s
                        .rsplit_once(')')
                        .map(|(_, r)| r.trim_start())
                        .unwrap_or("");
                    !state.starts_with('Z')
                })
                .unwrap_or(false)
        })
    }

    /// True while the command runs.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                self.status = Some(status_code(status));
                false
            }
            Some(Ok(None)) => true,
            _ => false,
        }
    }

    /// What the command printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.stdout.text()
    }

    /// What the command printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// Waits until stdout contains `needle`; panics with everything after `timeout`.
    #[track_caller]
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.stdout.text().contains(needle) {
                return;
            }
            if !self.is_running() {
                // One last look: the output may have arrived with the exit.
                self.stdout.finish(Duration::from_secs(5));
                if self.stdout.text().contains(needle) {
                    return;
                }
                panic!(
                    "the command ended without printing {needle:?} on stdout:\n{}",
                    self.snapshot()
                );
            }
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {needle:?} on stdout:\n{}",
                    self.snapshot()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (e.g. "INT", "TERM") to the command inside the sandbox.
    #[track_caller]
    pub fn signal(&self, signal: &str) {
        self.sb
            .run(
                "root",
                &[
                    "bash",
                    "-c",
                    r#"kill -s "$1" "$(cat "$2")""#,
                    "bash",
                    signal,
                    &self.pid_file,
                ],
            )
            .assert_success();
    }

    /// Waits for the command to end; panics with everything after `timeout`.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        if self.status.is_none() {
            let child = self.child.as_mut().expect("child present until dropped");
            match wait_child(child, deadline) {
                Some(status) => self.status = Some(status_code(status)),
                None => panic!(
                    "timed out after {timeout:?} waiting for the command to end:\n{}",
                    self.snapshot()
                ),
            }
        }
        self.collect()
    }

    /// Kills the command (SIGKILL) and returns what it did.
    pub fn kill(mut self) -> Output {
        self.terminate();
        self.collect()
    }

    fn terminate(&mut self) {
        if !self.is_running() {
            return;
        }
        let _ = self.sb.run(
            "root",
            &[
                "bash",
                "-c",
                r#"kill -KILL "$(cat "$1")""#,
                "bash",
                &self.pid_file,
            ],
        );
        if let Some(child) = self.child.as_mut() {
            match wait_child(child, Instant::now() + Duration::from_secs(30)) {
                Some(status) => self.status = Some(status_code(status)),
                None => {
                    let _ = child.kill();
                    self.status = child.wait().ok().map(status_code);
                }
            }
        }
    }

    fn collect(&mut self) -> Output {
        let out_done = self.stdout.finish(Duration::from_secs(5));
        let err_done = self.stderr.finish(Duration::from_secs(1));
        let note = if out_done && err_done {
            String::new()
        } else {
            format!("\n{PIPE_NOTE}")
        };
        Output {
            status: self.status.unwrap_or(-1),
            stdout: self.stdout.text(),
            stderr: self.stderr.text() + &note,
            command: self.command.clone(),
            pimd_log_tail: self.sb.pimd_log_tail(40),
        }
    }

    fn snapshot(&self) -> Output {
        Output {
            status: self.status.unwrap_or(-1),
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
            command: self.command.clone(),
            pimd_log_tail: self.sb.pimd_log_tail(40),
        }
    }
}

impl Drop for Background<'_> {
    fn drop(&mut self) {
        self.terminate();
    }
}

// ---------------------------------------------------------------------------------------------
// TOTP
// ---------------------------------------------------------------------------------------------

/// TOTP period in seconds.
pub const TOTP_STEP: i64 = 30;

/// The 6-digit TOTP code (RFC 6238: SHA-1, 30 s) for `secret_base32` at `at_unix`, computed
/// by `oathtool --totp -b SECRET -N @AT`. Padding, spaces and case in the secret are ignored.
pub fn totp_code(secret_base32: &str, at_unix: i64) -> String {
    let secret: String = secret_base32
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let out = Command::new(host_tool("oathtool"))
        .args(["--totp", "-b", &secret, "-N", &format!("@{at_unix}")])
        .env_clear()
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| panic!("cannot run oathtool: {e}"));
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        panic!(
            "oathtool failed for secret {secret:?} at @{at_unix}: status {:?}, stdout {code:?}, \
             stderr {:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    code
}

/// A user's authenticator app. The daemon accepts the steps now-1..=now+1 and refuses any step
/// at or below the last one it accepted for that user; so every call of
/// [`Authenticator::next_code`] uses step `max(last + 1, now)`, sleeping first when that is
/// still more than one step ahead. Use one `Authenticator` per user, for every code that user
/// gives (confirm, activate, extend, approve, deny).
#[derive(Clone, Debug)]
pub struct Authenticator {
    secret: String,
    last_step: Option<i64>,
}

impl Authenticator {
    pub fn new(secret_base32: &str) -> Authenticator {
        Authenticator {
            secret: secret_base32.trim().to_string(),
            last_step: None,
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The step of the last code handed out.
    pub fn last_step(&self) -> Option<i64> {
        self.last_step
    }

    /// A code for a step the daemon has not seen yet and accepts now (may sleep up to ~30 s).
    pub fn next_code(&mut self, sb: &Sandbox) -> String {
        let now_step = now_unix().div_euclid(TOTP_STEP);
        let step = match self.last_step {
            Some(last) => (last + 1).max(now_step),
            None => now_step,
        };
        // Valid once the current step is step-1.
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock before 1970");
            let current = now.as_secs() as i64 / TOTP_STEP;
            if step <= current + 1 {
                break;
            }
            let valid_from = Duration::from_secs(((step - 1) * TOTP_STEP) as u64);
            thread::sleep(valid_from.saturating_sub(now) + Duration::from_millis(50));
        }
        self.last_step = Some(step);
        sb.totp(&self.secret, step * TOTP_STEP)
    }
}
