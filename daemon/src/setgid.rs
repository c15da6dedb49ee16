//! Files a user made set-group-ID for a group while they held it, and taking that bit away
//! once PIM has taken the membership away (SPEC, "When a grant ends"): otherwise a copy of
//! `cat` made set-group-ID during a grant keeps reading the group's files for good.
//!
//! The fingerprint: a non-root user can chmod only files they own and chgrp only to groups
//! they are in, so a regular file or directory owned by the user, of the group, with S_ISGID
//! is one they made so during the membership. The set-ID bits are cleared (S_ISUID with
//! S_ISGID: the unit's RestrictSUIDSGID= refuses a chmod whose new mode keeps either); the
//! file stays. Directories lose the bit too: files made in them would take the group.
//!
//! Where: every mount whose file system is writable and local and that is not `nosuid` in the
//! host's mount table (PID 1's: systemd remounts what it confines `nosuid` in pimd's view
//! alone) (no kernel pseudo file systems; network, FUSE and ramfs mounts are reported as
//! not searched), each walked on its own, without following symbolic links and without
//! entering other mounts (told by mount id; a mount point in a directory no target may write
//! is not even opened, so an automount point or a dead network server does not hold the
//! walk), holding one open directory at a time. A process of the user that
//! still carries the group (a login from before the end) could make a new such file at any
//! time, so a sweep is done only after a walk that started while no such process was left
//! and found nothing to clear, and saw no entry vanish (it may have been moved into a part
//! already walked) or lead to another file or directory than the listing's inode number (one
//! moved or exchanged into its place), in a directory a target could rename it out of (in a
//! sticky one, only the target's own entries: anyone's churn in `/tmp` says nothing). What no walk sees (a copy kept open by a process outside the group and
//! linked back later) is why done sweeps are walked again for a while, and why `nosuid` is
//! the real closure.
//!
//! This module is the port: finding and clearing such files, and whether a process still
//! carries a group. The decisions (when to sweep, what to record) are the manager's; the walk
//! runs outside the manager's lock, on the blocking pool.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, fstatat, major, minor, FileStat, Mode, SFlag};

const S_ISGID: u32 = 0o2000;
const S_ISUID: u32 = 0o4000;

/// Whose files to look for: the user's uid and the group's gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
}

/// A file or directory whose set-ID bits were cleared. `path` is as [`record_path`] makes
/// it; `device` (major:minor) and `inode` say which file it is however long the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    pub target: Target,
    pub path: String,
    pub device: String,
    pub inode: u64,
    pub mode_before: u32,
    pub mode_after: u32,
}

/// Something the walk could not do: a file it could not clear (`target` known) or a directory
/// or mount it could not read, or an entry that went while it was walked, which may hide
/// files of any target. `path` is as [`record_path`] makes it.
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
    /// Mounts that allow set-ID bits on file systems never walked (see [`UNSEARCHED_TYPES`]),
    /// as `"mount point" (type)`.
    pub not_searched: Vec<String>,
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
    /// The uid and gid the user and group had when PIM added the membership: the walk looks
    /// for these numbers, whatever became of the names since. Empty for memberships added
    /// before pimd recorded them: then looked up by name.
    pub ids: Vec<Target>,
    /// The latest end of the user's grants of the group that this sweep covers.
    pub ended_through: i64,
    /// No walk since that end yet: walk even if a process still carries the group.
    pub first: bool,
    /// The sweep is done and this is one of the later looks (at every start of pimd, and
    /// daily for a while after the end) for a file that came back by a way no walk sees: one
    /// moved ahead of the walk, or linked back from a descriptor kept open. Walks whether or
    /// not a process carries the group.
    pub recheck: bool,
}

/// What one round did for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swept {
    /// No ids were recorded and the user or group is gone: nothing can be looked for.
    Gone,
    /// No ids were recorded and the user or group could not be looked up: try again.
    Failed(String),
    /// Walked already, and a process still carries the group: walk again once none does.
    Waiting,
    Walked {
        carried_before: bool,
        cleared: Vec<Cleared>,
        failures: Vec<Failure>,
        not_searched: Vec<String>,
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
        let targets = if job.ids.is_empty() {
            match files.target(&job.user, &job.group) {
                Ok(Some(target)) => vec![target],
                Ok(None) => {
                    results.push((job, Swept::Gone));
                    continue;
                }
                Err(why) => {
                    results.push((job, Swept::Failed(why)));
                    continue;
                }
            }
        } else {
            job.ids.clone()
        };
        // Unreadable process information counts as carried: the sweep is not done.
        let carried = targets
            .iter()
            .any(|&target| files.carried(target).unwrap_or(true));
        if carried && !job.first && !job.recheck {
            results.push((job, Swept::Waiting));
        } else {
            resolved.push((job, targets, carried));
        }
    }
    if resolved.is_empty() {
        return results;
    }
    let all: Vec<Target> = resolved.iter().flat_map(|(_, t, _)| t.clone()).collect();
    let walk = files.clear(&all);
    for (job, targets, carried_before) in resolved {
        let cleared = walk
            .cleared
            .iter()
            .filter(|c| targets.contains(&c.target))
            .cloned()
            .collect();
        let failures = walk
            .failures
            .iter()
            .filter(|f| f.target.is_none_or(|t| targets.contains(&t)))
            .cloned()
            .collect();
        results.push((
            job,
            Swept::Walked {
                carried_before,
                cleared,
                failures,
                not_searched: walk.not_searched.clone(),
            },
        ));
    }
    results
}

/// The real thing: NSS for names, /proc for processes, /proc/self/mountinfo for mounts.
pub struct SystemSetgidFiles;

/// Kernel pseudo file systems: nothing a user writes lives there, never walked. The file
/// systems users may write but the walk does not enter are [`pim_common::mounts`]'s.
const PSEUDO_TYPES: &[&str] = &[
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
];

/// One line of /proc/self/mountinfo, as far as the walk needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount id, as /proc/self/fdinfo shows it for a descriptor on this mount.
    pub id: u32,
    pub device: String,
    /// The directory of the file system mounted here (not "/" for a bind mount of a subtree).
    pub root: Vec<u8>,
    pub mount_point: Vec<u8>,
    pub fs_type: String,
    pub mount_options: Vec<String>,
    pub super_options: Vec<String>,
}

impl Mount {
    /// A user may have written here. `nosuid` in pimd's own table does not say set-ID bits do
    /// nothing: systemd remounts what it confines `nosuid` in pimd's view alone (with
    /// NoNewPrivileges=); the host's table decides that ([`mounts_to_walk`]). Only the super
    /// block's `ro` counts, for the same reason (a bind mount can look read-only to pimd alone).
    fn allows_setid(&self) -> bool {
        !self.super_options.iter().any(|o| o == "ro")
            && !PSEUDO_TYPES.contains(&self.fs_type.as_str())
    }

