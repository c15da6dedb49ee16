//! Where a process sees the host from: whether it sees the file systems as the host's init
//! does. pam_pim believes pimd absent (for `fail=open`) only then, and `pim doctor` says
//! whether it would.

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO` in the kernel's
/// `include/linux/proc_ns.h`): fixed, the same on every boot.
pub const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// The files that say from where this process sees the host. A missing socket, or one nobody
/// accepts on, means pimd is absent only when this process sees the file systems as the host's
/// init does: a set-uid sandbox (firejail without `nonewprivs`, `--blacklist=/run/pim`) can
/// hide the socket in a mount namespace of the user's own, give that namespace a PID namespace
/// with a fresh `/proc` whose PID 1 is the sandbox's own (so that "PID 1's mount namespace" is
/// the sandbox's), or chroot into a tree of its own, while sudo still works in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VantagePlaces {
    /// Must be a procfs (`statfs` says PROC_SUPER_MAGIC): nothing of a user's own mounted there.
    pub proc: PathBuf,
    /// This thread's PID namespace; its inode must be [`VantagePlaces::initial_pid_namespace`].
    pub pid_namespace: PathBuf,
    /// The inode of the initial PID namespace ([`PROC_PID_INIT_INO`]).
    pub initial_pid_namespace: u64,
    /// This process's mount namespace, which must be ...
    pub mount_namespace: PathBuf,
    /// ... PID 1's.
    pub init_mount_namespace: PathBuf,
    /// This process's root directory, which must be ...
    pub root: PathBuf,
    /// ... PID 1's (a chroot keeps the mount namespace).
    pub init_root: PathBuf,
}

impl VantagePlaces {
    /// The host's: `/proc`, `/proc/thread-self/ns/pid`, `/proc/self/ns/mnt`,
    /// `/proc/1/ns/mnt`, `/` and `/proc/1/root`.
    pub fn system() -> Self {
        VantagePlaces {
            proc: PathBuf::from("/proc"),
            pid_namespace: PathBuf::from("/proc/thread-self/ns/pid"),
            initial_pid_namespace: PROC_PID_INIT_INO,
            mount_namespace: PathBuf::from("/proc/self/ns/mnt"),
            init_mount_namespace: PathBuf::from("/proc/1/ns/mnt"),
            root: PathBuf::from("/"),
            init_root: PathBuf::from("/proc/1/root"),
        }
    }

    /// What these places say (each `Err` says why it could not be read).
    pub fn look(&self) -> Vantage {
        let identity = |path: &Path| {
            std::fs::metadata(path)
                .map(|m| (m.dev(), m.ino()))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        Vantage {
            proc_is_procfs: statfs(&self.proc)
                .map(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
                .map_err(|e| format!("cannot statfs {}: {e}", self.proc.display())),
            pid_namespace: identity(&self.pid_namespace).map(|(_, ino)| ino),
            initial_pid_namespace: self.initial_pid_namespace,
            mount_namespace: identity(&self.mount_namespace),
            init_mount_namespace: identity(&self.init_mount_namespace),
            root: identity(&self.root),
            init_root: identity(&self.init_root),
            root_mount: mount_id(&self.root),
            init_root_mount: mount_id(&self.init_root),
        }
    }

    /// Why `socket` (an absolute path), missing or dead as seen from here, may still be pimd's
    /// as PID 1 sees it, or `None`: the path is looked up through [`VantagePlaces::init_root`]
    /// (`/proc/1/root`, resolved in init's mount tree whatever this process's root), and
    /// what is there must be what this process sees at `socket` (nothing, or the same file).
    /// A chroot into a bind mount of `/` has `/`'s device and inode, yet a `/run/pim` of its
    /// own (a tmpfs, or not bound at all).
    pub fn hidden_from_here(&self, socket: &Path) -> Option<String> {
        let relative = socket.strip_prefix("/").unwrap_or(socket);
        let through_init = self.init_root.join(relative);
        let identity = |path: &Path| match std::fs::symlink_metadata(path) {
            Ok(m) => Ok(Some((m.dev(), m.ino()))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
        match (identity(socket), identity(&through_init)) {
            (Ok(here), Ok(init)) if here == init => None,
            (Ok(_), Ok(_)) => Some(format!(
                "PID 1 sees {} otherwise than this process does ({})",
                socket.display(),
                through_init.display()
            )),
            (Err(e), _) | (_, Err(e)) => Some(e),
        }
    }
}

/// The mount id of the mount `path` is on (`mnt_id:` in `/proc/self/fdinfo/N` of an `O_PATH`
/// descriptor of it): a bind mount of `/` has `/`'s device and inode but a mount of its own.
fn mount_id(path: &Path) -> Result<u64, String> {
    let cannot =
        |e: &dyn std::fmt::Display| format!("cannot read the mount of {}: {e}", path.display());
    let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| cannot(&e))?;
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| cannot(&e))?;
    parse_mount_id(&fdinfo).ok_or_else(|| cannot(&"no mnt_id in its fdinfo"))
}

/// The `mnt_id:` of an fdinfo text.
fn parse_mount_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// What [`VantagePlaces::look`] found: device and inode of each place, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vantage {
    pub proc_is_procfs: Result<bool, String>,
    pub pid_namespace: Result<u64, String>,
    pub initial_pid_namespace: u64,
    pub mount_namespace: Result<(u64, u64), String>,
    pub init_mount_namespace: Result<(u64, u64), String>,
    pub root: Result<(u64, u64), String>,
    pub init_root: Result<(u64, u64), String>,
    /// The mount id of this process's root, which must be ...
    pub root_mount: Result<u64, String>,
    /// ... that of PID 1's (a chroot into a bind mount of `/` has `/`'s device and inode).
    pub init_root_mount: Result<u64, String>,
}

impl Vantage {
    /// Why an absent pimd seen from here is not to be believed, or `None` when this process
    /// sees the host as its init does: `/proc` is a procfs, this is the initial PID namespace
    /// (so `/proc/1` is the host's init), its mount namespace is PID 1's and its root is PID
    /// 1's. Whatever cannot be read counts against.
    pub fn distrust(&self) -> Option<String> {
        match &self.proc_is_procfs {
            Ok(true) => {}
            Ok(false) => return Some("/proc is not a procfs".into()),
            Err(e) => return Some(e.clone()),
        }
        match &self.pid_namespace {
            Ok(ino) if *ino == self.initial_pid_namespace => {}
            Ok(ino) => {
                return Some(format!(
                    "this is not the initial PID namespace (inode {ino:#x}, not {:#x}), whose PID 1 may be a sandbox's",
                    self.initial_pid_namespace
                ))
            }
            Err(e) => return Some(e.clone()),
        }
        match (&self.mount_namespace, &self.init_mount_namespace) {
            (Ok(own), Ok(init)) if own == init => {}
            (Ok(_), Ok(_)) => return Some("this is a mount namespace other than PID 1's".into()),
            (Err(e), _) | (_, Err(e)) => return Some(e.clone()),
        }
        match (&self.root, &self.init_root) {
            (Ok(own), Ok(init)) if own == init => {}
            (Ok(_), Ok(_)) => return Some("the root directory is not PID 1's (a chroot)".into()),
            (Err(e), _) | (_, Err(e)) => return Some(e.clone()),
        }
        match (&self.root_mount, &self.init_root_mount) {
            (Ok(own), Ok(init)) if own == init => None,
            (Ok(own), Ok(init)) => Some(format!(
                "the root directory is on mount {own}, not PID 1's {init} (a chroot into a bind mount)"
            )),
            (Err(e), _) | (_, Err(e)) => Some(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vantage_of_init() -> Vantage {
        Vantage {
            proc_is_procfs: Ok(true),
            pid_namespace: Ok(PROC_PID_INIT_INO),
            initial_pid_namespace: PROC_PID_INIT_INO,
            mount_namespace: Ok((4, 4026531840)),
            init_mount_namespace: Ok((4, 4026531840)),
            root: Ok((2049, 2)),
            init_root: Ok((2049, 2)),
            root_mount: Ok(29),
            init_root_mount: Ok(29),
        }
    }

    #[test]
    fn given_the_vantage_of_the_hosts_init_then_absence_is_trusted() {
        assert_eq!(vantage_of_init().distrust(), None);
        assert_eq!(VantagePlaces::system().initial_pid_namespace, 0xEFFF_FFFC);
    }

    #[test]
    fn given_any_difference_from_the_hosts_init_then_absence_is_distrusted() {
        let init = vantage_of_init();
        let cases = [
            (
                "firejail's /proc: a PID namespace of its own",
                Vantage {
                    pid_namespace: Ok(4026532300),
                    ..init.clone()
                },
                "not the initial PID namespace",
            ),
            (
                "unshare --mount: another mount namespace",
                Vantage {
                    mount_namespace: Ok((4, 4026532301)),
                    ..init.clone()
                },
                "mount namespace other than PID 1's",
            ),
            (
                "chroot",
                Vantage {
                    root: Ok((2049, 1234)),
                    ..init.clone()
                },
                "chroot",
            ),
            (
                "chroot to another file system",
                Vantage {
                    root: Ok((2050, 2)),
                    ..init.clone()
                },
                "chroot",
            ),
            (
                "mount --rbind / X; chroot X: / has the same device and inode, on another mount",
                Vantage {
                    root_mount: Ok(412),
                    ..init.clone()
                },
                "bind mount",
            ),
            (
                "the mount of PID 1's root unreadable",
                Vantage {
                    init_root_mount: Err("cannot read the mount of /proc/1/root: EACCES".into()),
                    ..init.clone()
                },
                "EACCES",
            ),
            (
                "a tmpfs on /proc",
                Vantage {
                    proc_is_procfs: Ok(false),
                    ..init.clone()
                },
                "not a procfs",
            ),
            (
                "PID 1's root unreadable",
                Vantage {
                    init_root: Err("cannot read /proc/1/root: EACCES".into()),
                    ..init.clone()
                },
                "EACCES",
            ),
            (
                "no /proc",
                Vantage {
                    proc_is_procfs: Err("cannot statfs /proc: ENOENT".into()),
                    pid_namespace: Err("cannot read /proc/thread-self/ns/pid".into()),
                    ..init.clone()
                },
                "ENOENT",
            ),
            (
                "PID 1's mount namespace unreadable",
                Vantage {
                    init_mount_namespace: Err("cannot read /proc/1/ns/mnt".into()),
                    ..init.clone()
                },
                "/proc/1/ns/mnt",
            ),
        ];
        for (name, vantage, why) in cases {
            let distrust = vantage.distrust();
            assert!(
                distrust.as_deref().is_some_and(|d| d.contains(why)),
                "{name}: {distrust:?}"
            );
        }
    }

    #[test]
    fn given_an_fdinfo_then_its_mount_id_is_read() {
        let fdinfo = "pos:\t0\nflags:\t012000000\nmnt_id:\t412\nino:\t2\n";
        assert_eq!(parse_mount_id(fdinfo), Some(412));
        assert_eq!(parse_mount_id("pos:\t0\n"), None);
        let own = VantagePlaces::system();
        assert!(mount_id(&own.root).is_ok());
        assert_eq!(mount_id(&own.root), mount_id(&own.root));
    }

    #[test]
    fn given_the_socket_through_init_s_root_then_it_must_be_what_is_seen_here() {
        let dir = std::env::temp_dir().join(format!("pim-vantage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let init_root = dir.join("init-root");
        let here = dir.join("here");
        std::fs::create_dir_all(&here).unwrap();
        let socket = here.join("pam.socket");
        let through_init = init_root.join(socket.strip_prefix("/").unwrap());
        std::fs::create_dir_all(through_init.parent().unwrap()).unwrap();
        let places = VantagePlaces {
            init_root: init_root.clone(),
            ..VantagePlaces::system()
        };
        // Nothing here, nothing for init: absent.
        assert_eq!(places.hidden_from_here(&socket), None);
        // Nothing here, something for init (a /run/pim of the chroot's own): hidden.
        std::fs::write(&through_init, b"").unwrap();
        let hidden = places.hidden_from_here(&socket);
        assert!(
            hidden.as_deref().is_some_and(|h| h.contains("PID 1 sees")),
            "{hidden:?}"
        );
        // Another file here than init's: hidden.
        std::fs::write(&socket, b"").unwrap();
        assert!(places.hidden_from_here(&socket).is_some());
        // The same file (init's root is this process's): a stale socket, absent.
        let same = VantagePlaces {
            init_root: "/".into(),
            ..VantagePlaces::system()
        };
        assert_eq!(same.hidden_from_here(&socket), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
