//! pimd: the just-in-time privilege daemon. Owns `org.pim.Manager1` on the system bus, keeps
//! its state in SQLite, and adds and removes Unix group memberships through gpasswd.
#![forbid(unsafe_code)]

mod access;
mod accounts;
mod clock;
mod config;
mod manager;
mod mfa;
mod policy;
mod refusals;
mod service;
mod setgid;
mod store;
mod syslog;

use access::AccessReader;
use accounts::SystemAccounts;
use clock::{Clock, SystemClock};
use config::Severity;
use manager::Manager;
use service::{Core, ManagerService};
use setgid::{SetgidFiles, SystemSetgidFiles};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use store::Store;

/// Even with nothing due, reconcile this often: it catches memberships a crash left behind
/// and clock jumps.
const RECONCILE_EVERY_SECS: i64 = 60;

const USAGE: &str = "usage: pimd [--config PATH] [--check-config]

  --config PATH    configuration file (default /etc/pim/pim.toml)
  --check-config   validate the configuration, print every problem, and exit
  --version        print the version and exit";

struct Options {
    config: PathBuf,
    check_only: bool,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut options = Options {
        config: PathBuf::from(config::DEFAULT_PATH),
        check_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => {
                options.config = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--config needs a path")?;
            }
            s if s.starts_with("--config=") => {
                options.config = PathBuf::from(&s["--config=".len()..]);
            }
            "--check-config" => options.check_only = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" => {
                println!("pimd {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => {
                return Err(format!(
                    "unknown argument '{}'",
                    pim_common::text::escape(other)
                ))
            }
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pimd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Everything pimd creates (database, journal files) is root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

    let (config, problems) = config::load(&options.config, &SystemAccounts);
    for problem in &problems {
        eprintln!("{problem}");
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if options.check_only {
        return if errors == 0 {
            println!(
                "{}: configuration is valid ({} warning(s))",
                options.config.display(),
                problems.len()
            );
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "{}: {errors} error(s); pimd would not start",
                options.config.display()
            );
            ExitCode::FAILURE
        };
    }
    let Some(config) = config else {
        eprintln!("pimd: not starting: fix the configuration ({errors} error(s)); 'pimd --check-config' lists them");
        return ExitCode::FAILURE;
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
    let result = runtime.block_on(run(config, options.config));
    // A set-group-ID walk may still run on the blocking pool: its sweep's state is in the
    // database and the next start goes on with it, so stopping does not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pimd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config, config_path: PathBuf) -> Result<(), String> {
    let store = Store::open(&config.daemon.database).map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let reader = Store::open_read_only(&config.daemon.database).map_err(|e| e.to_string())?;
    let access = Arc::new(Mutex::new(AccessReader::new(
        config.clone(),
        reader,
        Box::new(SystemAccounts),
        Box::new(SystemClock),
    )));
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let manager = Manager::new(
        config,
        store,
        Box::new(SystemAccounts),
        Box::new(SystemClock),
        host,
    );
    let core = Core::new(manager);

    let connection = zbus::Connection::system()
        .await
        .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
    let bus = zbus::fdo::DBusProxy::new(&connection)
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
    core.set_connection(connection.clone());
    connection
        .request_name(pim_common::BUS_NAME)
        .await
        .map_err(|e| {
            format!(
                "cannot own {} (is another pimd running?): {e}",
                pim_common::BUS_NAME
            )
        })?;
    eprintln!("pimd: serving {} on the system bus", pim_common::BUS_NAME);

    let sweep_wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(expiry_loop(core.clone(), sweep_wake.clone()));
    tokio::spawn(setgid_sweep_loop(
        core.clone(),
        Arc::new(SystemSetgidFiles),
        sweep_wake,
    ));

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => reload(&core, &access, &config_path).await,
        }
    }
    if let Err(e) = core
        .with_manager(|m| m.record_unrecorded_refusals(true))
        .await
    {
        eprintln!(
            "pimd: cannot record the refusals counted so far: {}",
            e.message()
        );
    }
    eprintln!("pimd: stopping; live grants stay recorded and end on schedule after restart");
    Ok(())
}

/// SIGHUP (`systemctl reload pimd`): read the configuration again and use it if it is valid;
/// otherwise keep the running one. Then reconcile at once, in the same turn: grants whose
/// user the new configuration no longer makes eligible end there.
async fn reload(core: &Arc<Core>, access: &Mutex<AccessReader>, path: &std::path::Path) {
    let (config, problems) = config::load(path, &SystemAccounts);
    for problem in &problems {
        eprintln!("{problem}");
    }
    let Some(config) = config else {
        eprintln!(
            "pimd: {} has errors; keeping the running configuration",
            path.display()
        );
        return;
    };
    let reloaded = core
        .with_manager(move |m| {
            m.replace_config(config)?;
            Ok((m.config_snapshot(), m.reconcile()))
        })
        .await;
    match reloaded {
        Ok((config, reconciled)) => {
            access
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_config(config);
            eprintln!("pimd: configuration reloaded from {}", path.display());
            if let Err(e) = reconciled {
                eprintln!("pimd: reconciliation: {}", e.message());
            }
        }
        Err(e) => eprintln!("pimd: reload refused: {}", e.message()),
    }
}

/// Ends what is due, then sleeps until the next deadline (or a minute, or a wake-up). Each
/// round wakes the set-group-ID sweep, which has work when a membership went.
async fn expiry_loop(core: Arc<Core>, sweep_wake: Arc<tokio::sync::Notify>) {
    loop {
        let next = core
            .with_manager(|m| {
                if let Err(e) = m.reconcile() {
                    eprintln!("pimd: reconciliation: {}", e.message());
                }
                m.next_deadline()
            })
            .await;
        sweep_wake.notify_one();
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

/// While a sweep waits for processes that carry the group, it looks this often.
const SWEEP_WAITING_SECS: u64 = 2;

/// Rounds of one sweep in a row, at most: a round that cleared files is followed at once by
/// one that shows whether any is left.
const SWEEP_ROUNDS: usize = 3;

/// Looks for files users made set-group-ID for groups PIM took away from them (setgid.rs):
/// after every reconciliation (and so at start-up, for sweeps a stop or crash interrupted)
/// and at least once a minute. The walk runs on the blocking pool without the manager's
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
