//! Is pimd.service enabled, so that grants still end after a reboot?

use crate::doctor::findings::Finding;
use pim_common::text::escape;
use std::path::Path;
use std::process::Command;

pub fn check_service() -> Finding {
    const CHECK: &str = "service";
    if !Path::new("/run/systemd/system").is_dir() {
        return Finding::skip(CHECK, "systemd is not running on this host");
    }
    let output = Command::new("systemctl")
        .args(["is-enabled", "pimd.service"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output();
    let state = match output {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(e) => {
            return Finding::skip(
                CHECK,
                format!("cannot run systemctl: {}", escape(&e.to_string())),
            )
        }
    };
    match state.as_str() {
        "enabled" | "enabled-runtime" | "static" | "alias" => {
            Finding::pass(CHECK, format!("pimd.service is {state}"))
        }
        "" | "not-found" => Finding::fail(
            CHECK,
            "systemd knows no pimd.service",
            "reinstall the package (apt install --reinstall pim); systemctl daemon-reload",
        ),
        other => Finding::warn(
            CHECK,
            format!(
                "pimd.service is {}: after a reboot, grants that were live end only once \
                 something starts pimd",
                escape(other)
            ),
            "systemctl enable --now pimd",
        ),
    }
}
