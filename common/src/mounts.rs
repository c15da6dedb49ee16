//! Which file systems pimd's set-group-ID sweep never walks, though users may write there:
//! pimd audits each such mount that allows set-ID bits, and `pim doctor` names them.

/// Network file systems (root may not be root on the server, and a walk could take hours),
/// FUSE (a user's own process answers for it) and ramfs (not reported by the kernel like the
/// rest; walked by nobody). Only `nosuid` on these mounts makes a set-group-ID copy there
/// useless.
const UNSEARCHED_TYPES: &[&str] = &[
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

/// Whether the sweep never walks a file system of this type (see [`UNSEARCHED_TYPES`]).
pub fn never_swept(fs_type: &str) -> bool {
    UNSEARCHED_TYPES.contains(&fs_type) || fs_type.starts_with("fuse.")
}

/// The hidepid= option of the /proc mount in a
/// /proc/self/mountinfo, if it hides processes: with it, pimd sees only the processes it may
/// ptrace, so it could not find the user's.
pub fn proc_hidepid(mountinfo: &str) -> Option<String> {
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if left.split_whitespace().nth(4) != Some("/proc") {
            continue;
        }
        let mut fields = right.split_whitespace();
        if fields.next() != Some("proc") {
            continue;
        }
        let options = fields.nth(1).unwrap_or_default();
        if let Some(value) = options.split(',').find_map(|o| o.strip_prefix("hidepid=")) {
            if !matches!(value, "0" | "off") {
                return Some(format!("hidepid={value}"));
            }
        }
    }
    None
}
