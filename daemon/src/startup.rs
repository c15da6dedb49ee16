//! Starting and running pimd: the configuration check at start, the bus name, the signals
//! (SIGTERM, SIGHUP's reload and `pimd --reload`'s wait for its answer), and the loops that
//! reconcile on schedule and sweep set-group-ID files. `main.rs` only reads the arguments.

use crate::access::AccessReader;
use crate::access_snapshot::AccessSnapshots;
use crate::accounts::SystemAccounts;
use crate::alerts;
use crate::clock::{Clock, SystemClock};
use crate::fleet::{self, authority::PgWakeup, conninfo::ConnInfo, sync::PgConnector};
use crate::manager::{Connector, Fleet, Manager};
use crate::pam_socket;
use crate::processes::{ProcessTable, SystemProcesses};
use crate::service::{AccessReaders, Core, ManagerService};
use crate::setgid::{self, SetgidFiles, SystemSetgidFiles};
use crate::store::sqlite::SqliteStore;
use pim_common::reload::{LastReload, LAST_RELOAD_PATH};
use pim_common::PimError;
use pim_config::{self as config, Severity};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zbus::fdo::{RequestNameFlags, RequestNameReply};

/// Even with nothing due, reconcile this often: it catches memberships a crash left behind
/// and clock jumps.
const RECONCILE_EVERY_SECS: i64 = 60;

/// How long `pimd --reload` waits for the running pimd's answer. Loading looks users up (a
/// directory service may be slow) and waits for the manager, which may be running gpasswd;
/// systemd's own limit for ExecReload is 90 s.
const RELOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit status when the configuration has errors (sysexits' EX_CONFIG): pimd.service does not
/// restart on it (`RestartPreventExitStatus=78`), since a new start would only repeat them.
const EXIT_CONFIG_ERRORS: u8 = 78;

/// How long pimd waits before exiting when it cannot start (configuration errors, a database
/// it cannot open, a name it cannot own). D-Bus activation starts pimd for any call to its
/// name, which any local user can make, and the unit does not limit restarts (so that pimd
/// always comes back): without this pause a loop of calls would be tens of starts a second,
/// each printing every problem to the journal. While a failed start waits, the calls waiting
/// for the name all wait for it, and its exit answers them together.
const START_FAILURE_PAUSE: Duration = Duration::from_secs(10);

/// Why [`run`] ended with an error.
enum RunError {
    /// Before pimd owned its name: a new start would most likely fail the same way.
    NotStarted(String),
}

impl From<String> for RunError {
    fn from(message: String) -> Self {
        RunError::NotStarted(message)
    }
}

/// How often a start that waits for its configuration to be fixed looks at the file.
const CONFIG_POLL: Duration = Duration::from_millis(250);

/// Waits [`START_FAILURE_PAUSE`] before a failed start exits, unless a person runs pimd on a
/// terminal (they want the answer now, and are no loop).
fn pause_before_failing() {
    if std::io::stderr().is_terminal() {
        return;
    }
    eprintln!(
        "pimd: waiting {} s before exiting, so that the calls waiting for pimd share this failed start",
        START_FAILURE_PAUSE.as_secs()
    );
    std::thread::sleep(START_FAILURE_PAUSE);
}

/// What tells that a file was written: its inode, size and modification time.
fn file_stamp(path: &Path) -> Option<(u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()?))
}

/// Like [`pause_before_failing`] for a configuration with errors, but a file fixed meanwhile
/// ends the wait: its configuration is returned and this start goes on with it. (An
/// administrator who fixes the file and runs `systemctl start` would otherwise join this
/// failing start, and see it fail.) The file is read once it has held still for a poll, so
/// that one being written is not taken half-way.
fn wait_for_fixed_config(path: &Path) -> Option<config::Config> {
    if std::io::stderr().is_terminal() {
        return None;
    }
    eprintln!(
        "pimd: waiting {} s before exiting, so that the calls waiting for pimd share this failed \
         start; fixed meanwhile, {} is used",
        START_FAILURE_PAUSE.as_secs(),
        path.display()
    );
    let deadline = Instant::now() + START_FAILURE_PAUSE;
    let mut stamp = file_stamp(path);
    let mut changed = false;
    while Instant::now() < deadline {
        std::thread::sleep(CONFIG_POLL);
        let now = file_stamp(path);
        if now != stamp {
            (stamp, changed) = (now, true);
            continue;
        }
        if !changed {
            continue;
        }
        changed = false;
        let (config, problems) = config::load(path, &SystemAccounts);
        for problem in &problems {
            eprintln!("{problem}");
        }
        if config.is_some() {
            eprintln!("pimd: {} is fixed; starting", path.display());
            return config;
        }
    }
    None
}

