//! Files a user made set-group-ID for a group while they held it, and taking that bit away
//! once PIM has taken the membership away (SPEC, "When a grant ends"): otherwise a copy of
//! `cat` made set-group-ID during a grant keeps reading the group's files for good.
//!
//! The fingerprint: a non-root user can chmod only files they own and chgrp only to groups
//! they are in, so a regular file owned by the user, of the group, with S_ISGID is one they
//! made so during the membership. Only the bit is cleared; the file stays. Directories keep
//! theirs: a set-group-ID directory only gives new files in it the group, which lets nobody
//! run anything with the group (the kernel strips S_ISGID from files that non-members create
//! there).
//!
//! Where: every mount that honours set-ID bits (no `nosuid`), whose file system is writable
//! and local (no proc, sysfs, cgroup, network or FUSE file systems), each walked on its own,
//! without following symbolic links and without entering other mounts. A process of the user that
//! still carries the group (a login from before the end) could make a new such file at any
//! time, so a sweep is done only after a walk that started while no such process was left
//! and found nothing to clear.
//!
//! This module is the port: finding and clearing such files, and whether a process still
//! carries a group. The decisions (when to sweep, what to record) are the manager's; the walk
//! runs outside the manager's lock, on the blocking pool.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

const S_ISGID: u32 = 0o2000;

/// Whose files to look for: the user's uid and the group's gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
}

/// A file whose set-group-ID bit was cleared. `path` is escaped for the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    pub target: Target,
    pub path: String,
    pub mode_before: u32,
    pub mode_after: u32,
}

/// Something the walk could not do: a file it could not clear (`target` known) or a directory
/// or mount it could not read, which may hide files of any target. `path` is escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: Option<Target>,
    pub path: String,
    pub error: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walk {
    pub cleared: Vec<Cleared>,
    pub failures: Vec<Failure>,
}

pub trait SetgidFiles: Send + Sync {
    /// The uid of `user` and the gid of `group`; None when either is gone from the host, an
    /// error when the lookup failed (the sweep then tries again).
    fn target(&self, user: &str, group: &str) -> Result<Option<Target>, String>;
    /// Whether a process running as the target's uid (real, effective, saved or file system
    /// uid) carries its gid (real, effective, saved, file system or supplementary).
    fn carried(&self, target: Target) -> std::io::Result<bool>;
    /// Walks the file systems once and clears S_ISGID on every regular file owned by a
    /// target's uid with the target's gid.
    fn clear(&self, targets: &[Target]) -> Walk;
}

/// One (user, group) whose membership PIM took away and whose files still need a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepJob {
    pub user: String,
    pub group: String,
    /// The latest end of the user's grants of the group that this sweep covers.
    pub ended_through: i64,
    /// No walk since that end yet: walk even if a process still carries the group.
    pub first: bool,
}

/// What one round did for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swept {
    /// The user or group is gone: nothing can be looked for.
    Gone,
    /// The user or group could not be looked up: try again.
    Failed(String),
    /// Walked already, and a process still carries the group: walk again once none does.
    Waiting,
    Walked {
        carried_before: bool,
        cleared: Vec<Cleared>,
        failures: Vec<Failure>,
    },
}

impl Swept {
    /// The sweep goes on once processes that carry the group are gone.
    pub fn waits_for_processes(&self) -> bool {
        matches!(
            self,
            Swept::Waiting
                | Swept::Walked {
                    carried_before: true,
                    ..
                }
        )
    }
}

/// One round: resolves each job, asks whether the group is still carried, walks once for all
/// the jobs that need it and hands each job its share of the walk.
pub fn sweep_round(files: &dyn SetgidFiles, jobs: Vec<SweepJob>) -> Vec<(SweepJob, Swept)> {
    let mut resolved = Vec::new();
    let mut results = Vec::new();
    for job in jobs {
        let target = match files.target(&job.user, &job.group) {
            Ok(Some(target)) => target,
            Ok(None) => {
                results.push((job, Swept::Gone));
                continue;
            }
            Err(why) => {
                results.push((job, Swept::Failed(why)));
                continue;
            }
        };
        // Unreadable process information counts as carried: the sweep is not done.
        let carried = files.carried(target).unwrap_or(true);
        if carried && !job.first {
            results.push((job, Swept::Waiting));
        } else {
            resolved.push((job, target, carried));
        }
    }
    if resolved.is_empty() {
        return results;
    }
    let targets: Vec<Target> = resolved.iter().map(|(_, t, _)| *t).collect();
    let walk = files.clear(&targets);
    for (job, target, carried_before) in resolved {
        let cleared = walk
            .cleared
            .iter()
            .filter(|c| c.target == target)
            .cloned()
            .collect();
        let failures = walk
            .failures
            .iter()
            .filter(|f| f.target.is_none_or(|t| t == target))
            .cloned()
            .collect();
        results.push((
            job,
            Swept::Walked {
                carried_before,
                cleared,
                failures,
            },
        ));
    }
    results
}