    /// A mount the sweep walks.
    pub fn may_hold_setgid(&self) -> bool {
        self.allows_setid() && !pim_common::mounts::never_swept(&self.fs_type)
    }
}

/// (device, mount point) of each mount `nosuid` in `host`, a mount table.
fn nosuid_in(host: &[Mount]) -> HashSet<(&str, &[u8])> {
    host.iter()
        .filter(|m| m.mount_options.iter().any(|o| o == "nosuid"))
        .map(|m| (m.device.as_str(), m.mount_point.as_slice()))
        .collect()
}

/// The mounts where set-ID files may work, per `host` (PID 1's table, as for
/// [`mounts_to_walk`]), that the sweep does not walk (reported: a user's own FUSE mounts,
/// always `nosuid`, are not).
pub fn mounts_not_searched<'a>(mounts: &'a [Mount], host: &[Mount]) -> Vec<&'a Mount> {
    let nosuid_on_host = nosuid_in(host);
    mounts
        .iter()
        .filter(|m| m.allows_setid() && pim_common::mounts::never_swept(&m.fs_type))
        .filter(|m| !nosuid_on_host.contains(&(m.device.as_str(), m.mount_point.as_slice())))
        .collect()
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
                id: left[0].parse().ok()?,
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
///
/// `host` is the mount table of PID 1 (the host's, where a confined pimd's differs): a mount
/// that is `nosuid` there too (`/run/lock`, `/run/user/UID`, a `nosuid` `/tmp`) is skipped, as
/// set-ID bits do nothing there; one `nosuid` only in pimd's view is walked.
pub fn mounts_to_walk(mounts: &[Mount], host: &[Mount]) -> Vec<Mount> {
    let nosuid_on_host = nosuid_in(host);
    let mut seen = HashSet::new();
    mounts
        .iter()
        .filter(|m| m.may_hold_setgid())
        .filter(|m| !nosuid_on_host.contains(&(m.device.as_str(), m.mount_point.as_slice())))
        .filter(|m| seen.insert((m.device.clone(), m.root.clone())))
        .cloned()
        .collect()
}

/// Longest path an audit record shows, in bytes of its escaped form: the start and the end
/// of a longer one (the end names the file), with the device and inode saying which it is.
const MAX_RECORDED_PATH: usize = 1024;

/// A path as an audit record shows it: in double quotes, with control characters, bytes that
/// are not UTF-8, backslashes and double quotes escaped (`\xNN`), so that no file name can
/// make a record read as if it were about another file; cut in the middle when longer than
/// [`MAX_RECORDED_PATH`].
pub fn record_path(path: &[u8]) -> String {
    let escaped = pim_common::text::escape_bytes(path).replace('"', "\\x22");
    let shown = if escaped.len() <= MAX_RECORDED_PATH {
        escaped
    } else {
        let head = floor_boundary(&escaped, MAX_RECORDED_PATH / 4);
        let mut tail = escaped.len() - (MAX_RECORDED_PATH - head);
        while !escaped.is_char_boundary(tail) {
            tail += 1;
        }
        format!("{}...{}", &escaped[..head], &escaped[tail..])
    };
    format!("\"{shown}\"")
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

const DIRECTORY_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// What an entry that readdir listed and that is gone (or another file) when looked at is
/// recorded as: it may have been moved into a part of the tree already walked, so the walk
/// does not count as having found everything.
const VANISHED: &str = "moved or removed during the walk; pimd walks again";

/// How many entries that vanished one walk lists; the rest are counted.
const MAX_VANISHED_LISTED: usize = 32;

fn vanished(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOENT | Errno::ESTALE | Errno::ENOTDIR | Errno::ELOOP
    )
}

/// A directory on the way down from a mount's root to where the walk is: its name (the mount
/// point for the root), its identity (to check that `..` leads back to it) and its
/// subdirectories still to walk. The walk holds one open directory at a time, however deep
/// the tree, and closes each directory stream once its entries are read.
struct Frame {
    name: Vec<u8>,
    dev: u64,
    ino: u64,
    renamable: Renamable,
    /// A target could have moved it (see [`Walker::counts`]): its going counts as vanished.
    counts: bool,
    subdirs: Vec<Listed>,
}

/// Which entries a target could rename out of a directory (see [`Walker::renamable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renamable {
    No,
    Any,
    /// A sticky directory others may write (`/tmp`): only the target's own entries.
    TargetsOwn,
}

/// A subdirectory as its parent's listing showed it. What is opened by that name later (after
/// the subtrees of its siblings) may be another directory, moved or exchanged into its place
/// while this one went into a part already walked: the inode number tells.
struct Listed {
    name: CString,
    ino: u64,
    /// Its owner's uid, looked up when listed in a [`Renamable::TargetsOwn`] directory.
    owner: Option<u32>,
}

/// The path of `frames` and then `names`, for the audit.
fn path_of(frames: &[Frame], names: &[&[u8]]) -> Vec<u8> {
    let mut path = Vec::new();
    for name in frames
        .iter()
        .map(|f| f.name.as_slice())
        .chain(names.iter().copied())
    {
        if !path.is_empty() && path.last() != Some(&b'/') {
            path.push(b'/');
        }
        path.extend_from_slice(name);
    }
    path
}

/// The mount id the kernel gives the mount `fd` is on (the first field of mountinfo).
fn mount_id(fd: &OwnedFd) -> Result<u32, String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot read its fdinfo: {e}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| "its fdinfo names no mount".to_string())
}

/// Opens a mount's root without following any symbolic link on the way (openat2 with
/// RESOLVE_NO_SYMLINKS; O_NOFOLLOW on the last component where openat2 is missing or
/// filtered), then checks that it is the mount mountinfo named, so a directory renamed or
/// replaced on the way since mountinfo was read is never walked in its place.
fn open_mount_root(mount: &Mount) -> Result<OwnedFd, Errno> {
    let path = OsStr::from_bytes(&mount.mount_point);
    let how = OpenHow::new()
        .flags(DIRECTORY_FLAGS)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(AT_FDCWD, path, how) {
        Err(Errno::ENOSYS | Errno::EPERM) => nix::fcntl::open(path, DIRECTORY_FLAGS, Mode::empty()),
        other => other,
    }
}

/// One walk over several mounts.
struct Walker<'a> {
    targets: &'a HashSet<Target>,
    /// The id of the mount being walked: a subdirectory on another is not entered.
    walking: u32,
    /// Every mount of mountinfo, to tell a mount point covered by another mount, and a mount
    /// reached through its mount point from one made since mountinfo was read.
    mounts: &'a [Mount],
    /// Entries found vanished so far, listed or not (see [`MAX_VANISHED_LISTED`]).
    vanished: usize,
    walk: Walk,
}