/// Starts pimd with the configuration at `config_path` and serves until it is told to stop;
/// with `check_only`, only checks the configuration.
pub fn start(config_path: &Path, check_only: bool) -> ExitCode {
    // Everything pimd creates (database, journal files, /run/pim) is root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

    let (config, problems) = config::load(config_path, &SystemAccounts);
    for problem in &problems {
        eprintln!("{problem}");
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if check_only {
        return if errors == 0 {
            println!(
                "{}: configuration is valid ({} warning(s))",
                config_path.display(),
                problems.len()
            );
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "{}: {errors} error(s); pimd would not start",
                config_path.display()
            );
            ExitCode::FAILURE
        };
    }
    let Some(config) = config.or_else(|| {
        eprintln!("pimd: not starting: fix the configuration ({errors} error(s)); 'pimd --check-config' lists them");
        wait_for_fixed_config(config_path)
    }) else {
        return ExitCode::from(EXIT_CONFIG_ERRORS);
    };

    // One pimd at a time, decided first (before the database is opened, let alone migrated)
    // by a lock of root's in /run/pim rather than by the bus name: the PAM module's socket
    // must not wait for the bus (nor go with it). Another pimd serving already: this one must
    // change nothing. Held until the runtime has shut down, so that no task of this pimd is
    // still writing when the next one starts.
    let single = match pam_socket::lock_single_pimd() {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("pimd: not starting: {e}");
            pause_before_failing();
            return ExitCode::FAILURE;
        }
    };

    // One thread for the bus: a PAM check then never waits for a hand-over between worker
    // threads. Whatever blocks (SQLite writes, gpasswd) runs on tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pimd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, config_path.to_path_buf()));
    // A set-group-ID walk may still run on the blocking pool: its sweep's state is in the
    // database and the next start goes on with it, so stopping does not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(single);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::NotStarted(e)) => {
            eprintln!("pimd: not starting: {e}");
            pause_before_failing();
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config, config_path: PathBuf) -> Result<(), RunError> {
    // Whatever an earlier pimd said about a reload is moot: this one started with a valid file.
    // (Left behind, it would only make `pim doctor` report that old reload: not worth refusing
    // to start over.)
    if let Err(e) = std::fs::remove_file(LAST_RELOAD_PATH) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("pimd: cannot remove {LAST_RELOAD_PATH}: {e}");
        }
    }
    // Before the name is owned: systemd may send SIGHUP as soon as it is, and SIGHUP's
    // default action would end pimd.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;

    let store = SqliteStore::open(&config.daemon.database).map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let reader = || -> Result<AccessReader, String> {
        let store =
            SqliteStore::open_read_only(&config.daemon.database).map_err(|e| e.to_string())?;
        Ok(AccessReader::new(
            config.clone(),
            store,
            Box::new(SystemAccounts),
            Box::new(SystemClock),
        ))
    };
    let pam_socket_readers = (0..pam_socket::WORKERS)
        .map(|_| reader())
        .collect::<Result<_, _>>()?;
    // The PAM socket's quick answer, read again after each commit by a thread of its own.
    let snapshots = AccessSnapshots::new(config.clone(), Box::new(SystemClock));
    snapshots.start(
        Box::new(SqliteStore::open_read_only(&config.daemon.database).map_err(|e| e.to_string())?),
        Box::new(SystemAccounts),
    )?;
    let access = AccessReaders::new(reader()?, pam_socket_readers, Some(snapshots.clone()));
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let head_file = crate::manager::head_file_of(&config.daemon.database);
    let fleet = match &config.fleet {
        Some(fleet) => {
            let conninfo =
                ConnInfo::parse(&fleet.database).map_err(|e| format!("[fleet] database: {e}"))?;
            let name = fleet.host.clone().unwrap_or_else(|| host.clone());
            eprintln!(
                "pimd: fleet mode: host {name}, database user {}",
                conninfo.user().unwrap_or("(default)")
            );
            Some((conninfo, name, fleet.max_staleness_secs))
        }
        None => None,
    };
    let mut manager = Manager::new(
        config.clone(),
        store,
        Box::new(SystemAccounts),
        Box::new(SystemClock),
        Box::new(SystemProcesses),
        host,
    );
    manager.set_head_file(head_file);
    let fleet_link = fleet.map(|(conninfo, name, max_staleness)| {
        let connector: Arc<dyn Connector> = Arc::new(PgConnector(conninfo.clone()));
        manager.set_fleet(Fleet::new(connector.clone(), (*config).clone(), name));
        (connector, conninfo, max_staleness)
    });
    let core = Core::new(manager);
    access.watch_passes(core.clone());

    // The PAM module's socket answers from here on, whatever becomes of the bus, and before
    // the reconciliation below: that may take long (gpasswd, a slow user database), and a
    // holder's sudo must not wait for it. The answer does not depend on it: a grant past its
    // end, or no longer standing on its role, assignment and eligibility, covers nothing.
    let mut pam_socket =
        pam_socket::PamSocket::start(core.clone(), access.pam_socket_readers(), snapshots)?;
    pam_socket.publish()?;
    eprintln!(
        "pimd: answering the PAM module on {}",
        pam_socket::PAM_SOCKET
    );
    // End what ended while pimd was down (grants past their end, assignments over,
    // eligibility a new configuration took away) before the bus is served.
    if let Err(e) = core.with_manager(|m| m.reconcile()).await {
        eprintln!("pimd: reconciliation at start: {}", e.message());
    }
    notify_ready();

    if let Some(problem) = crate::processes::proc_problem() {
        eprintln!("pimd: warning: {problem}");
        let audited = core
            .with_manager(move |m| m.audit_proc_problem(&problem))
            .await;
        if let Err(e) = audited {
            eprintln!("pimd: cannot audit: {}", e.message());
        }
    }
    // Grants end on time whatever the alerts' look at the host does: the expiry, ending and
    // sweep loops run before it.
    let sweep_wake = Arc::new(tokio::sync::Notify::new());
    let end_wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(expiry_loop(
        core.clone(),
        [sweep_wake.clone(), end_wake.clone()],
    ));
    tokio::spawn(ending_loop(
        core.clone(),
        Arc::new(SystemProcesses),
        end_wake,
    ));
    tokio::spawn(setgid_sweep_loop(
        core.clone(),
        Arc::new(SystemSetgidFiles),
        sweep_wake,
    ));
    // The alerts' first look at the host (bounded: see [`HostLook`]), then the audit chain's
    // head as this pimd starts (and a break against the head file, if one happened while
    // pimd was down): published after every record start-up wrote, so that the head a
    // remote log keeps covers them.
    let mut host_look = HostLook::new(Arc::new(SystemProcesses));
    host_look.look(&core).await;
    let _ = core
        .with_manager(|m| {
            m.publish_start_head();
            Ok(())
        })
        .await;
    let alert_wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(alert_look_loop(core.clone(), host_look, alert_wake.clone()));
    tokio::spawn(bus_loop(core.clone(), access.clone()));
    if let Some((connector, conninfo, max_staleness)) = fleet_link {
        let managed = CoreManaged {
            core: core.clone(),
            access: access.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let wakeup = Box::new(PgWakeup::new(conninfo));
        std::thread::Builder::new()
            .name("fleet-sync".into())
            .spawn(move || {
                fleet::sync::run(connector, wakeup, managed, max_staleness, |line| {
                    eprintln!("pimd: {line}")
                })
            })
            .map_err(|e| format!("cannot start the fleet's sync thread: {e}"))?;
    }

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => {
                let received = monotonic_ns();
                record_reload(&reload(&core, &access, &config_path, received).await);
                // The alerts with the new configuration, the host looked at again.
                alert_wake.notify_one();
            }
        }
    }
    // The socket's threads stopped before the last denials are written: none comes after.
    pam_socket.stop();
    core.finish_denial_audit().await;
    if let Err(e) = core
        .with_manager(|m| m.record_unrecorded_refusals(true))
        .await
    {
        eprintln!(
            "pimd: cannot record the refusals counted so far: {}",
            e.message()
        );
    }
    // The last head this pimd wrote, to syslog and the head file (if it moved).
    let _ = core
        .with_manager(|m| {
            m.publish_head(false);
            Ok(())
        })
        .await;
    eprintln!("pimd: stopping; live grants stay recorded and end on schedule after restart");
    Ok(())
}