/// The real thing: NSS for names, /proc for processes, /proc/self/mountinfo for mounts.
pub struct SystemSetgidFiles;

/// File system types never walked: kernel pseudo file systems (nothing a user writes lives
/// there), network file systems (root may not be root there) and FUSE (user-mounted, and
/// mounted nosuid by fusermount anyway). `pim doctor` warns about user-writable places on
/// mounts without nosuid.
const SKIPPED_TYPES: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "devtmpfs",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "selinuxfs",
    "rpc_pipefs",
    "nsfs",
    "ramfs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
    "afs",
    "fuse",
    "fuseblk",
];

/// One line of /proc/self/mountinfo, as far as the walk needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    /// The directory of the file system mounted here (not "/" for a bind mount of a subtree).
    pub root: Vec<u8>,
    pub mount_point: Vec<u8>,
    pub fs_type: String,
    pub mount_options: Vec<String>,
    pub super_options: Vec<String>,
}

impl Mount {
    /// Set-ID bits work here and a user may have written here. Only the super block's `ro`
    /// counts: under the unit's ProtectSystem=strict every mount looks read-only to pimd.
    pub fn may_hold_setgid(&self) -> bool {
        !self.mount_options.iter().any(|o| o == "nosuid")
            && !self.super_options.iter().any(|o| o == "ro")
            && !SKIPPED_TYPES.contains(&self.fs_type.as_str())
            && !self.fs_type.starts_with("fuse.")
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) if bytes[i] == b'\\' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Parses /proc/self/mountinfo.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 6 || right.len() < 3 {
                return None;
            }
            let options = |field: &str| field.split(',').map(str::to_string).collect();
            Some(Mount {
                device: left[2].to_string(),
                root: unescape(left[3]),
                mount_point: unescape(left[4]),
                fs_type: right[0].to_string(),
                mount_options: options(left[5]),
                super_options: options(right[2]),
            })
        })
        .collect()
}

/// The mounts to walk: those that may hold set-ID files, each subtree once. Every mount is
/// walked on its own and no walk enters another mount, so a bind mount of part of a file
/// system (ReadWritePaths=, for one) is walked as its own mount.
pub fn mounts_to_walk(mounts: &[Mount]) -> Vec<Mount> {
    let mut seen = HashSet::new();
    mounts
        .iter()
        .filter(|m| m.may_hold_setgid())
        .filter(|m| seen.insert((m.device.clone(), m.root.clone())))
        .cloned()
        .collect()
}

fn escape_path(path: &[u8]) -> String {
    pim_common::text::escape(&String::from_utf8_lossy(path))
}

/// A directory being walked, open, with the way to it (names up to the mount point) for the
/// audit. Each is kept open while entries of it wait on the stack: in a depth-first walk that
/// is the directories above the current one.
struct Node {
    dir: Dir,
    device: u64,
    /// The mount point for a mount's root, else this directory's name in its parent.
    name: Vec<u8>,
    parent: Option<Rc<Node>>,
}

impl Node {
    fn path(&self) -> Vec<u8> {
        let mut names = vec![self.name.as_slice()];
        let mut up = self.parent.as_deref();
        while let Some(node) = up {
            names.push(node.name.as_slice());
            up = node.parent.as_deref();
        }
        let mut path = Vec::new();
        for name in names.into_iter().rev() {
            if !path.is_empty() && path.last() != Some(&b'/') {
                path.push(b'/');
            }
            path.extend_from_slice(name);
        }
        path
    }

    fn path_of(&self, name: &CStr) -> Vec<u8> {
        let mut path = self.path();
        if path.last() != Some(&b'/') {
            path.push(b'/');
        }
        path.extend_from_slice(name.to_bytes());
        path
    }
}