impl Walker<'_> {
    fn fail(&mut self, target: Option<Target>, path: &[u8], error: impl ToString) {
        self.walk.failures.push(Failure {
            target,
            path: record_path(path),
            error: error.to_string(),
        });
    }

    /// Records an entry that vanished, up to [`MAX_VANISHED_LISTED`] per walk.
    fn vanish(&mut self, target: Option<Target>, path: &[u8]) {
        self.vanished += 1;
        if self.vanished <= MAX_VANISHED_LISTED {
            self.fail(target, path, VANISHED);
        }
    }

    /// Whether an entry owned by `owner` (None: not known) going from a directory is one a
    /// target may have moved.
    fn counts(&self, renamable: Renamable, owner: Option<u32>) -> bool {
        match renamable {
            Renamable::No => false,
            Renamable::Any => true,
            Renamable::TargetsOwn => {
                owner.is_none_or(|uid| self.targets.iter().any(|t| t.uid == uid))
            }
        }
    }

    fn walk_mount(&mut self, mount: &Mount) {
        let vanished_before = self.vanished;
        self.walk_mount_listed(mount);
        self.count_unlisted(&mount.mount_point, vanished_before);
    }

    /// Records how many entries below `path` vanished unlisted since `vanished_before`.
    fn count_unlisted(&mut self, path: &[u8], vanished_before: usize) {
        let unlisted =
            self.vanished.max(MAX_VANISHED_LISTED) - vanished_before.max(MAX_VANISHED_LISTED);
        if unlisted > 0 {
            let error = format!("{unlisted} more entries below it {VANISHED}");
            self.fail(None, path, error);
        }
    }

    fn walk_mount_listed(&mut self, mount: &Mount) {
        let path = &mount.mount_point;
        let root = match open_mount_root(mount) {
            Ok(root) => root,
            // Gone since mountinfo was read, or a file bind-mounted on a file: its own file
            // system, where it lives, is walked.
            Err(Errno::ENOENT | Errno::ENOTDIR) => return,
            Err(e) => return self.fail(None, path, e.desc()),
        };
        match mount_id(&root) {
            Ok(id) if id == mount.id => {}
            Ok(id) => {
                let covered = self
                    .mounts
                    .iter()
                    .any(|m| m.id == id && m.mount_point == mount.mount_point);
                if covered {
                    // Stacked mounts: only the top one can be reached, and it is walked.
                    return;
                }
                return self.fail(
                    None,
                    path,
                    format!(
                        "is mount {id}, not mount {} (moved since it was read)",
                        mount.id
                    ),
                );
            }
            Err(e) => return self.fail(None, path, e),
        }
        let st = match fstat(&root) {
            Ok(st) => st,
            Err(e) => return self.fail(None, path, e.desc()),
        };
        self.walking = mount.id;
        let mut frames = vec![Frame {
            name: path.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
            renamable: self.renamable(&st),
            counts: true,
            subdirs: Vec::new(),
        }];
        self.clear_directory(&root, &st, &frames, &[]);
        frames[0].subdirs = self.scan(&root, &st, &frames, &[]);
        self.walk_below(&root, frames);
    }

    /// Walks the subdirectories `frames` hold, depth first; `frames` is the mount's root.
    fn walk_below(&mut self, root: &OwnedFd, mut frames: Vec<Frame>) {
        let mut current = match root.try_clone() {
            Ok(fd) => fd,
            Err(e) => return self.fail(None, &frames[0].name.clone(), e),
        };
        while let Some(top) = frames.last_mut() {
            let renamable = top.renamable;
            let Some(listed) = top.subdirs.pop() else {
                let Some(done) = frames.pop() else { break };
                let Some(parent) = frames.last() else { break };
                current = match self.up(&current, parent) {
                    Some(fd) => fd,
                    None => {
                        // It was moved elsewhere while walked: the rest of its parent is
                        // reached again from the root.
                        if done.counts {
                            let moved = path_of(&frames, &[&done.name]);
                            self.vanish(None, &moved);
                        }
                        match self.reach(root, &mut frames) {
                            Some(fd) => fd,
                            None => break,
                        }
                    }
                };
                continue;
            };
            let name_bytes = listed.name.to_bytes();
            let here = path_of(&frames, &[name_bytes]);
            // The mount point of another mount, as mountinfo names it, in a directory no target
            // may write (so the name is still it): not opened, for an automount point would
            // mount and a dead network server hang the walk. Elsewhere the name may lead to
            // another directory by now: opened, and told by its mount id.
            let other_mount = |m: &Mount| m.id != self.walking && m.mount_point == here;
            if renamable == Renamable::No && self.mounts.iter().any(other_mount) {
                continue;
            }
            let child = match openat(
                &current,
                listed.name.as_c_str(),
                DIRECTORY_FLAGS,
                Mode::empty(),
            ) {
                Ok(child) => child,
                Err(e) if vanished(e) => {
                    if self.counts(renamable, listed.owner) {
                        self.vanish(None, &here);
                    }
                    continue;
                }
                Err(e) => {
                    self.fail(None, &here, e.desc());
                    continue;
                }
            };
            let st = match fstat(&child) {
                Ok(st) => st,
                Err(e) => {
                    self.fail(None, &here, e.desc());
                    continue;
                }
            };
            match mount_id(&child) {
                Ok(id) if id == self.walking => {}
                // Another mount, reached through its mount point: walked on its own if it may
                // hold set-ID files. (A mount point cannot be renamed, so it is what was listed.)
                Ok(id) if self.mounts.iter().any(|m| m.id == id) => continue,
                // A mount made since mountinfo was read, over what was listed here.
                Ok(_) => {
                    if self.counts(renamable, listed.owner) {
                        self.vanish(None, &here);
                    }
                    continue;
                }
                Err(e) => {
                    self.fail(None, &here, e);
                    continue;
                }
            }
            if st.st_ino != listed.ino {
                if self.counts(renamable, listed.owner) {
                    self.vanish(None, &here);
                }
                continue;
            }
            self.clear_directory(&child, &st, &frames, &[name_bytes]);
            let subdirs = self.scan(&child, &st, &frames, &[name_bytes]);
            if subdirs.is_empty() {
                continue;
            }
            frames.push(Frame {
                name: listed.name.into_bytes(),
                dev: st.st_dev,
                ino: st.st_ino,
                renamable: self.renamable(&st),
                counts: self.counts(renamable, listed.owner),
                subdirs,
            });
            current = child;
        }
    }

    /// The parent of `dir`, reached through `..`, if it is still `parent` (the directory was
    /// not moved elsewhere meanwhile).
    fn up(&self, dir: &OwnedFd, parent: &Frame) -> Option<OwnedFd> {
        let fd = nix::fcntl::openat(dir, c"..", DIRECTORY_FLAGS, Mode::empty()).ok()?;
        let st = fstat(&fd).ok()?;
        (st.st_dev == parent.dev && st.st_ino == parent.ino).then_some(fd)
    }

    /// Opens the deepest of `frames` again from the mount's root, by name, checking each
    /// directory on the way is the one walked; where one is not, the frames below it (whose
    /// rest can no longer be reached) are dropped, recorded as vanished. None when not even
    /// the root's descriptor can be duplicated: the rest of this mount is not walked.
    fn reach(&mut self, root: &OwnedFd, frames: &mut Vec<Frame>) -> Option<OwnedFd> {
        let mut fd = match root.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                self.fail(None, &frames[0].name.clone(), e);
                return None;
            }
        };
        for depth in 1..frames.len() {
            let frame = &frames[depth];
            let next = CString::new(frame.name.clone()).ok().and_then(|name| {
                let child = openat(&fd, name.as_c_str(), DIRECTORY_FLAGS, Mode::empty()).ok()?;
                let st = fstat(&child).ok()?;
                (st.st_dev == frame.dev && st.st_ino == frame.ino).then_some(child)
            });
            match next {
                Some(child) => fd = child,
                None => {
                    if frames[depth..].iter().any(|f| f.counts) {
                        let lost = path_of(&frames[..=depth], &[]);
                        self.vanish(None, &lost);
                    }
                    frames.truncate(depth);
                    break;
                }
            }
        }
        Some(fd)
    }

    /// Reads a directory's entries (closing its stream before anything else is opened),
    /// clears what needs it among its files and returns its subdirectories.
    fn scan(
        &mut self,
        dir: &OwnedFd,
        dir_st: &FileStat,
        frames: &[Frame],
        names: &[&[u8]],
    ) -> Vec<Listed> {
        let renamable = self.renamable(dir_st);
        let mut entries = Vec::new();
        match Dir::openat(dir, c".", DIRECTORY_FLAGS, Mode::empty()) {
            Ok(mut stream) => {
                for entry in stream.iter() {
                    match entry {
                        Ok(entry) => {
                            let name = entry.file_name().to_owned();
                            entries.push((name, entry.file_type(), entry.ino()))
                        }
                        Err(e) => {
                            self.fail(None, &path_of(frames, names), e.desc());
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                self.fail(None, &path_of(frames, names), e.desc());
                return Vec::new();
            }
        }
        let mut subdirs = Vec::new();
        for (name, kind, ino) in entries {
            if name.as_c_str() == c"." || name.as_c_str() == c".." {
                continue;
            }
            match kind {
                Some(Type::Directory) => {
                    let owner = (renamable == Renamable::TargetsOwn)
                        .then(|| fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW))
                        .and_then(|st| Some(st.ok()?.st_uid));
                    subdirs.push(Listed { name, ino, owner })
                }
                Some(Type::File) | None => {
                    if let Some(owner) = self.look_at(dir, renamable, &name, ino, frames, names) {
                        let owner = Some(owner);
                        subdirs.push(Listed { name, ino, owner });
                    }
                }
                // Symbolic links are not followed; devices, FIFOs and sockets cannot make
                // anyone anything.
                Some(_) => {}
            }
        }
        subdirs
    }

    /// A regular file (or an entry whose type the directory did not say): cleared if it is a
    /// target's and set-group-ID. Returns a directory's owner. Another file than the one
    /// listed (inode `ino`) under that name counts as the listed one vanished (whose owner,
    /// in a sticky directory, is not known then: it counts).
    fn look_at(
        &mut self,
        dir: &OwnedFd,
        renamable: Renamable,
        name: &CStr,
        ino: u64,
        frames: &[Frame],
        names: &[&[u8]],
    ) -> Option<u32> {
        let here = |frames: &[Frame]| {
            let mut all = names.to_vec();
            all.push(name.to_bytes());
            path_of(frames, &all)
        };
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if vanished(e) => {
                if self.counts(renamable, None) {
                    self.vanish(None, &here(frames));
                }
                return None;
            }
            Err(e) => {
                self.fail(None, &here(frames), e.desc());
                return None;
            }
        };
        if st.st_ino != ino {
            if self.counts(renamable, None) {
                self.vanish(None, &here(frames));
            }
            return None;
        }
        if kind_of(&st) == SFlag::S_IFDIR {
            return Some(st.st_uid);
        }
        let target = self.match_target(&st, SFlag::S_IFREG)?;
        match clear_file_bits(dir, name, &st, target) {
            Ok(FileOutcome::Done(before, after)) => {
                self.cleared(target, &here(frames), &st, before, after)
            }
            Ok(FileOutcome::Unchanged) => {}
            Ok(FileOutcome::Vanished) => self.vanish(Some(target), &here(frames)),
            Err(e) => self.fail(Some(target), &here(frames), e),
        }
        None
    }

    /// A target's set-group-ID directory, open as `dir`, loses the bit: files created in it
    /// would otherwise get the group (and kernels before 5.x kept their set-group-ID bit
    /// when a non-member created them there).
    fn clear_directory(&mut self, dir: &OwnedFd, st: &FileStat, frames: &[Frame], names: &[&[u8]]) {
        let Some(target) = self.match_target(st, SFlag::S_IFDIR) else {
            return;
        };
        let (before, after) = cleared_mode(st.st_mode);
        match fchmod(dir, Mode::from_bits_truncate(after)) {
            Ok(()) => self.cleared(target, &path_of(frames, names), st, before, after),
            Err(e) => self.fail(Some(target), &path_of(frames, names), e.desc()),
        }
    }

    /// Whether a target could have renamed an entry out of this directory: renaming needs
    /// write permission on it, so only one the target owns, or that its group class (an ACL's
    /// mask included) or others may write; in a sticky one of those (`/tmp`) only the
    /// target's own entries. An entry gone from any other directory (a daemon's files coming
    /// and going, anyone's in `/tmp`) says nothing about a target's files.
    fn renamable(&self, dir: &FileStat) -> Renamable {
        if self.targets.iter().any(|t| t.uid == dir.st_uid) {
            Renamable::Any
        } else if dir.st_mode & 0o022 == 0 {
            Renamable::No
        } else if dir.st_mode & 0o1000 != 0 {
            Renamable::TargetsOwn
        } else {
            Renamable::Any
        }
    }

    fn cleared(&mut self, target: Target, path: &[u8], st: &FileStat, before: u32, after: u32) {
        self.walk.cleared.push(Cleared {
            target,
            path: record_path(path),
            device: format!("{}:{}", major(st.st_dev), minor(st.st_dev)),
            inode: st.st_ino,
            mode_before: before,
            mode_after: after,
        });
    }

    fn match_target(&self, st: &FileStat, kind: SFlag) -> Option<Target> {
        if kind_of(st) != kind || st.st_mode & S_ISGID == 0 {
            return None;
        }
        let target = Target {
            uid: st.st_uid,
            gid: st.st_gid,
        };
        self.targets.contains(&target).then_some(target)
    }
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The permission bits before and after clearing: set-group-ID goes, and set-user-ID with
/// it. A file that is both is as much the group's as one that is only set-group-ID, and the
/// unit's RestrictSUIDSGID= refuses any chmod whose new mode keeps either bit: clearing only
/// S_ISGID of a 6755 file would fail for good.
pub fn cleared_mode(mode: u32) -> (u32, u32) {
    let before = mode & 0o7777;
    (before, before & !(S_ISUID | S_ISGID))
}

/// What became of a file to clear.
enum FileOutcome {
    Done(u32, u32),
    /// The same file, no longer a target's set-group-ID file: nothing to do.
    Unchanged,
    /// Gone, or another file in its place: it may have been moved.
    Vanished,
}

/// Clears the set-ID bits of `name` in `dir` if it is still the file that was looked at:
/// opened without following a symbolic link and checked again through the descriptor, so a
/// file swapped in meanwhile is never touched.
fn clear_file_bits(
    dir: &OwnedFd,
    name: &CStr,
    seen: &FileStat,
    target: Target,
) -> Result<FileOutcome, String> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if vanished(e) => return Ok(FileOutcome::Vanished),
        Err(e) => return Err(e.desc().to_string()),
    };
    let st = fstat(&fd).map_err(|e| e.desc().to_string())?;
    if st.st_dev != seen.st_dev || st.st_ino != seen.st_ino {
        return Ok(FileOutcome::Vanished);
    }
    let same = kind_of(&st) == SFlag::S_IFREG
        && st.st_uid == target.uid
        && st.st_gid == target.gid
        && st.st_mode & S_ISGID != 0;
    if !same {
        return Ok(FileOutcome::Unchanged);
    }
    let (before, after) = cleared_mode(st.st_mode);
    // chmod through the descriptor's /proc link reaches exactly the inode checked above
    // (fchmod does not work on an O_PATH descriptor).
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(after))
        .map_err(|e| e.to_string())?;
    Ok(FileOutcome::Done(before, after))
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
        carried_in(Path::new("/proc"), target)
    }

    fn clear(&self, targets: &[Target]) -> Walk {
        let text = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => text,
            Err(e) => {
                return Walk {
                    failures: vec![Failure {
                        target: None,
                        path: record_path(b"/proc/self/mountinfo"),
                        error: e.to_string(),
                    }],
                    ..Walk::default()
                }
            }
        };
        let mounts = parse_mountinfo(&text);
        let targets: HashSet<Target> = targets.iter().copied().collect();
        let mut walker = Walker {
            targets: &targets,
            walking: 0,
            mounts: &mounts,
            vanished: 0,
            walk: Walk::default(),
        };
        // Unreadable, the host's table leaves every mount to walk.
        let host = std::fs::read_to_string("/proc/1/mountinfo")
            .map(|text| parse_mountinfo(&text))
            .unwrap_or_default();
        for mount in mounts_to_walk(&mounts, &host) {
            walker.walk_mount(&mount);
        }
        walker.walk.not_searched = mounts_not_searched(&mounts, &host)
            .iter()
            .map(|m| format!("{} ({})", record_path(&m.mount_point), m.fs_type))
            .collect();
        walker.walk
    }
}