/// The manager as the fleet's sync thread reaches it: through the core (so that what a
/// round leaves, audit lines and events, is published as for any call), from a thread of its
/// own that blocks on the runtime for each local step.
struct CoreManaged {
    core: Arc<Core>,
    access: Arc<AccessReaders>,
    runtime: tokio::runtime::Handle,
}

impl fleet::sync::Managed for CoreManaged {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Manager) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        self.runtime.block_on(self.core.with_manager(f))
    }

    fn config_changed(&self) {
        let access = self.access.clone();
        let taken = self.runtime.block_on(self.core.with_manager(move |m| {
            access.set_config(m.config_snapshot());
            Ok(())
        }));
        if let Err(e) = taken {
            eprintln!(
                "pimd: fleet: the access check kept the previous policy: {}",
                e.message()
            );
        }
    }
}

/// The first pause before connecting to the bus again; it doubles up to [`BUS_RETRY_MAX`].
const BUS_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between two tries to reach the bus.
const BUS_RETRY_MAX: Duration = Duration::from_secs(5);

/// Serves pimd's name on the system bus for as long as pimd runs: connects, serves the
/// interface, owns the name; when the bus goes away (dbus-daemon restarted or killed), connects
/// again, with a growing pause, until a bus answers. Meanwhile the PAM module's socket and
/// the expiry work go on: sudo never depends on the bus.
async fn bus_loop(core: Arc<Core>, access: Arc<AccessReaders>) {
    let mut pause = BUS_RETRY_FIRST;
    let mut failing = false;
    loop {
        match serve_on_bus(&core, &access).await {
            Ok(connection) => {
                eprintln!("pimd: serving {} on the system bus", pim_common::BUS_NAME);
                (pause, failing) = (BUS_RETRY_FIRST, false);
                connection.closed().await;
                eprintln!(
                    "pimd: lost the connection to the system bus; still answering the PAM \
                     module on {}, and connecting to the bus again",
                    pam_socket::PAM_SOCKET
                );
            }
            Err(e) => {
                // Said once for each outage, not at every try.
                if !failing {
                    eprintln!(
                        "pimd: {e}; still answering the PAM module on {}, and trying again",
                        pam_socket::PAM_SOCKET
                    );
                    failing = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BUS_RETRY_MAX);
            }
        }
    }
}