const DIRECTORY_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// One walk over several mounts.
struct Walker<'a> {
    targets: &'a HashSet<Target>,
    /// (device, inode) of every mount's root: where a walk that reaches another mount stops.
    mount_roots: HashSet<(u64, u64)>,
    walk: Walk,
}

impl Walker<'_> {
    fn fail(&mut self, target: Option<Target>, path: &[u8], error: impl ToString) {
        self.walk.failures.push(Failure {
            target,
            path: escape_path(path),
            error: error.to_string(),
        });
    }

    fn walk_mount(&mut self, mount: &Mount) {
        let path = &mount.mount_point;
        let dir = match Dir::open(OsStr::from_bytes(path), DIRECTORY_FLAGS, Mode::empty()) {
            Ok(dir) => dir,
            // Gone since mountinfo was read, or a file bind-mounted on a file: its own file
            // system, where it lives, is walked.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return,
            Err(e) => return self.fail(None, path, e.desc()),
        };
        let device = match fstat(dir.as_fd()) {
            Ok(st) => st.st_dev,
            Err(e) => return self.fail(None, path, e.desc()),
        };
        let root = Node {
            dir,
            device,
            name: path.clone(),
            parent: None,
        };
        // Depth first: (parent, name of a subdirectory still to walk).
        let mut stack: Vec<(Rc<Node>, CString)> = Vec::new();
        self.scan(root, &mut stack);
        while let Some((parent, name)) = stack.pop() {
            let child = match Dir::openat(
                parent.dir.as_fd(),
                name.as_c_str(),
                DIRECTORY_FLAGS,
                Mode::empty(),
            ) {
                Ok(child) => child,
                // Gone, or replaced by something that is not a directory: nothing to see.
                Err(
                    nix::errno::Errno::ENOENT
                    | nix::errno::Errno::ENOTDIR
                    | nix::errno::Errno::ELOOP,
                ) => continue,
                Err(e) => {
                    self.fail(None, &parent.path_of(&name), e.desc());
                    continue;
                }
            };
            let st = match fstat(child.as_fd()) {
                Ok(st) => st,
                Err(e) => {
                    self.fail(None, &parent.path_of(&name), e.desc());
                    continue;
                }
            };
            // Another mount, reached through its mount point: walked on its own if it may hold
            // set-ID files. (A bind mount of the same file system is walked twice: harmless.)
            if st.st_dev != parent.device && self.mount_roots.contains(&(st.st_dev, st.st_ino)) {
                continue;
            }
            let node = Node {
                dir: child,
                device: parent.device,
                name: name.into_bytes(),
                parent: Some(parent),
            };
            self.scan(node, &mut stack);
        }
    }

    /// Reads a directory: clears what needs it among its files and puts its subdirectories on
    /// the stack.
    fn scan(&mut self, mut node: Node, stack: &mut Vec<(Rc<Node>, CString)>) {
        let mut entries = Vec::new();
        let mut error = None;
        for entry in node.dir.iter() {
            match entry {
                Ok(entry) => entries.push((entry.file_name().to_owned(), entry.file_type())),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            self.fail(None, &node.path(), e.desc());
        }
        let mut subdirs = Vec::new();
        for (name, kind) in entries {
            if name.as_c_str() == c"." || name.as_c_str() == c".." {
                continue;
            }
            match kind {
                Some(Type::Directory) => subdirs.push(name),
                Some(Type::File) | None => {
                    if self.look_at(&node, &name) {
                        subdirs.push(name);
                    }
                }
                // Symbolic links are not followed; devices, FIFOs and sockets cannot make
                // anyone anything.
                Some(_) => {}
            }
        }
        if subdirs.is_empty() {
            return;
        }
        let node = Rc::new(node);
        stack.extend(subdirs.into_iter().map(|name| (node.clone(), name)));
    }

    /// A regular file (or an entry whose type the directory did not say): cleared if it is a
    /// target's and set-group-ID. Returns true for a directory.
    fn look_at(&mut self, node: &Node, name: &CStr) -> bool {
        let st = match fstatat(node.dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(_) => return false,
        };
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
            return true;
        }
        let Some(target) = self.match_target(&st) else {
            return false;
        };
        match clear_bit(&node.dir, name, &st, target) {
            Ok(Some((before, after))) => self.walk.cleared.push(Cleared {
                target,
                path: escape_path(&node.path_of(name)),
                mode_before: before,
                mode_after: after,
            }),
            Ok(None) => {}
            Err(e) => self.fail(Some(target), &node.path_of(name), e),
        }
        false
    }

    fn match_target(&self, st: &FileStat) -> Option<Target> {
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind != SFlag::S_IFREG || st.st_mode & S_ISGID == 0 {
            return None;
        }
        let target = Target {
            uid: st.st_uid,
            gid: st.st_gid,
        };
        self.targets.contains(&target).then_some(target)
    }
}