/// Whether a process under `proc` (a /proc) carries the target. Credentials are per thread:
/// one thread may keep the group while the others, the main thread among them, dropped it,
/// so every thread's status counts.
fn carried_in(proc: &Path, target: Target) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(proc)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        // A process (or thread) that went meanwhile carries nothing.
        let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
                if status_carries(&status, target) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
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
        /// Paths the next walks find vanished (moved or removed while walked).
        pub vanishing: Vec<String>,
        /// Mounts reported as not searched.
        pub not_searched: Vec<String>,
        /// The targets of each walk.
        pub walks_for: Vec<Vec<Target>>,
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
            state.walks_for.push(targets.to_vec());
            let stuck = state.stuck.clone();
            let mut walk = Walk {
                not_searched: state.not_searched.clone(),
                ..Walk::default()
            };
            for path in &state.vanishing {
                walk.failures.push(Failure {
                    target: None,
                    path: record_path(path.as_bytes()),
                    error: VANISHED.into(),
                });
            }
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
                        path: record_path(file.path.as_bytes()),
                        error: "Operation not permitted".into(),
                    });
                    continue;
                }
                let (before, after) = cleared_mode(file.mode);
                file.mode = after;
                walk.cleared.push(Cleared {
                    target,
                    path: record_path(file.path.as_bytes()),
                    device: "254:0".into(),
                    inode: 7,
                    mode_before: before,
                    mode_after: after,
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
        let walked = |host: &[Mount]| -> Vec<String> {
            mounts_to_walk(&mounts, host)
                .iter()
                .map(|m| String::from_utf8_lossy(&m.mount_point).into_owned())
                .collect()
        };
        // /tmp is nosuid in pimd's view, but not on the host (PID 1's table): walked. /usr is
        // read-only for this mount only (as a confined pimd may see it); /boot's file system
        // is read-only; /srv/a-again is /srv/a again; sshfs and nfs are not walked.
        let host_tmp_suid = MOUNTINFO.replace("/tmp rw,nosuid,nodev", "/tmp rw,nodev");
        assert_eq!(
            walked(&parse_mountinfo(&host_tmp_suid)),
            ["/", "/dev/shm", "/tmp", "/mnt/my data", "/usr", "/srv/a"]
        );
        // nosuid on the host too: set-ID bits do nothing there.
        assert_eq!(
            walked(&mounts),
            ["/", "/dev/shm", "/mnt/my data", "/usr", "/srv/a"]
        );
        // Without the host's table, everything is walked.
        assert_eq!(
            walked(&[]),
            ["/", "/dev/shm", "/tmp", "/mnt/my data", "/usr", "/srv/a"]
        );
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
            ids: Vec::new(),
            ended_through: 100,
            first,
            recheck: false,
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

    #[test]
    fn given_a_file_both_set_user_and_set_group_id_then_both_bits_go() {
        // RestrictSUIDSGID= refuses a chmod whose new mode keeps either bit.
        assert_eq!(cleared_mode(0o106755), (0o6755, 0o755));
        assert_eq!(cleared_mode(0o2711), (0o2711, 0o711));
        assert_eq!(cleared_mode(0o42775), (0o2775, 0o775));
    }

    #[test]
    fn given_recorded_ids_then_the_walk_uses_them_even_with_the_names_gone() {
        let files = fake();
        files.state().users.clear();
        files.state().groups.clear();
        files.add_file("/home/alice/old", 1000, 500, 0o2755);
        let mut job = job(true);
        job.ids = vec![
            Target { uid: 1000, gid: 27 },
            Target {
                uid: 1000,
                gid: 500,
            },
        ];
        let results = sweep_round(&files, vec![job]);
        assert!(
            matches!(&results[0].1, Swept::Walked { cleared, .. } if cleared.len() == 2),
            "{results:?}"
        );
        assert_eq!(files.mode("/home/alice/mycat"), 0o755);
        assert_eq!(files.mode("/home/alice/old"), 0o755);
    }

    #[test]
    fn given_jobs_for_several_users_then_one_walk_serves_them_all() {
        let files = fake();
        let mut bob = job(false);
        bob.user = "bob".into();
        bob.ids = vec![Target { uid: 1001, gid: 27 }];
        bob.recheck = true;
        let mut alice = job(true);
        alice.ids = vec![Target { uid: 1000, gid: 27 }];
        sweep_round(&files, vec![alice, bob]);
        assert_eq!(
            files.state().walks_for,
            [vec![
                Target { uid: 1000, gid: 27 },
                Target { uid: 1001, gid: 27 }
            ]]
        );
    }

    #[test]
    fn given_a_path_with_quotes_controls_and_bytes_not_utf8_then_the_record_shows_it_unambiguously()
    {
        let forged = b"/tmp/x\": set-group-ID for group sudo cleared\n\xff\\";
        assert_eq!(
            record_path(forged),
            r#""/tmp/x\x22: set-group-ID for group sudo cleared\x0a\xff\\""#
        );
        let long = format!("/tmp/{}cat", "d/".repeat(5000));
        let shown = record_path(long.as_bytes());
        assert!(shown.len() <= MAX_RECORDED_PATH + 5, "{}", shown.len());
        assert!(
            shown.starts_with("\"/tmp/d/d/") && shown.ends_with("d/d/cat\""),
            "{shown}"
        );
        assert!(shown.contains("..."));
    }

    /// A thread of a process can keep the group while its main thread dropped it.
    #[test]
    fn given_only_a_secondary_thread_carrying_the_group_then_the_process_carries_it() {
        let proc = scratch("proc");
        let status = |gid: u32| {
            format!("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t{gid}\t{gid}\t{gid}\nGroups:\t1000\n")
        };
        for (task, gid) in [("4242", 1000), ("4243", 27)] {
            let dir = proc.join("4242/task").join(task);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("status"), status(gid)).unwrap();
        }
        std::fs::write(proc.join("4242/status"), status(1000)).unwrap();
        assert!(carried_in(&proc, Target { uid: 1000, gid: 27 }).unwrap());
        assert!(!carried_in(&proc, Target { uid: 1000, gid: 28 }).unwrap());
        std::fs::remove_dir_all(&proc).unwrap();
    }

    #[test]
    fn given_mountinfo_then_network_and_fuse_mounts_allowing_setid_are_reported_not_searched() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let not_searched = |mounts: &[Mount], host: &[Mount]| -> Vec<Vec<u8>> {
            mounts_not_searched(mounts, host)
                .iter()
                .map(|m| m.mount_point.clone())
                .collect()
        };
        // The sshfs mount is nosuid; /proc is a pseudo file system.
        assert_eq!(not_searched(&mounts, &mounts), [b"/net".to_vec()]);
        // nosuid in a confined pimd's view alone: set-ID files work there all the same.
        let confined = parse_mountinfo(&MOUNTINFO.replace("/net rw -", "/net rw,nosuid -"));
        assert_eq!(not_searched(&confined, &mounts), [b"/net".to_vec()]);
    }

    /// A fresh directory for a test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pim-setgid-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn me() -> Target {
        Target {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    /// `dir` as the mount it would be, with its real mount id.
    fn mount_at(dir: &Path) -> Mount {
        let fd = nix::fcntl::open(dir, DIRECTORY_FLAGS, Mode::empty()).unwrap();
        Mount {
            id: mount_id(&fd).unwrap(),
            device: "0:0".into(),
            root: b"/".to_vec(),
            mount_point: dir.as_os_str().as_bytes().to_vec(),
            fs_type: "tmpfs".into(),
            mount_options: vec!["rw".into()],
            super_options: vec!["rw".into()],
        }
    }

    /// Walks `mount` for [`me`] as the real walk does.
    fn walk(mount: &Mount) -> Walk {
        walk_with(mount, |walker| walker.walk_mount(mount))
    }

    /// What `run` makes a walker for [`me`] on `mount` find.
    fn walk_with(mount: &Mount, run: impl FnOnce(&mut Walker)) -> Walk {
        let targets: HashSet<Target> = [me()].into();
        let mounts = [mount.clone()];
        let mut walker = Walker {
            targets: &targets,
            walking: mount.id,
            mounts: &mounts,
            vanished: 0,
            walk: Walk::default(),
        };
        run(&mut walker);
        walker.walk
    }

    fn listed(name: &CStr, ino: u64) -> Listed {
        Listed {
            name: name.to_owned(),
            ino,
            owner: None,
        }
    }

    /// (path, error) of each failure of `walk`.
    fn failures_of(walk: &Walk) -> Vec<(String, String)> {
        walk.failures
            .iter()
            .map(|f| (f.path.clone(), f.error.clone()))
            .collect()
    }

    fn ino_of(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The real walk on a scratch directory: the target's set-group-ID files (set-user-ID
    /// too or not) and directories lose their set-ID bits; a symbolic link is not followed.
    #[test]
    fn given_files_on_disk_then_the_targets_setgid_files_and_directories_are_cleared() {
        use std::os::unix::fs::MetadataExt;
        let dir = scratch("files");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("sub/mycat");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o2755);
        let both = dir.join("both");
        std::fs::write(&both, "x").unwrap();
        chmod(&both, 0o6755);
        chmod(&dir.join("sub"), 0o2775);
        std::os::unix::fs::symlink(&file, dir.join("link")).unwrap();
        let deep_dir = (0..40).fold(dir.clone(), |d, i| d.join(format!("d{i}")));
        std::fs::create_dir_all(&deep_dir).unwrap();
        let deep = deep_dir.join("deepcat");
        std::fs::write(&deep, "x").unwrap();
        chmod(&deep, 0o2711);

        let walk = walk(&mount_at(&dir));
        assert_eq!(walk.failures, []);
        let mut cleared: Vec<(String, u32, u32)> = walk
            .cleared
            .iter()
            .map(|c| (c.path.clone(), c.mode_before, c.mode_after))
            .collect();
        cleared.sort();
        let quoted = |p: &Path| format!("\"{}\"", p.display());
        let mut expected = vec![
            (quoted(&deep), 0o2711, 0o711),
            (quoted(&both), 0o6755, 0o755),
            (quoted(&dir.join("sub")), 0o2775, 0o775),
            (quoted(&file), 0o2755, 0o755),
        ];
        expected.sort();
        assert_eq!(cleared, expected);
        let inode = std::fs::metadata(&both).unwrap().ino();
        assert!(walk.cleared.iter().any(|c| c.inode == inode));
        assert_eq!(mode_of(&file), 0o755);
        assert_eq!(mode_of(&both), 0o755);
        assert_eq!(mode_of(&dir.join("sub")), 0o775);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Deeper than the descriptors a process may have open: the walk holds one open directory
    /// at a time, so it reaches the bottom, and nothing is dropped recursively.
    #[test]
    fn given_a_tree_deeper_than_the_open_file_limit_then_the_file_at_the_bottom_is_cleared() {
        use nix::sys::stat::mkdirat;
        use nix::unistd::{unlinkat, UnlinkatFlags};
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let depth = (soft + 100).clamp(5000, 30_000);
        let dir = scratch("deep");
        let flags = DIRECTORY_FLAGS;
        let mut fd = nix::fcntl::open(&dir, flags, Mode::empty()).unwrap();
        for _ in 0..depth {
            mkdirat(&fd, c"d", Mode::from_bits_truncate(0o755)).unwrap();
            fd = openat(&fd, c"d", flags, Mode::empty()).unwrap();
        }
        let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC;
        let bottom = openat(&fd, c"cat", create, Mode::from_bits_truncate(0o755)).unwrap();
        fchmod(&bottom, Mode::from_bits_truncate(0o2755)).unwrap();
        drop(bottom);

        let walk = walk(&mount_at(&dir));
        assert_eq!(walk.failures, []);
        assert_eq!(walk.cleared.len(), 1, "{:?}", walk.cleared);
        assert!(walk.cleared[0].path.ends_with("/d/d/cat\""));
        let st = fstatat(&fd, c"cat", AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o755);

        unlinkat(&fd, c"cat", UnlinkatFlags::NoRemoveDir).unwrap();
        for _ in 0..depth {
            fd = openat(&fd, c"..", flags, Mode::empty()).unwrap();
            unlinkat(&fd, c"d", UnlinkatFlags::RemoveDir).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An entry readdir listed that is gone when looked at may have been moved into a part
    /// already walked: the walk says so, which keeps the sweep from being done.
    #[test]
    fn given_entries_that_vanish_during_the_walk_then_the_walk_is_unclean() {
        let dir = scratch("vanish");
        let mount = mount_at(&dir);
        let root = nix::fcntl::open(&dir, DIRECTORY_FLAGS, Mode::empty()).unwrap();
        let st = fstat(&root).unwrap();
        let frame = |subdirs, renamable| Frame {
            name: mount.mount_point.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
            renamable,
            counts: true,
            subdirs,
        };
        // As if readdir had listed a subdirectory and a file that were then moved away.
        let walk = walk_with(&mount, |walker| {
            let any = Renamable::Any;
            walker.walk_below(&root, vec![frame(vec![listed(c"moved-dir", 1)], any)]);
            let frames = [frame(Vec::new(), any)];
            let look = walker.look_at(&root, any, c"moved-file", 1, &frames, &[]);
            assert_eq!(look, None);
            // From a directory no target may write, an entry going is none of theirs.
            let no = Renamable::No;
            walker.walk_below(&root, vec![frame(vec![listed(c"daemon-dir", 1)], no)]);
            let frames = [frame(Vec::new(), no)];
            assert_eq!(
                walker.look_at(&root, no, c"daemon-file", 1, &frames, &[]),
                None
            );
            // From /tmp, only a target's own entry going counts.
            let own = Renamable::TargetsOwn;
            let mut bobs = listed(c"bobs-dir", 1);
            bobs.owner = Some(me().uid + 1);
            let mut mine = listed(c"my-dir", 1);
            mine.owner = Some(me().uid);
            walker.walk_below(&root, vec![frame(vec![bobs, mine], own)]);
        });
        let failures = failures_of(&walk);
        let quoted = |name: &str| format!("\"{}/{name}\"", dir.display());
        assert_eq!(
            failures,
            [
                (quoted("moved-dir"), VANISHED.to_string()),
                (quoted("moved-file"), VANISHED.to_string()),
                (quoted("my-dir"), VANISHED.to_string())
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// alice moves ~/a, holding her copy, into ~/b, already walked, and makes a new ~/a
    /// between the listing and the open: the name leads to another directory, which counts as
    /// the listed one vanished. The same for a file replaced between listing and look.
    #[test]
    fn given_a_directory_or_file_replaced_after_the_listing_then_the_walk_is_unclean() {
        let dir = scratch("swapped");
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let file = dir.join("a/mycat");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o2755);
        std::fs::write(dir.join("f"), "x").unwrap();
        let mount = mount_at(&dir);
        let root = nix::fcntl::open(&dir, DIRECTORY_FLAGS, Mode::empty()).unwrap();
        let st = fstat(&root).unwrap();
        let listed_a = listed(c"a", ino_of(&dir.join("a")));
        let listed_f = ino_of(&dir.join("f"));
        std::fs::rename(dir.join("a"), dir.join("b/x")).unwrap();
        std::fs::create_dir(dir.join("a")).unwrap();
        std::fs::rename(dir.join("f"), dir.join("b/f")).unwrap();
        std::fs::write(dir.join("f"), "y").unwrap();
        let frames = vec![Frame {
            name: mount.mount_point.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
            renamable: Renamable::Any,
            counts: true,
            subdirs: vec![listed_a],
        }];
        let walk = walk_with(&mount, |walker| {
            walker.walk_below(&root, frames);
            let frames = [Frame {
                name: mount.mount_point.clone(),
                dev: st.st_dev,
                ino: st.st_ino,
                renamable: Renamable::Any,
                counts: true,
                subdirs: Vec::new(),
            }];
            let look = walker.look_at(&root, Renamable::Any, c"f", listed_f, &frames, &[]);
            assert_eq!(look, None);
        });
        let failures = failures_of(&walk);
        let quoted = |name: &str| format!("\"{}/{name}\"", dir.display());
        assert_eq!(
            failures,
            [
                (quoted("a"), VANISHED.to_string()),
                (quoted("f"), VANISHED.to_string())
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A subdirectory on another mount is not entered: one mountinfo names is skipped (without
    /// opening it where no target may write the parent), one made since counts as vanished.
    #[test]
    fn given_a_subdirectory_on_another_mount_then_it_is_not_entered() {
        let dir = scratch("mounts");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("sub/mycat");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o2755);
        let here = mount_at(&dir);
        let root = nix::fcntl::open(&dir, DIRECTORY_FLAGS, Mode::empty()).unwrap();
        let st = fstat(&root).unwrap();
        let mut nfs = here.clone();
        nfs.id = here.id + 1_000_000;
        nfs.mount_point = dir.join("sub").as_os_str().as_bytes().to_vec();
        let targets: HashSet<Target> = [me()].into();
        let walk_as = |walking: u32, mounts: &[Mount], renamable: Renamable| {
            let mut walker = Walker {
                targets: &targets,
                walking,
                mounts,
                vanished: 0,
                walk: Walk::default(),
            };
            let frames = vec![Frame {
                name: here.mount_point.clone(),
                dev: st.st_dev,
                ino: st.st_ino,
                renamable,
                counts: true,
                subdirs: vec![listed(c"sub", ino_of(&dir.join("sub")))],
            }];
            walker.walk_below(&root, frames);
            walker.walk
        };
        // sub is where mountinfo says another mount is, in a directory no target may write.
        let skipped = walk_as(here.id, &[here.clone(), nfs.clone()], Renamable::No);
        assert_eq!((skipped.cleared, skipped.failures), (vec![], vec![]));
        // sub is on a mount mountinfo names (walked on its own), or on one made since.
        let other = here.id + 1_000_000;
        let known = walk_as(other, std::slice::from_ref(&here), Renamable::Any);
        assert_eq!((known.cleared, known.failures), (vec![], vec![]));
        let made_since = walk_as(other, &[], Renamable::Any);
        assert_eq!(made_since.cleared, []);
        let quoted = format!("\"{}/sub\"", dir.display());
        assert_eq!(failures_of(&made_since), [(quoted, VANISHED.to_string())]);
        assert_eq!(mode_of(&file), 0o2755);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Beyond [`MAX_VANISHED_LISTED`], entries that vanished are counted, not listed.
    #[test]
    fn given_many_entries_vanishing_then_the_first_are_listed_and_the_rest_counted() {
        let dir = scratch("churn");
        let mount = mount_at(&dir);
        let root = nix::fcntl::open(&dir, DIRECTORY_FLAGS, Mode::empty()).unwrap();
        let st = fstat(&root).unwrap();
        let names: Vec<CString> = (0..40)
            .map(|i| CString::new(format!("gone{i}")).unwrap())
            .collect();
        let frames = vec![Frame {
            name: mount.mount_point.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
            renamable: Renamable::Any,
            counts: true,
            subdirs: names.iter().map(|n| listed(n, 1)).collect(),
        }];
        let walk = walk_with(&mount, |walker| {
            walker.walk_below(&root, frames);
            walker.count_unlisted(&mount.mount_point, 0);
        });
        assert_eq!(walk.failures.len(), MAX_VANISHED_LISTED + 1);
        let summary = (
            format!("\"{}\"", dir.display()),
            format!("8 more entries below it {VANISHED}"),
        );
        assert_eq!(failures_of(&walk).last(), Some(&summary));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn given_directory_modes_then_only_those_a_target_may_write_count_entries_that_vanish() {
        let mut st = fstat(nix::fcntl::open("/", DIRECTORY_FLAGS, Mode::empty()).unwrap()).unwrap();
        let targets: HashSet<Target> = [Target { uid: 1000, gid: 27 }].into();
        let walker = Walker {
            targets: &targets,
            walking: 0,
            mounts: &[],
            vanished: 0,
            walk: Walk::default(),
        };
        let renamable = |st: &FileStat| walker.renamable(st);
        st.st_uid = 0;
        st.st_mode = 0o40755;
        assert_eq!(renamable(&st), Renamable::No, "root's 0755 directory");
        st.st_mode = 0o41777;
        assert_eq!(renamable(&st), Renamable::TargetsOwn, "/tmp");
        st.st_mode = 0o42775;
        let group = "a group's (or an ACL's) writable directory";
        assert_eq!(renamable(&st), Renamable::Any, "{group}");
        st.st_mode = 0o41700;
        st.st_uid = 1000;
        assert_eq!(
            renamable(&st),
            Renamable::Any,
            "the target's own, sticky or not"
        );
    }

    /// A directory moved elsewhere while its subtree was walked: `..` no longer leads back,
    /// which is recorded, and the walk reaches the rest of the parent again from the root.
    #[test]
    fn given_a_directory_moved_while_walked_then_recorded_and_the_rest_is_still_walked() {
        let dir = scratch("moved");
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let file = dir.join("b/mycat");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o2755);
        let mount = mount_at(&dir);
        let root = nix::fcntl::open(&dir, DIRECTORY_FLAGS, Mode::empty()).unwrap();
        let st = fstat(&root).unwrap();
        // As if the walk were in "a" (its descriptor is the root's here, whose `..` is not
        // the root), with "b" still to walk.
        let frames = |a_counts| {
            vec![
                Frame {
                    name: mount.mount_point.clone(),
                    dev: st.st_dev,
                    ino: st.st_ino,
                    renamable: Renamable::Any,
                    counts: true,
                    subdirs: vec![listed(c"b", ino_of(&dir.join("b")))],
                },
                Frame {
                    name: b"a".to_vec(),
                    dev: st.st_dev,
                    ino: st.st_ino,
                    renamable: Renamable::Any,
                    counts: a_counts,
                    subdirs: Vec::new(),
                },
            ]
        };
        // Someone else's directory in /tmp: its going is none of a target's doing.
        let walk = walk_with(&mount, |walker| walker.walk_below(&root, frames(false)));
        assert_eq!(walk.failures, []);
        assert_eq!(walk.cleared.len(), 1, "{walk:?}");
        chmod(&file, 0o2755);
        let walk = walk_with(&mount, |walker| walker.walk_below(&root, frames(true)));
        let failures = failures_of(&walk);
        assert_eq!(
            failures,
            [(format!("\"{}/a\"", dir.display()), VANISHED.to_string())]
        );
        assert_eq!(walk.cleared.len(), 1, "{walk:?}");
        assert_eq!(mode_of(&file), 0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A mount point reached through a symbolic link, or a path that leads to another mount
    /// than mountinfo said, is not walked.
    #[test]
    fn given_a_mount_point_that_is_a_symlink_or_another_mount_then_it_is_not_walked() {
        let dir = scratch("symlinked");
        std::fs::create_dir_all(dir.join("real")).unwrap();
        let file = dir.join("real/mycat");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o2755);
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        let mut mount = mount_at(&dir.join("real"));
        mount.mount_point = dir.join("link/").as_os_str().as_bytes().to_vec();
        let through_link = walk(&mount);
        assert_eq!(through_link.cleared, []);
        assert_eq!(through_link.failures.len(), 1, "{through_link:?}");

        let mut other = mount_at(&dir.join("real"));
        other.id += 1_000_000;
        let other_mount = walk(&other);
        assert_eq!(other_mount.cleared, []);
        assert!(
            other_mount.failures[0].error.contains("not mount"),
            "{other_mount:?}"
        );
        assert_eq!(mode_of(&file), 0o2755);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