/// Connects to the system bus, serves the interface there and owns pimd's name: the
/// connection, once all that is done.
async fn serve_on_bus(
    core: &Arc<Core>,
    access: &Arc<AccessReaders>,
) -> Result<zbus::Connection, String> {
    let connection = zbus::Connection::system()
        .await
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
    // Questions to the bus daemon (who is calling, who left) on a connection of their own:
    // their answers then never queue behind the calls waiting for pimd's name, which a local
    // user can fill with large messages.
    let questions = zbus::Connection::system()
        .await
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
    let bus = zbus::fdo::DBusProxy::new(&questions)
        .await
        .map_err(|e| format!("cannot talk to the bus daemon: {e}"))?;
    connection
        .object_server()
        .at(
            pim_common::OBJECT_PATH,
            ManagerService::new(core.clone(), bus, access.clone()),
        )
        .await
        .map_err(|e| format!("cannot serve {}: {e}", pim_common::OBJECT_PATH))?;
    // zbus's default flags would let another process take the name from this one:
    // neither replace nor allow replacement.
    let reply = connection
        .request_name_with_flags(pim_common::BUS_NAME, RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(|e| format!("cannot own {}: {e}", pim_common::BUS_NAME))?;
    if reply != RequestNameReply::PrimaryOwner {
        return Err(format!(
            "cannot own {}: another process owns it",
            pim_common::BUS_NAME
        ));
    }
    core.set_connection(connection.clone());
    Ok(connection)
}

/// Tells the service manager that pimd is ready (`Type=notify`: the PAM module's socket is
/// published), when it runs under one (`$NOTIFY_SOCKET`, a path or an abstract name after `@`).
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let address = match target.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&target),
    };
    let sent =
        address.and_then(|address| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &address));
    if let Err(e) = sent {
        eprintln!("pimd: cannot tell the service manager that pimd is ready: {e}");
    }
}