/// Clears S_ISGID on `name` in `dir` if it is still the file that was looked at: opened
/// without following a symbolic link and checked again through the descriptor, so a file
/// swapped in meanwhile is never touched. Returns the modes before and after, or None when
/// the file changed or went.
fn clear_bit(
    dir: &Dir,
    name: &CStr,
    seen: &FileStat,
    target: Target,
) -> Result<Option<(u32, u32)>, String> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd: OwnedFd = match nix::fcntl::openat(dir.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e.desc().to_string()),
    };
    let st = fstat(fd.as_fd()).map_err(|e| e.desc().to_string())?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let same = st.st_dev == seen.st_dev
        && st.st_ino == seen.st_ino
        && kind == SFlag::S_IFREG
        && st.st_uid == target.uid
        && st.st_gid == target.gid
        && st.st_mode & S_ISGID != 0;
    if !same {
        return Ok(None);
    }
    let before = st.st_mode & 0o7777;
    let after = before & !S_ISGID;
    // chmod through the descriptor's /proc link reaches exactly the inode checked above
    // (fchmod does not work on an O_PATH descriptor).
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(after))
        .map_err(|e| e.to_string())?;
    Ok(Some((before, after)))
}

/// The ids of /proc/PID/status that say whom a process acts as and for which groups.
fn status_carries(status: &str, target: Target) -> bool {
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    ids("Uid:").contains(&target.uid)
        && (ids("Gid:").contains(&target.gid) || ids("Groups:").contains(&target.gid))
}

impl SetgidFiles for SystemSetgidFiles {
    fn target(&self, user: &str, group: &str) -> Result<Option<Target>, String> {
        let user = nix::unistd::User::from_name(user)
            .map_err(|e| format!("cannot look up user {user}: {}", e.desc()))?;
        let group = nix::unistd::Group::from_name(group)
            .map_err(|e| format!("cannot look up group {group}: {}", e.desc()))?;
        Ok(user.zip(group).map(|(u, g)| Target {
            uid: u.uid.as_raw(),
            gid: g.gid.as_raw(),
        }))
    }

