//! `BusDaemon` against a real dbus-daemon (a private one at a socket in a temporary directory)
//! and a stand-in for pimd written with zbus exactly as pimd's interface is: the pipelined
//! SASL + Hello + CheckAccess exchange must be accepted by the bus and the zbus reply read.
//! Skipped, with a note, where `dbus-daemon` is not installed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pam_pim::daemon::{BusDaemon, Daemon, DaemonFailure};
use pim_common::types::AccessDecision;
use pim_common::PimError;

/// A private bus, killed on drop.
struct Bus {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Bus {
    fn start(name: &str) -> Option<Bus> {
        let dir =
            std::env::temp_dir().join(format!("pam-pim-real-bus-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("bus");
        let child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipped: cannot run dbus-daemon: {e}");
                return None;
            }
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("unix:path="), "dbus-daemon said {line:?}");
        Some(Bus { child, dir, socket })
    }

    fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// pimd's CheckAccess, as pimd declares it: allowed for `sudo`, refused for other groups, an
/// error for user `nobody`, and a long wait for user `slow`.
struct FakeManager;

#[zbus::interface(name = "org.pim.Manager1")]
impl FakeManager {
    async fn check_access(
        &self,
        user: String,
        groups: Vec<String>,
    ) -> Result<AccessDecision, PimError> {
        match user.as_str() {
            "nobody" => Err(PimError::PermissionDenied("only root may ask".into())),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(AccessDecision::default())
            }
            _ if groups == ["sudo"] => Ok(AccessDecision {
                allowed: true,
                message: String::new(),
            }),
            _ => Ok(AccessDecision {
                allowed: false,
                message: format!("pim: {user} has no live grant for {}", groups.join(",")),
            }),
        }
    }
}

/// Serves `FakeManager` as `org.pim.Manager1` on the bus at `address` until `stop` is dropped.
fn serve(address: String) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let _connection = zbus::connection::Builder::address(address.as_str())
                .name(pim_common::BUS_NAME)
                .serve_at(pim_common::OBJECT_PATH, FakeManager)
                .build()
                .await
                .unwrap();
            ready_tx.send(()).unwrap();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = stop_rx.recv();
                let _ = done_tx.send(());
            });
            let _ = done_rx.await;
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the fake pimd did not come up");
    (stop_tx, server)
}

fn check(
    socket: &Path,
    timeout: Duration,
    user: &str,
    groups: &[&str],
) -> Result<AccessDecision, DaemonFailure> {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    // This process's mount namespace stands for PID 1's, which a test may not read.
    BusDaemon::at(socket, timeout)
        .with_init_mount_namespace(Path::new("/proc/self/ns/mnt"))
        .check_access(user, &groups)
}

#[test]
fn a_real_bus_without_pimd_answers_service_unknown_at_once() {
    let Some(bus) = Bus::start("empty") else {
        return;
    };
    let started = Instant::now();
    let result = check(&bus.socket, Duration::from_secs(5), "alice", &["sudo"]);
    assert!(
        matches!(&result, Err(DaemonFailure::Absent(why))
            if why.contains("org.freedesktop.DBus.Error.ServiceUnknown")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_real_bus_and_a_zbus_pimd_answer_in_one_round_trip() {
    let Some(bus) = Bus::start("served") else {
        return;
    };
    let (stop, server) = serve(bus.address());
    let timeout = Duration::from_secs(5);

    assert_eq!(
        check(&bus.socket, timeout, "alice", &["sudo"]),
        Ok(AccessDecision {
            allowed: true,
            message: String::new()
        })
    );
    assert_eq!(
        check(&bus.socket, timeout, "bob", &["wheel", "adm"]),
        Ok(AccessDecision {
            allowed: false,
            message: "pim: bob has no live grant for wheel,adm".into()
        })
    );
    assert_eq!(
        check(&bus.socket, timeout, "nobody", &["sudo"]),
        Err(DaemonFailure::Error(
            "org.pim.Manager1.Error.PermissionDenied: only root may ask".into()
        ))
    );
    // Many in a row: each is a fresh connection, closed before the call returns.
    for _ in 0..50 {
        assert_eq!(
            check(&bus.socket, timeout, "alice", &["sudo"]).map(|d| d.allowed),
            Ok(true)
        );
    }

    // pimd slower than timeout=: the whole check ends at the timeout.
    let short = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(
        check(&bus.socket, short, "slow", &["sudo"]),
        Err(DaemonFailure::Timeout(short))
    );
    let took = started.elapsed();
    assert!(
        took >= short && took < short + Duration::from_millis(700),
        "{took:?}"
    );

    drop(stop);
    server.join().unwrap();
}