/// SIGHUP (`systemctl reload pimd`): read the configuration again and use it if it is valid;
/// otherwise keep the running one. Then reconcile at once, in the same turn: grants whose
/// user the new configuration no longer makes eligible end there. The outcome carries when
/// the signal was `received`. Everything said goes to stderr (the journal) and, the errors,
/// into the outcome.
async fn reload(
    core: &Arc<Core>,
    access: &Arc<AccessReaders>,
    path: &Path,
    received: u64,
) -> LastReload {
    let (config, problems) = config::load(path, &SystemAccounts);
    for problem in &problems {
        eprintln!("{problem}");
    }
    let Some(config) = config else {
        eprintln!(
            "pimd: {} has errors; keeping the running configuration",
            path.display()
        );
        return LastReload {
            ok: false,
            received,
            messages: problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .map(|p| p.to_string())
                .collect(),
        };
    };
    // The access check takes the new configuration with the manager, before reconciliation
    // (gpasswd runs) is done: a name taken out of `permanent` stops passing at once.
    let reader = access.clone();
    let reloaded = core
        .with_manager(move |m| {
            m.replace_config(config)?;
            reader.set_config(m.config_snapshot());
            Ok(m.reconcile())
        })
        .await;
    match reloaded {
        Ok(reconciled) => {
            eprintln!("pimd: configuration reloaded from {}", path.display());
            if let Err(e) = reconciled {
                eprintln!("pimd: reconciliation: {}", e.message());
            }
            LastReload {
                ok: true,
                received,
                messages: vec![],
            }
        }
        Err(e) => {
            let message = format!("reload refused: {}", e.message());
            eprintln!("pimd: {message}");
            LastReload {
                ok: false,
                received,
                messages: vec![message],
            }
        }
    }
}

/// Leaves the outcome of a reload in [`LAST_RELOAD_PATH`], whole or not at all (written next to
/// it, then renamed), for `pimd --reload` and `pim doctor`.
fn record_reload(outcome: &LastReload) {
    let path = Path::new(LAST_RELOAD_PATH);
    let partial = path.with_extension("partial");
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&partial, outcome.to_text()))
        .and_then(|()| std::fs::rename(&partial, path));
    if let Err(e) = written {
        eprintln!("pimd: cannot record the reload's outcome in {LAST_RELOAD_PATH}: {e}");
    }
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the same clock in every process, which no
/// setting of the time moves (0 if it cannot be read, which no answer is taken for).
fn monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// The program the running pimd was started from, by the links of `/proc`: that of process
/// `pid` must be the same file as this one's (or `/usr/sbin/pimd`, replaced by an upgrade
/// since it started), so that `--reload` with a wrong PID signals nothing else.
fn check_is_pimd(pid: nix::unistd::Pid) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let target = std::fs::read_link(&exe)
        .map_err(|e| format!("cannot tell which program process {pid} runs: {e}"))?;
    let same_file = match (std::fs::metadata(&exe), std::fs::metadata("/proc/self/exe")) {
        (Ok(theirs), Ok(ours)) => (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()),
        _ => false,
    };
    let installed = ["/usr/sbin/pimd", "/usr/sbin/pimd (deleted)"]
        .iter()
        .any(|p| target == Path::new(p));
    if same_file || installed {
        Ok(())
    } else {
        Err(format!(
            "process {pid} runs {}, not pimd; not signalling it",
            pim_common::text::escape(&target.to_string_lossy())
        ))
    }
}

/// The answer in `text` if it is that to a SIGHUP sent at `sent` (received at or after it);
/// `None` for an earlier reload's answer, this one's being still to come.
fn answer_to(text: &str, sent: u64) -> Option<Result<LastReload, String>> {
    match LastReload::parse(text) {
        Ok(answer) if answer.received < sent || sent == 0 => None,
        parsed => Some(parsed),
    }
}