    fn carried(&self, target: Target) -> std::io::Result<bool> {
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let name = entry.file_name();
            if !name.as_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            // A process that went meanwhile carries nothing.
            if let Ok(status) = std::fs::read_to_string(entry.path().join("status")) {
                if status_carries(&status, target) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn clear(&self, targets: &[Target]) -> Walk {
        let text = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => text,
            Err(e) => {
                return Walk {
                    cleared: Vec::new(),
                    failures: vec![Failure {
                        target: None,
                        path: "/proc/self/mountinfo".into(),
                        error: e.to_string(),
                    }],
                }
            }
        };
        let mounts = parse_mountinfo(&text);
        let mut mount_roots = HashSet::new();
        for mount in &mounts {
            if let Ok(st) = nix::sys::stat::stat(OsStr::from_bytes(&mount.mount_point)) {
                mount_roots.insert((st.st_dev, st.st_ino));
            }
        }
        let targets: HashSet<Target> = targets.iter().copied().collect();
        // One open directory per level of the deepest tree: as many as the hard limit allows.
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        let mut walker = Walker {
            targets: &targets,
            mount_roots,
            walk: Walk::default(),
        };
        for mount in mounts_to_walk(&mounts) {
            walker.walk_mount(&mount);
        }
        walker.walk
    }
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone)]
    pub struct FakeFile {
        pub path: String,
        pub uid: u32,
        pub gid: u32,
        pub mode: u32,
    }

    #[derive(Default)]
    pub struct State {
        pub users: HashMap<String, u32>,
        pub groups: HashMap<String, u32>,
        pub files: Vec<FakeFile>,
        /// Targets some process still carries.
        pub carried: HashSet<Target>,
        /// Paths whose chmod fails.
        pub stuck: HashSet<String>,
        pub lookups_fail: bool,
        pub walks: usize,
    }

    /// Files in memory; a clone shares them, so a test can look after the manager acted.
    #[derive(Clone, Default)]
    pub struct FakeSetgidFiles(pub Arc<Mutex<State>>);

    impl FakeSetgidFiles {
        pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        pub fn add_file(&self, path: &str, uid: u32, gid: u32, mode: u32) {
            self.state().files.push(FakeFile {
                path: path.into(),
                uid,
                gid,
                mode,
            });
        }

        pub fn mode(&self, path: &str) -> u32 {
            self.state()
                .files
                .iter()
                .find(|f| f.path == path)
                .map(|f| f.mode)
                .unwrap()
        }
    }

    impl SetgidFiles for FakeSetgidFiles {
        fn target(&self, user: &str, group: &str) -> Result<Option<Target>, String> {
            let state = self.state();
            if state.lookups_fail {
                return Err("cannot look up user: the directory service is down".into());
            }
            let uid = state.users.get(user);
            let gid = state.groups.get(group);
            Ok(uid.zip(gid).map(|(&uid, &gid)| Target { uid, gid }))
        }

        fn carried(&self, target: Target) -> std::io::Result<bool> {
            Ok(self.state().carried.contains(&target))
        }

        fn clear(&self, targets: &[Target]) -> Walk {
            let mut state = self.state();
            state.walks += 1;
            let stuck = state.stuck.clone();
            let mut walk = Walk::default();
            for file in state.files.iter_mut() {
                let target = Target {
                    uid: file.uid,
                    gid: file.gid,
                };
                if file.mode & S_ISGID == 0 || !targets.contains(&target) {
                    continue;
                }
                if stuck.contains(&file.path) {
                    walk.failures.push(Failure {
                        target: Some(target),
                        path: file.path.clone(),
                        error: "Operation not permitted".into(),
                    });
                    continue;
                }
                let before = file.mode;
                file.mode &= !S_ISGID;
                walk.cleared.push(Cleared {
                    target,
                    path: file.path.clone(),
                    mode_before: before,
                    mode_after: file.mode,
                });
            }
            walk
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
31 27 0:28 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw
32 27 254:0 /srv/data /mnt/my\\040data rw,relatime - ext4 /dev/vda rw
33 27 254:1 / /usr ro,relatime - ext4 /dev/vdb rw
34 27 254:2 / /boot rw,relatime - ext4 /dev/vdc ro
35 27 0:40 / /home/alice/remote rw,nosuid,nodev - fuse.sshfs alice@host: rw
36 27 0:41 / /net rw - nfs4 server:/ rw
37 27 254:3 /a /srv/a rw - xfs /dev/vdd rw
38 27 254:3 /a /srv/a-again rw - xfs /dev/vdd rw
";

    #[test]
    fn given_mountinfo_then_only_local_writable_setid_mounts_are_walked_once() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 11);
        assert_eq!(mounts[4].mount_point, b"/mnt/my data");
        let walked: Vec<String> = mounts_to_walk(&mounts)
            .iter()
            .map(|m| String::from_utf8_lossy(&m.mount_point).into_owned())
            .collect();
        // /usr is read-only for this mount only (as everything is under ProtectSystem=strict);
        // /boot's file system is read-only; /srv/a-again is /srv/a again.
        assert_eq!(walked, ["/", "/dev/shm", "/mnt/my data", "/usr", "/srv/a"]);
    }

    #[test]
    fn given_process_status_then_only_the_users_processes_holding_the_group_carry_it() {
        let target = Target { uid: 1000, gid: 27 };
        let status = |uid: &str, gid: &str, groups: &str| {
            format!("Name:\tbash\nUid:\t{uid}\nGid:\t{gid}\nGroups:\t{groups}\n")
        };
        let holding = status(
            "1000\t1000\t1000\t1000",
            "1000\t1000\t1000\t1000",
            "27 1000",
        );
        assert!(status_carries(&holding, target));
        let setgid_child = status("1000\t1000\t1000\t1000", "1000\t27\t27\t27", "1000");
        assert!(status_carries(&setgid_child, target));
        let after_login = status("1000\t1000\t1000\t1000", "1000\t1000\t1000\t1000", "1000");
        assert!(!status_carries(&after_login, target));
        let other_user = status(
            "1001\t1001\t1001\t1001",
            "1001\t1001\t1001\t1001",
            "27 1001",
        );
        assert!(!status_carries(&other_user, target));
    }

    fn fake() -> fake::FakeSetgidFiles {
        let files = fake::FakeSetgidFiles::default();
        files.state().users.insert("alice".into(), 1000);
        files.state().groups.insert("sudo".into(), 27);
        files.add_file("/home/alice/mycat", 1000, 27, 0o2755);
        files
    }

    fn job(first: bool) -> SweepJob {
        SweepJob {
            user: "alice".into(),
            group: "sudo".into(),
            ended_through: 100,
            first,
        }
    }

    #[test]
    fn given_a_carried_group_then_only_the_first_round_walks() {
        let files = fake();
        files.state().carried.insert(Target { uid: 1000, gid: 27 });
        let first = sweep_round(&files, vec![job(true)]);
        assert!(matches!(
            &first[0].1,
            Swept::Walked { carried_before: true, cleared, .. } if cleared.len() == 1
        ));
        assert_eq!(files.mode("/home/alice/mycat"), 0o755);
        assert_eq!(sweep_round(&files, vec![job(false)])[0].1, Swept::Waiting);
        assert_eq!(files.state().walks, 1);
    }

    #[test]
    fn given_a_user_gone_or_a_failed_lookup_then_the_round_says_which_without_walking_for_it() {
        let files = fake();
        let mut gone = job(true);
        gone.user = "zed".into();
        let results = sweep_round(&files, vec![gone, job(true)]);
        assert_eq!(results[0].1, Swept::Gone);
        assert!(matches!(results[1].1, Swept::Walked { .. }));
        files.state().lookups_fail = true;
        let results = sweep_round(&files, vec![job(true)]);
        assert!(matches!(&results[0].1, Swept::Failed(why) if why.contains("directory service")));
        assert_eq!(files.state().walks, 1);
    }

    /// The real walk on a scratch directory: a set-group-ID file of the target is cleared,
    /// others (another group, a directory, a symbolic link to a target's file) are not.
    #[test]
    fn given_files_on_disk_then_only_the_targets_setgid_regular_files_are_cleared() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("pim-setgid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let me = nix::unistd::getuid().as_raw();
        let my_group = nix::unistd::getgid().as_raw();
        let file = dir.join("sub/mycat");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o2755)).unwrap();
        std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o2775)).unwrap();
        std::os::unix::fs::symlink(&file, dir.join("link")).unwrap();
        let deep_dir = (0..40).fold(dir.clone(), |d, i| d.join(format!("d{i}")));
        std::fs::create_dir_all(&deep_dir).unwrap();
        let deep = deep_dir.join("deepcat");
        std::fs::write(&deep, "x").unwrap();
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o2711)).unwrap();

        let targets: HashSet<Target> = [Target {
            uid: me,
            gid: my_group,
        }]
        .into();
        let mut walker = Walker {
            targets: &targets,
            mount_roots: HashSet::new(),
            walk: Walk::default(),
        };
        let mount = Mount {
            device: "0:0".into(),
            root: b"/".to_vec(),
            mount_point: dir.as_os_str().as_bytes().to_vec(),
            fs_type: "tmpfs".into(),
            mount_options: vec!["rw".into()],
            super_options: vec!["rw".into()],
        };
        walker.walk_mount(&mount);
        assert_eq!(walker.walk.failures, []);
        let me = Target {
            uid: me,
            gid: my_group,
        };
        let mut cleared = walker.walk.cleared.clone();
        cleared.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            cleared,
            [
                Cleared {
                    target: me,
                    path: deep.display().to_string(),
                    mode_before: 0o2711,
                    mode_after: 0o711,
                },
                Cleared {
                    target: me,
                    path: format!("{}/sub/mycat", dir.display()),
                    mode_before: 0o2755,
                    mode_after: 0o755,
                }
            ]
        );
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o755);
        let sub = std::fs::metadata(dir.join("sub")).unwrap().mode() & 0o7777;
        assert_eq!(sub, 0o2775, "directories keep their bit");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
