//! pimd: the just-in-time privilege daemon. Owns `org.pim.Manager1` on the system bus, keeps
//! its state in SQLite, and adds and removes Unix group memberships through gpasswd.
#![forbid(unsafe_code)]

mod accounts;
mod clock;
mod config;
mod manager;
mod mfa;
mod policy;
mod refusals;
mod service;
mod store;
mod syslog;

use accounts::SystemAccounts;
use clock::{Clock, SystemClock};
use config::Severity;
use manager::Manager;
use service::{Core, ManagerService};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
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
    match runtime.block_on(run(config, options.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pimd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config, config_path: PathBuf) -> Result<(), String> {
    let store = Store::open(&config.daemon.database).map_err(|e| e.to_string())?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let manager = Manager::new(
        Arc::new(config),
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
            ManagerService::new(core.clone(), bus),
        )
        .await
        .map_err(|e| format!("cannot serve {}: {e}", pim_common::OBJECT_PATH))?;
    core.set_connection(connection.clone());
    // Before anyone can reach us: end what ended while pimd was down (grants past their end,
    // assignments over, eligibility a new configuration took away), so the first PAM check
    // is already answered from a reconciled state.
    if let Err(e) = core.with_manager(|m| m.reconcile()).await {
        eprintln!("pimd: reconciliation at start: {}", e.message());
    }
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

    tokio::spawn(expiry_loop(core.clone()));

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => reload(&core, &config_path).await,
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
async fn reload(core: &Arc<Core>, path: &std::path::Path) {
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
            Ok(m.reconcile())
        })
        .await;
    match reloaded {
        Ok(reconciled) => {
            eprintln!("pimd: configuration reloaded from {}", path.display());
            if let Err(e) = reconciled {
                eprintln!("pimd: reconciliation: {}", e.message());
            }
        }
        Err(e) => eprintln!("pimd: reload refused: {}", e.message()),
    }
}

/// Ends what is due, then sleeps until the next deadline (or a minute, or a wake-up).
async fn expiry_loop(core: Arc<Core>) {
    loop {
        let next = core
            .with_manager(|m| {
                if let Err(e) = m.reconcile() {
                    eprintln!("pimd: reconciliation: {}", e.message());
                }
                m.next_deadline()
            })
            .await;
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
