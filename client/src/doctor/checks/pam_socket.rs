//! The `pam-socket` check: pimd's socket for pam_pim.so, `/run/pim/pam.socket`, is root's
//! alone (a socket of mode 0600 or stricter in a directory of mode 0700) and pimd listens on
//! it as root.

use crate::doctor::findings::Finding;
use crate::doctor::show;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

const CHECK: &str = "pam-socket";

/// The finding for the socket at `socket` in `dir`; `pimd_running` says whether pimd owns its
/// bus name (without it, a missing socket is expected).
pub fn check_pam_socket(dir: &Path, socket: &Path, pimd_running: bool) -> Finding {
    let restart = "restart pimd, which makes both so: systemctl restart pimd";
    let dir_meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(_) if !pimd_running => {
            return Finding::warn(
                CHECK,
                format!("{} does not exist: pimd is not running", show(dir)),
                "start it: systemctl start pimd",
            )
        }
        Err(e) => return Finding::fail(CHECK, format!("cannot read {}: {e}", show(dir)), restart),
    };
    if !dir_meta.is_dir() || dir_meta.uid() != 0 || dir_meta.mode() & 0o077 != 0 {
        return Finding::fail(
            CHECK,
            format!(
                "{} must be a directory of root's with mode 0700 (owner uid {}, mode {:o}): pam_pim.so does not trust what others could change",
                show(dir),
                dir_meta.uid(),
                dir_meta.mode() & 0o7777
            ),
            restart,
        );
    }
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(_) if !pimd_running => {
            return Finding::warn(
                CHECK,
                format!(
                    "no socket at {}: pimd is not running, and pam_pim.so refuses holders of managed groups (fail=closed)",
                    show(socket)
                ),
                "start it: systemctl start pimd",
            )
        }
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!(
                    "pimd runs but {} is missing ({e}): pam_pim.so refuses holders of managed groups",
                    show(socket)
                ),
                restart,
            )
        }
    };
    if !meta.file_type().is_socket() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Finding::fail(
            CHECK,
            format!(
                "{} must be a socket of root's with mode 0600 (owner uid {}, mode {:o})",
                show(socket),
                meta.uid(),
                meta.mode() & 0o7777
            ),
            restart,
        );
    }
    let listener = UnixStream::connect(socket)
        .map_err(|e| e.to_string())
        .and_then(|stream| {
            getsockopt(&stream, PeerCredentials)
                .map(|c| c.uid())
                .map_err(|e| e.to_string())
        });
    match listener {
        Ok(0) => Finding::pass(
            CHECK,
            format!(
                "pimd listens on {} (root's, mode {:o}, in a 0700 directory)",
                show(socket),
                meta.mode() & 0o7777
            ),
        ),
        Ok(uid) => Finding::fail(
            CHECK,
            format!(
                "the listener on {} runs as uid {uid}, not root: pam_pim.so refuses holders of managed groups",
                show(socket)
            ),
            "find it: ss -xlp; then restart pimd: systemctl restart pimd",
        ),
        Err(e) => Finding::fail(
            CHECK,
            format!(
                "nothing answers on {} ({e}): pam_pim.so refuses holders of managed groups",
                show(socket)
            ),
            restart,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pim-doctor-socket-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn given_the_socket_as_pimd_makes_it_then_pass_and_each_fault_fails() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership by root is part of what is checked
        }
        let dir = temp_dir("faults");
        let socket = dir.join("pam.socket");
        assert_eq!(check_pam_socket(&dir, &socket, false).status, Status::Warn);
        assert_eq!(check_pam_socket(&dir, &socket, true).status, Status::Fail);
        let listener = UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = check_pam_socket(&dir, &socket, true);
        assert_eq!(ok.status, Status::Pass, "{}", ok.message);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let open = check_pam_socket(&dir, &socket, true);
        assert!(
            open.status == Status::Fail && open.message.contains("mode 666"),
            "{}",
            open.message
        );
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir_open = check_pam_socket(&dir, &socket, true);
        assert!(
            dir_open.status == Status::Fail && dir_open.message.contains("mode 755"),
            "{}",
            dir_open.message
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        drop(listener);
        let dead = check_pam_socket(&dir, &socket, true);
        assert!(
            dead.status == Status::Fail && dead.message.contains("nothing answers"),
            "{}",
            dead.message
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
