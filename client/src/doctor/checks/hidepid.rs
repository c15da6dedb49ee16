//! Can pimd see every user's processes? With /proc mounted `hidepid`, a root process without
//! CAP_SYS_PTRACE sees only its own, and pimd could not end those that carry a group at a
//! grant's end (it then fails every ending rather than report none left).

use crate::doctor::findings::Finding;

pub fn check_hidepid(mountinfo: &str) -> Finding {
    const CHECK: &str = "hidepid";
    if mountinfo.is_empty() {
        return Finding::skip(CHECK, "cannot read /proc/self/mountinfo");
    }
    match pim_common::mounts::proc_hidepid(mountinfo) {
        None => Finding::pass(CHECK, "/proc shows every process (no hidepid)"),
        Some(option) => Finding::warn(
            CHECK,
            format!(
                "/proc is mounted with {option}: pimd (without CAP_SYS_PTRACE) cannot see other \
                 users' processes, so the processes that carry a group at a grant's end are \
                 not ended (each ending fails and is tried again)"
            ),
            "mount /proc without hidepid, or give pimd CAP_SYS_PTRACE in a drop-in",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_proc_with_hidepid_then_doctor_warns() {
        let hidden = "22 28 0:5 / /proc rw - proc proc rw,hidepid=invisible\n";
        let plain = "22 28 0:5 / /proc rw - proc proc rw\n";
        assert!(format!("{:?}", check_hidepid(hidden)).contains("hidepid=invisible"));
        assert!(!format!("{:?}", check_hidepid(plain)).contains("hidepid="));
    }
}
