//! Asking pimd: `CheckAccess(user, groups)` on the system bus, bounded as a whole by the
//! module's `timeout=`.
//!
//! The connection goes to the fixed socket [`pim_common::SYSTEM_BUS_SOCKET`], never to an
//! address from the environment (sudo runs PAM with the invoking user's environment, so
//! `DBUS_SYSTEM_BUS_ADDRESS` would let that user answer for pimd). Each check builds a
//! current-thread Tokio runtime, connects, calls, and drops the connection and then the runtime
//! before returning: no runtime, thread, task or socket outlives the call.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pim_common::proxy::ManagerProxy;
use pim_common::types::AccessDecision;
use pim_common::PimError;
use zbus::proxy::CacheProperties;

/// Why the daemon gave no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonFailure {
    /// The bus could not be reached, or pimd is not on it.
    Unreachable(String),
    /// No answer within the bound on the whole check.
    Timeout(Duration),
    /// pimd (or the bus) answered with an error.
    Error(String),
}

impl fmt::Display for DaemonFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonFailure::Unreachable(why) => write!(f, "pimd is unreachable: {why}"),
            DaemonFailure::Timeout(after) => {
                write!(f, "pimd did not answer within {}ms", after.as_millis())
            }
            DaemonFailure::Error(why) => write!(f, "pimd answered with an error: {why}"),
        }
    }
}

/// The question the module asks the daemon. `decision` is written against this trait so that it
/// can be tested with a fake.
pub trait Daemon {
    /// May `user`, who holds the managed `groups`, use them now?
    fn check_access(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure>;
}

/// pimd on the system bus.
#[derive(Debug, Clone)]
pub struct BusDaemon {
    socket: PathBuf,
    timeout: Duration,
}

impl BusDaemon {
    /// The daemon on the system bus socket, with `timeout` bounding each whole check.
    pub fn system(timeout: Duration) -> Self {
        Self::at(Path::new(pim_common::SYSTEM_BUS_SOCKET), timeout)
    }

    /// A bus at another socket; for tests only (the module always uses [`BusDaemon::system`]).
    pub fn at(socket: &Path, timeout: Duration) -> Self {
        BusDaemon {
            socket: socket.to_path_buf(),
            timeout,
        }
    }
}

impl Daemon for BusDaemon {
    fn check_access(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| DaemonFailure::Error(format!("cannot start an event loop: {e}")))?;
        let outcome = runtime.block_on(async {
            // The connection lives inside this future: it is dropped here, on the runtime, when
            // the call completes or the timeout cancels it.
            tokio::time::timeout(self.timeout, ask(&self.socket, user, groups)).await
        });
        // Dropping the runtime cancels whatever the connection left spawned (its socket reader)
        // and closes the socket. A current-thread runtime has no worker threads, and nothing
        // here uses the blocking pool, so no thread is left behind either.
        drop(runtime);
        outcome.unwrap_or(Err(DaemonFailure::Timeout(self.timeout)))
    }
}

async fn ask(
    socket: &Path,
    user: &str,
    groups: &[String],
) -> Result<AccessDecision, DaemonFailure> {
    let address = bus_address(socket)?;
    let connection = zbus::connection::Builder::address(address.as_str())
        .build()
        .await
        .map_err(|e| {
            DaemonFailure::Unreachable(format!("system bus at {}: {e}", socket.display()))
        })?;
    let proxy = ManagerProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| DaemonFailure::Error(format!("cannot set up the pimd proxy: {e}")))?;
    proxy
        .check_access(user, groups.to_vec())
        .await
        .map_err(classify)
}

/// `unix:path=...` for `socket`, refusing paths that would need D-Bus address escaping (the
/// fixed system socket never does).
fn bus_address(socket: &Path) -> Result<String, DaemonFailure> {
    let text = socket.to_str().unwrap_or("");
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    if plain {
        Ok(format!("unix:path={text}"))
    } else {
        Err(DaemonFailure::Error(format!(
            "socket path {} cannot be used as a bus address",
            socket.display()
        )))
    }
}

fn classify(error: PimError) -> DaemonFailure {
    use zbus::fdo::Error as Fdo;
    match error {
        PimError::ZBus(zbus::Error::FDO(fdo))
            if matches!(
                *fdo,
                Fdo::ServiceUnknown(_) | Fdo::NameHasNoOwner(_) | Fdo::NoServer(_)
            ) =>
        {
            DaemonFailure::Unreachable(format!("org.pim.Manager1 is not on the bus: {fdo}"))
        }
        PimError::ZBus(zbus::Error::InputOutput(e)) => {
            DaemonFailure::Unreachable(format!("bus connection failed: {e}"))
        }
        PimError::ZBus(e) => DaemonFailure::Error(e.to_string()),
        other => DaemonFailure::Error(pim_common::text::escape(&other.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::Instant;

    fn temp_socket(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pam-pim-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("bus"), dir)
    }

    #[test]
    fn given_no_socket_then_unreachable_quickly() {
        let (socket, dir) = temp_socket("absent");
        let started = Instant::now();
        let result = BusDaemon::at(&socket, Duration::from_secs(5))
            .check_access("alice", &["sudo".to_string()]);
        assert!(
            matches!(result, Err(DaemonFailure::Unreachable(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_bus_that_never_answers_then_timeout_bounds_the_whole_check() {
        let (socket, dir) = temp_socket("silent");
        // Accepts connections (the kernel does, into the backlog) and never says a word.
        let listener = UnixListener::bind(&socket).unwrap();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = BusDaemon::at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        let elapsed = started.elapsed();
        assert_eq!(result, Err(DaemonFailure::Timeout(timeout)));
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_millis(700),
            "{elapsed:?}"
        );
        drop(listener);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_bus_that_hangs_up_then_unreachable() {
        let (socket, dir) = temp_socket("hangup");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            drop(stream);
        });
        let result =
            BusDaemon::at(&socket, Duration::from_secs(5)).check_access("alice", &["sudo".into()]);
        server.join().unwrap();
        assert!(
            matches!(result, Err(DaemonFailure::Unreachable(_))),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_the_system_daemon_then_the_fixed_socket_is_used() {
        let daemon = BusDaemon::system(Duration::from_secs(2));
        assert_eq!(daemon.socket, Path::new("/run/dbus/system_bus_socket"));
        assert_eq!(
            bus_address(&daemon.socket).unwrap(),
            "unix:path=/run/dbus/system_bus_socket"
        );
    }

    #[test]
    fn given_a_path_needing_escapes_then_refused() {
        for bad in ["/tmp/a b", "/tmp/a,b", "/tmp/a=b", "/tmp/a;b", ""] {
            assert!(bus_address(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn given_daemon_errors_then_classified() {
        let unknown = PimError::ZBus(zbus::Error::FDO(Box::new(
            zbus::fdo::Error::ServiceUnknown("no".into()),
        )));
        assert!(matches!(classify(unknown), DaemonFailure::Unreachable(_)));
        let denied = PimError::PermissionDenied("only root may\ncheck".into());
        assert_eq!(
            classify(denied),
            DaemonFailure::Error("only root may\\x0acheck".into())
        );
    }
}