/// `pimd --reload PID`: SIGHUP to the running pimd, then its answer: the first answer to a
/// SIGHUP received after this one was sent (one from an earlier reload that finishes late, a
/// manual `kill -HUP`, is not this reload's).
pub fn reload_running(pid: nix::unistd::Pid) -> ExitCode {
    use nix::sys::signal::{kill, Signal};
    let path = Path::new(LAST_RELOAD_PATH);
    if let Err(e) = check_is_pimd(pid) {
        eprintln!("pimd: {e}");
        return ExitCode::FAILURE;
    }
    let sent = monotonic_ns();
    if let Err(e) = kill(pid, Signal::SIGHUP) {
        eprintln!("pimd: cannot signal pimd (pid {pid}): {e}");
        return ExitCode::FAILURE;
    }
    let deadline = Instant::now() + RELOAD_ANSWER_TIMEOUT;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => match answer_to(&text, sent) {
                None => {}
                Some(Ok(answer)) if answer.ok => {
                    eprintln!("pimd: configuration reloaded (pid {pid})");
                    return ExitCode::SUCCESS;
                }
                Some(Ok(answer)) => {
                    eprintln!(
                        "pimd: reload failed; pimd (pid {pid}) keeps running the \
                         configuration it had: {}",
                        answer.messages.join("; ")
                    );
                    return ExitCode::FAILURE;
                }
                Some(Err(e)) => {
                    eprintln!("pimd: {LAST_RELOAD_PATH}: {e}");
                    return ExitCode::FAILURE;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("pimd: cannot read {LAST_RELOAD_PATH}: {e}");
                return ExitCode::FAILURE;
            }
        }
        if kill(pid, None).is_err() {
            eprintln!("pimd: pimd (pid {pid}) ended before it answered the reload");
            return ExitCode::FAILURE;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "pimd: pimd (pid {pid}) did not answer the reload within {}s",
                RELOAD_ANSWER_TIMEOUT.as_secs()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends what is due, then sleeps until the next deadline (or a minute, or a wake-up). Each
/// round wakes the set-group-ID sweep, which has work when a membership went, and the
/// ending of processes, which has work when a grant ended.
async fn expiry_loop(core: Arc<Core>, wakes: [Arc<tokio::sync::Notify>; 2]) {
    loop {
        let next = core
            .with_manager(|m| {
                if let Err(e) = m.reconcile() {
                    eprintln!("pimd: reconciliation: {}", e.message());
                }
                m.next_deadline()
            })
            .await;
        for wake in &wakes {
            wake.notify_one();
        }
        let now = SystemClock.now();
        let wait = match next {
            Ok(Some(deadline)) => (deadline - now).clamp(0, RECONCILE_EVERY_SECS),
            Ok(None) => RECONCILE_EVERY_SECS,
            Err(e) => {
                eprintln!("pimd: cannot read deadlines: {}", e.message());
                RECONCILE_EVERY_SECS
            }
        };
        // Deadlines are whole seconds; sleeping to the next second boundary at least keeps
        // a due grant from waiting a full extra second.
        let wait = Duration::from_secs(wait as u64).max(Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = core.wake.notified() => {}
        }
    }
}

/// Ends the processes that still carry a group after a grant of it ended, and warns before
/// grants end (ending.rs, manager_ends.rs): after every reconciliation, at each step's
/// deadline (a SIGKILL after `end_grace`, a warning's lead time) and at least once a minute.
/// The work on processes runs on the blocking pool without the manager's lock, so calls and
/// PAM checks never wait for it, nor for a grace.
async fn ending_loop(
    core: Arc<Core>,
    table: Arc<dyn ProcessTable>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        // A kill step that left some goes on soon; what failed (a table that could not be
        // read, a lookup that failed) is tried again after a pause.
        let endings = run_steps(
            &core,
            &table,
            "ending processes",
            |m| m.endings_due(),
            |job, table| job.run(table),
            |(job, step)| step.as_ref().is_ok_and(|s| job.kill && s.left > 0),
            |m, results| m.record_endings(results),
        )
        .await;
        let warnings = run_steps(
            &core,
            &table,
            "warnings before a grant's end",
            |m| m.warnings_due(),
            |job, table| job.run(table),
            |_| false,
            |m, results| m.record_warnings(results),
        )
        .await;
        let next = core.with_manager(|m| m.next_end_deadline()).await;
        let wait = match next {
            _ if endings == Round::Failed || warnings == Round::Failed => ENDING_RETRY,
            _ if endings == Round::Again => ENDING_AGAIN,
            Ok(Some(deadline)) => Duration::from_secs(
                (deadline - SystemClock.now()).clamp(0, RECONCILE_EVERY_SECS) as u64,
            )
            .max(ENDING_AGAIN),
            Ok(None) => Duration::from_secs(RECONCILE_EVERY_SECS as u64),
            Err(e) => {
                eprintln!("pimd: cannot read the endings' deadlines: {}", e.message());
                Duration::from_secs(RECONCILE_EVERY_SECS as u64)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}

/// The host is looked at for the alerts at least this often (and at start, and after a
/// reload).
const ALERT_LOOK_EVERY: Duration = Duration::from_secs(60);

/// A look at the host that has not answered within this is left to finish on its own: the
/// start-up goes on (the audit head is published) and the loop waits for it next time.
const ALERT_LOOK_TIMEOUT: Duration = Duration::from_secs(20);

/// The alerts' look at the host after the first (made by start-up): every
/// [`ALERT_LOOK_EVERY`], and at once when woken (a reload).
async fn alert_look_loop(core: Arc<Core>, mut host_look: HostLook, wake: Arc<tokio::sync::Notify>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ALERT_LOOK_EVERY) => {}
            _ = wake.notified() => {}
        }
        host_look.look(&core).await;
    }
}

/// The looks at the host for the alerts (/etc/group, /proc, the sudoers files), on the
/// blocking pool and outside the manager, so that calls and PAM checks never wait for one;
/// each bounded by [`ALERT_LOOK_TIMEOUT`] (a hung NSS source or file system must not hold
/// start-up), and never more than one at a time (one that overran is waited for again
/// rather than another started beside it).
struct HostLook {
    processes: Arc<dyn ProcessTable>,
    overrun: Option<tokio::task::JoinHandle<alerts::HostFacts>>,
}

impl HostLook {
    fn new(processes: Arc<dyn ProcessTable>) -> Self {
        HostLook {
            processes,
            overrun: None,
        }
    }

    /// One look, and the manager evaluates the alerts with it. Problems are said on stderr,
    /// an overrun in syslog as well.
    async fn look(&mut self, core: &Arc<Core>) {
        let mut looking = match self.overrun.take() {
            Some(looking) => looking,
            None => {
                let groups = match core.with_manager(|m| Ok(m.alert_groups())).await {
                    Ok(groups) => groups,
                    Err(e) => {
                        eprintln!("pimd: alerts: {}", e.message());
                        return;
                    }
                };
                let processes = self.processes.clone();
                tokio::task::spawn_blocking(move || {
                    alerts::host::look(
                        &SystemAccounts,
                        &*processes,
                        &pim_sudoers::read_system,
                        &groups,
                    )
                })
            }
        };
        match tokio::time::timeout(ALERT_LOOK_TIMEOUT, &mut looking).await {
            Ok(Ok(facts)) => {
                if let Err(e) = core.with_manager(move |m| m.record_host_look(facts)).await {
                    eprintln!("pimd: alerts: {}", e.message());
                }
            }
            Ok(Err(e)) => eprintln!("pimd: alerts: the look at the host failed: {e}"),
            Err(_) => {
                self.overrun = Some(looking);
                let _ = core
                    .with_manager(|m| {
                        m.alert_look_overran(ALERT_LOOK_TIMEOUT.as_secs());
                        Ok(())
                    })
                    .await;
            }
        }
    }
}

/// What a round of steps asks for next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Nothing until the next deadline.
    Done,
    /// Go on soon (processes left after a kill step).
    Again,
    /// Something failed: try again after [`ENDING_RETRY`].
    Failed,
}

