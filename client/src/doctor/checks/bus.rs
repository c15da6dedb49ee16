//! Is pimd on the system bus (or can the bus start it), and are its bus files in place?

use crate::doctor::findings::Finding;
use crate::doctor::{show, BUS_TIMEOUT};
use pim_common::text::escape;
use pim_common::{BUS_NAME, OBJECT_PATH};
use std::path::Path;

/// Where the bus reads system policies: the package's place first, the administrator's second.
const POLICY_FILES: [&str; 2] = [
    "/usr/share/dbus-1/system.d/org.pim.Manager1.conf",
    "/etc/dbus-1/system.d/org.pim.Manager1.conf",
];
const ACTIVATION_FILES: [&str; 2] = [
    "/usr/share/dbus-1/system-services/org.pim.Manager1.service",
    "/usr/local/share/dbus-1/system-services/org.pim.Manager1.service",
];

pub async fn check_daemon() -> (Finding, Option<zbus::Connection>) {
    const CHECK: &str = "daemon";
    let connection = match tokio::time::timeout(BUS_TIMEOUT, zbus::Connection::system()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return (
                Finding::fail(
                    CHECK,
                    format!(
                        "cannot connect to the system bus: {}",
                        escape(&e.to_string())
                    ),
                    "start the bus: systemctl start dbus",
                ),
                None,
            )
        }
        Err(_) => {
            return (
                Finding::fail(
                    CHECK,
                    "the system bus did not answer within 10 s",
                    "check the bus: systemctl status dbus",
                ),
                None,
            )
        }
    };
    let owned = async {
        let bus = zbus::fdo::DBusProxy::new(&connection).await?;
        let name = zbus::names::BusName::try_from(BUS_NAME)
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        Ok::<bool, zbus::Error>(bus.name_has_owner(name).await?)
    };
    let owned = matches!(tokio::time::timeout(BUS_TIMEOUT, owned).await, Ok(Ok(true)));
    if owned {
        return (
            Finding::pass(
                CHECK,
                format!("pimd is running and owns {BUS_NAME} on the system bus"),
            ),
            Some(connection),
        );
    }
    // Not running: a call to the name makes the bus start it (D-Bus activation).
    let ping = async {
        let peer = zbus::fdo::PeerProxy::builder(&connection)
            .destination(BUS_NAME)
            .path(OBJECT_PATH)
            .build()
            .await?;
        peer.ping().await
    };
    match tokio::time::timeout(BUS_TIMEOUT * 3, ping).await {
        Ok(Ok(())) => (
            Finding::warn(
                CHECK,
                "pimd was not running; the bus started it on demand (D-Bus activation). \
                 Grants end on time only while pimd runs",
                "start it at boot: systemctl enable --now pimd",
            ),
            Some(connection),
        ),
        Ok(Err(e)) => (
            Finding::fail(
                CHECK,
                format!(
                    "pimd is not running and the bus could not start it: {}",
                    escape(&e.to_string())
                ),
                "see why: systemctl status pimd; journalctl -u pimd; pimd --check-config",
            ),
            Some(connection),
        ),
        Err(_) => (
            Finding::fail(
                CHECK,
                format!("{BUS_NAME} did not answer within 30 s"),
                "see why: systemctl status pimd; journalctl -u pimd",
            ),
            Some(connection),
        ),
    }
}

pub fn check_bus_files() -> Vec<Finding> {
    let mut findings = Vec::new();
    let policy = POLICY_FILES.iter().map(Path::new).find(|p| p.is_file());
    findings.push(match policy {
        Some(path) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(&format!("own=\"{BUS_NAME}\"")) {
                Finding::pass(
                    "bus-policy",
                    format!("{} lets root own {BUS_NAME}", show(path)),
                )
            } else {
                Finding::fail(
                    "bus-policy",
                    format!("{} does not let root own {BUS_NAME}", show(path)),
                    "reinstall the package (apt install --reinstall pim) or restore the file",
                )
            }
        }
        None => Finding::fail(
            "bus-policy",
            format!(
                "no bus policy for {BUS_NAME} ({}): pimd cannot own its name",
                POLICY_FILES.join(", ")
            ),
            "reinstall the package (apt install --reinstall pim)",
        ),
    });
    let activation = ACTIVATION_FILES.iter().map(Path::new).find(|p| p.is_file());
    findings.push(match activation {
        Some(path) => Finding::pass(
            "activation",
            format!("{} lets the bus start pimd on demand", show(path)),
        ),
        None => Finding::warn(
            "activation",
            format!(
                "no D-Bus activation file ({}): nothing starts pimd on demand",
                ACTIVATION_FILES[0]
            ),
            "reinstall the package, or make sure pimd runs: systemctl enable --now pimd",
        ),
    });
    findings
}
