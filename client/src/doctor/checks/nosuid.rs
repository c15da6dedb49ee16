//! Are the places users can write mounted `nosuid`, and are no set-ID files left where pimd
//! never sweeps?

use crate::doctor::findings::Finding;
use crate::doctor::list;
use pim_common::text::escape;
use std::path::Path;

/// Places every user can write on a usual host.
const USER_WRITABLE: [&str; 4] = ["/home", "/tmp", "/var/tmp", "/dev/shm"];

/// A mount point as mountinfo writes it: the kernel escapes space, tab, newline and backslash.
fn mount_point_field(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Warns about places a non-root user can write that are on mounts without `nosuid`: a copy
/// of a program made set-group-ID there during a grant works for anyone who runs it. pimd
/// clears such files when the grant ends, but its walks can be outrun (a user with a process
/// outside the group and a descriptor kept open can link a copy back later) and it never
/// walks network, FUSE or ramfs file systems; `nosuid` makes such files useless from the
/// start. `world_writable` says whether a mount point is a directory everyone may write.
pub fn check_nosuid(mountinfo: &str, world_writable: &dyn Fn(&str) -> bool) -> Finding {
    const CHECK: &str = "nosuid";
    // (mount point, nosuid, file system type) of each mount, in mount order.
    let mounts: Vec<(String, bool, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let options = fields.get(5)?;
            Some((
                mount_point_field(fields.get(4)?),
                options.split(',').any(|o| o == "nosuid"),
                right.split(' ').next()?.to_string(),
            ))
        })
        .collect();
    if mounts.is_empty() {
        return Finding::skip(CHECK, "cannot read /proc/self/mountinfo");
    }
    let holding = |path: &str| {
        // The deepest mount point above the path; of several there, the last one mounted.
        mounts
            .iter()
            .filter(|(point, _, _)| {
                point == "/"
                    || path == point
                    || path
                        .strip_prefix(point.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(point, _, _)| point.len())
            .cloned()
    };
    let mut places: Vec<String> = USER_WRITABLE
        .iter()
        .filter(|p| Path::new(p).is_dir())
        .map(|p| p.to_string())
        .collect();
    for (point, _, _) in &mounts {
        if !places.contains(point) && world_writable(point) {
            places.push(point.clone());
        }
    }
    let open: Vec<String> = places
        .iter()
        .filter_map(|place| match holding(place) {
            Some((point, false, _)) if &point == place => Some(escape(place)),
            Some((point, false, _)) => Some(format!("{} (on {})", escape(place), escape(&point))),
            _ => None,
        })
        .collect();
    let not_swept: Vec<String> = mounts
        .iter()
        .filter(|(_, nosuid, fs_type)| !nosuid && pim_common::mounts::never_swept(fs_type))
        .map(|(point, _, fs_type)| format!("{} ({})", escape(point), escape(fs_type)))
        .collect();
    if open.is_empty() && not_swept.is_empty() {
        return Finding::pass(
            CHECK,
            format!(
                "places users can write are mounted nosuid: {}",
                list(&places)
            ),
        );
    }
    let mut problems = Vec::new();
    if !open.is_empty() {
        problems.push(format!(
            "users can write in {}, mounted without nosuid: a program a user makes \
             set-group-ID there during a grant keeps the group for whoever runs it until pimd \
             clears the bit at the grant's end, and a user who keeps a process outside the \
             group with the file open can bring one back after pimd's walks",
            open.join(", ")
        ));
    }
    if !not_swept.is_empty() {
        problems.push(format!(
            "{} allow set-ID bits, and pimd never walks such file systems: set-group-ID \
             files there are not swept at a grant's end",
            not_swept.join(", ")
        ));
    }
    Finding::warn(
        CHECK,
        problems.join("; "),
        "mount them with nosuid, the only real closure (their options in /etc/fstab, or a \
         tmpfs /tmp and /var/tmp with nosuid); a place on the root file system needs a mount \
         of its own",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;

    #[test]
    fn given_user_writable_places_without_nosuid_then_a_warning_names_them() {
        let mountinfo = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:27 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw
31 27 0:28 / /home rw,relatime - tmpfs tmpfs rw
32 27 0:29 / /srv/drop\\040box rw,relatime - tmpfs tmpfs rw
33 27 0:30 / /srv/safe rw,nosuid - tmpfs tmpfs rw
";
        let everyone = |p: &str| p == "/srv/drop box" || p == "/srv/safe";
        let finding = check_nosuid(mountinfo, &everyone);
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        let message = &finding.message;
        assert!(message.contains("/srv/drop box"), "{message}");
        assert!(!message.contains("/srv/safe"), "{message}");
        assert!(!message.contains("/dev/shm"), "{message}");
        if Path::new("/home").is_dir() {
            assert!(
                message.contains("/home,") || message.contains("/home "),
                "{message}"
            );
        }
        if Path::new("/tmp").is_dir() {
            assert!(message.contains("/tmp (on /)"), "{message}");
        }
    }

    #[test]
    fn given_network_or_fuse_mounts_without_nosuid_then_the_warning_says_they_are_not_swept() {
        let mountinfo = "\
27 1 254:0 / / rw,nosuid - ext4 /dev/vda rw
36 27 0:41 / /net rw - nfs4 server:/ rw
37 27 0:42 / /mnt/fs rw - fuse.sshfs alice@host: rw
38 27 0:43 / /mnt/safe rw,nosuid - cifs //server/share rw
";
        let finding = check_nosuid(mountinfo, &|_| false);
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        let message = &finding.message;
        assert!(
            message.contains("/net (nfs4), /mnt/fs (fuse.sshfs) allow set-ID bits")
                && message.contains("not swept"),
            "{message}"
        );
        assert!(!message.contains("/mnt/safe"), "{message}");
        assert!(
            finding
                .fix
                .as_deref()
                .unwrap_or("")
                .contains("only real closure"),
            "{finding:?}"
        );
    }

    #[test]
    fn given_every_user_writable_place_nosuid_then_the_check_passes() {
        let mountinfo = "27 1 254:0 / / rw,nosuid - ext4 /dev/vda rw\n";
        let finding = check_nosuid(mountinfo, &|_| false);
        assert_eq!(finding.status, Status::Pass, "{finding:?}");
        assert_eq!(check_nosuid("", &|_| false).status, Status::Skip);
    }
}