/// One round of steps: `due` (under the manager's lock), `run` on each (on the blocking pool,
/// without it), then `record`.
async fn run_steps<J: Send + 'static, R: Send + 'static>(
    core: &Arc<Core>,
    table: &Arc<dyn ProcessTable>,
    what: &'static str,
    due: impl FnOnce(&mut Manager) -> Result<(Vec<J>, Option<PimError>), PimError> + Send + 'static,
    run: impl Fn(&J, &dyn ProcessTable) -> R + Send + 'static,
    soon: impl Fn(&(J, R)) -> bool,
    record: impl FnOnce(&mut Manager, Vec<(J, R)>) -> Result<(), PimError> + Send + 'static,
) -> Round {
    let (jobs, failure) = match core.with_manager(due).await {
        Ok(due) => due,
        Err(e) => {
            eprintln!("pimd: {what}: {}", e.message());
            return Round::Failed;
        }
    };
    // One job's failure (a lookup) holds back only that job.
    if let Some(e) = &failure {
        eprintln!("pimd: {what}: {}", e.message());
    }
    let failed = failure.is_some();
    if jobs.is_empty() {
        return if failed { Round::Failed } else { Round::Done };
    }
    let table = table.clone();
    let results = tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|job| {
                let result = run(&job, &*table);
                (job, result)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = match results {
        Ok(results) => results,
        Err(e) => {
            eprintln!("pimd: {what} failed: {e}");
            return Round::Failed;
        }
    };
    let again = results.iter().any(soon);
    match core.with_manager(move |m| record(m, results)).await {
        Err(e) => {
            eprintln!("pimd: {what}: {}", e.message());
            Round::Failed
        }
        Ok(()) if failed => Round::Failed,
        Ok(()) if again => Round::Again,
        Ok(()) => Round::Done,
    }
}

/// After a failure (the process table, a user or group lookup), the endings and warnings are
/// tried again after this: often enough not to keep processes long, not a log line a moment.
const ENDING_RETRY: Duration = Duration::from_secs(5);

/// An ending that left processes behind looks again after this; also the shortest pause.
const ENDING_AGAIN: Duration = Duration::from_millis(500);

/// While a sweep waits for processes that carry the group, it looks this often.
const SWEEP_WAITING_SECS: u64 = 2;

/// Rounds of one sweep in a row, at most: a round that cleared files is followed at once by
/// one that shows whether any is left.
const SWEEP_ROUNDS: usize = 3;

/// Looks for files users made set-group-ID for groups PIM took away from them (setgid.rs):
/// after every reconciliation (and so at start-up, for sweeps a stop or crash interrupted,
/// and to look again at the recent done ones) and at least once a minute. The walk runs on the blocking pool without the manager's
/// lock, so calls and PAM checks never wait for it.
async fn setgid_sweep_loop(
    core: Arc<Core>,
    files: Arc<dyn SetgidFiles>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        let mut waiting = false;
        for _ in 0..SWEEP_ROUNDS {
            let jobs = match core.with_manager(|m| m.setgid_sweeps_due()).await {
                Ok(jobs) if jobs.is_empty() => break,
                Ok(jobs) => jobs,
                Err(e) => {
                    eprintln!("pimd: set-group-ID sweep: {}", e.message());
                    break;
                }
            };
            let walker = files.clone();
            let results = match tokio::task::spawn_blocking(move || {
                setgid::sweep_round(&*walker, jobs)
            })
            .await
            {
                Ok(results) => results,
                Err(e) => {
                    eprintln!("pimd: set-group-ID sweep failed: {e}");
                    break;
                }
            };
            waiting = results.iter().any(|(_, swept)| swept.waits_for_processes());
            match core
                .with_manager(move |m| m.record_setgid_sweeps(results))
                .await
            {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    eprintln!("pimd: set-group-ID sweep: {}", e.message());
                    break;
                }
            }
        }
        // A process that still carries a group usually ends soon (the very `pim deactivate`
        // that ended the grant, a shell logging out): look at the processes more often then.
        let pause = if waiting {
            SWEEP_WAITING_SECS
        } else {
            RECONCILE_EVERY_SECS as u64
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(pause)) => {}
            _ = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{answer_to, check_is_pimd, monotonic_ns};
    use nix::unistd::Pid;
    use pim_common::reload::LastReload;

    fn answer(ok: bool, received: u64) -> String {
        LastReload {
            ok,
            received,
            messages: vec![],
        }
        .to_text()
    }

    #[test]
    fn given_an_answer_to_a_signal_received_before_this_one_was_sent_then_it_is_not_taken() {
        let sent = monotonic_ns();
        assert!(sent > 0);
        // A reload in progress (an earlier --reload that timed out, a kill -HUP) ends late.
        assert_eq!(answer_to(&answer(true, sent - 1), sent), None);
        let ours = answer_to(&answer(false, sent + 1), sent).expect("taken");
        assert!(!ours.unwrap().ok);
        assert!(answer_to(&answer(true, sent), sent).is_some());
        assert!(answer_to("garbage\n", sent).unwrap().is_err());
        // A clock that could not be read takes no answer.
        assert_eq!(answer_to(&answer(true, 5), 0), None);
    }

    #[test]
    fn given_a_pid_then_only_a_process_of_this_program_is_taken_for_pimd() {
        // This test's own process runs this very program.
        check_is_pimd(Pid::this()).unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(other.id() as i32);
        let refused = check_is_pimd(pid);
        let _ = other.kill();
        let _ = other.wait();
        let e = refused.unwrap_err();
        assert!(e.contains("not pimd; not signalling it"), "{e}");
        assert!(e.contains("sleep"), "{e}");
        let gone = check_is_pimd(pid).unwrap_err();
        assert!(gone.contains("cannot tell which program"), "{gone}");
    }
}
