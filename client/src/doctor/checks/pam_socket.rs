//! The `pam-socket` check: pimd's socket for pam_pim.so, `/run/pim/pam.socket`, is root's
//! alone (a socket of mode 0600 or stricter in a directory of mode 0700), root listens on it
//! and answers a real question in the module's framing; and what the module does while pimd is
//! away, by the `fail=` of its line and, for `fail=open`, whether this host is one where the
//! module believes pimd absent (see [`pim_common::vantage`]).

use crate::doctor::findings::Finding;
use crate::doctor::show;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::time::TimeVal;
use pim_common::pam_socket::{self, HEADER_BYTES};
use pim_common::vantage::VantagePlaces;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const CHECK: &str = "pam-socket";

/// How long the exchange with pimd may take, connect included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// The id of doctor's question (any: the reply must carry it back).
const QUESTION_ID: u64 = 0x0d0c_7012;

/// What the module's line says about an absent pimd, and whether the module would believe
/// pimd absent from where `pim doctor` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOpen {
    /// `fail=closed` (the default): holders are refused while pimd is away.
    No,
    /// `fail=open`, and the module would believe pimd absent here.
    Trusted,
    /// `fail=open`, but the module would not believe pimd absent here (why): it behaves as
    /// `fail=closed`.
    Distrusted(String),
}

impl FailOpen {
    /// This host's: the `fail=` of pam_pim's lines in sudo's stacks under `pam_dir`, and this
    /// process's vantage.
    pub fn of_host(pam_dir: &Path) -> FailOpen {
        if !crate::doctor::pam::configured_fail_open(pam_dir) {
            return FailOpen::No;
        }
        match VantagePlaces::system().look().distrust() {
            None => FailOpen::Trusted,
            Some(why) => FailOpen::Distrusted(why),
        }
    }

    /// What the module does with holders while pimd is away.
    fn while_away(&self) -> String {
        match self {
            FailOpen::No => {
                "pam_pim.so refuses holders of managed groups (fail=closed)".to_string()
            }
            FailOpen::Trusted => "pam_pim.so leaves holders of managed groups to the rest of \
                 sudo's stack (fail=open): expiry is not enforced for sudo meanwhile"
                .to_string(),
            FailOpen::Distrusted(why) => format!(
                "pam_pim.so refuses holders of managed groups (fail=open does not apply where \
                 {why})"
            ),
        }
    }
}

/// The finding for the socket at `socket` in `dir`; `pimd_running` says whether pimd owns its
/// bus name (without it, a missing socket is expected); `fail` what the module's line says.
pub fn check_pam_socket(dir: &Path, socket: &Path, pimd_running: bool, fail: &FailOpen) -> Finding {
    let restart = "restart pimd, which makes both so: systemctl restart pimd";
    let away = fail.while_away();
    let dir_meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(_) if !pimd_running => {
            return Finding::warn(
                CHECK,
                format!(
                    "{} does not exist: pimd is not running, and {away}",
                    show(dir)
                ),
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
                    "no socket at {}: pimd is not running, and {away}",
                    show(socket)
                ),
                "start it: systemctl start pimd",
            )
        }
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("pimd runs but {} is missing ({e}): {away}", show(socket)),
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
    match exchange(socket, EXCHANGE_TIMEOUT) {
        Ok(answer) => {
            let message = format!(
                "pimd answers on {} (root's, mode {:o}, in a 0700 directory; {answer})",
                show(socket),
                meta.mode() & 0o7777
            );
            match fail {
                FailOpen::Distrusted(why) => Finding::warn(
                    CHECK,
                    format!("{message}; but fail=open does not apply where {why}: while pimd is away, pam_pim.so refuses holders as with fail=closed"),
                    "say fail=closed on pam_pim's line, which is what happens here",
                ),
                _ => Finding::pass(CHECK, message),
            }
        }
        Err(Exchange::NotRoot(uid)) => Finding::fail(
            CHECK,
            format!(
                "the listener on {} runs as uid {uid}, not root: pam_pim.so refuses holders of managed groups",
                show(socket)
            ),
            "find it: ss -xlp; then restart pimd: systemctl restart pimd",
        ),
        Err(Exchange::Failed(e)) => Finding::fail(
            CHECK,
            format!(
                "nothing answers on {} ({e}): pam_pim.so refuses holders of managed groups",
                show(socket)
            ),
            restart,
        ),
    }
}

/// Why the exchange gave no answer.
#[derive(Debug)]
enum Exchange {
    /// The listener is not root's.
    NotRoot(u32),
    Failed(String),
}

/// Asks pimd at `socket`, as the module does but bounded by `timeout` at each step, about
/// root with no groups (a question pimd answers with an error, writing no audit record):
/// what it answered, if the reply is well framed and carries the question's id.
fn exchange(socket: &Path, timeout: Duration) -> Result<String, Exchange> {
    let failed = |e: &dyn std::fmt::Display| Exchange::Failed(e.to_string());
    let address = UnixAddr::new(socket).map_err(|e| failed(&e))?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| failed(&e))?;
    // A blocking connect on a Unix socket waits while the backlog is full, for at most
    // SO_SNDTIMEO.
    let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    let timeval = TimeVal::new(micros / 1_000_000, micros % 1_000_000);
    socket::setsockopt(&fd, sockopt::SendTimeout, &timeval).map_err(|e| failed(&e))?;
    socket::connect(fd.as_raw_fd(), &address).map_err(|e| failed(&e))?;
    let uid = socket::getsockopt(&fd, sockopt::PeerCredentials)
        .map_err(|e| failed(&e))?
        .uid();
    if uid != 0 {
        return Err(Exchange::NotRoot(uid));
    }
    let mut stream = UnixStream::from(fd);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| failed(&e))?;
    let request = pam_socket::encode_request(QUESTION_ID, "root", &[]).map_err(|e| failed(&e))?;
    stream.write_all(&request).map_err(|e| failed(&e))?;
    let mut head = [0u8; HEADER_BYTES];
    stream.read_exact(&mut head).map_err(|e| failed(&e))?;
    let header = pam_socket::parse_reply_header(&head).map_err(|e| failed(&e))?;
    if header.id != QUESTION_ID {
        return Err(Exchange::Failed(format!(
            "the reply is for another request (id {:#x})",
            header.id
        )));
    }
    let mut body = vec![0u8; header.body_len];
    stream.read_exact(&mut body).map_err(|e| failed(&e))?;
    match pam_socket::decode_reply(&body).map_err(|e| failed(&e))? {
        pam_socket::Answer::Allowed => Ok("a question answered: allowed".into()),
        pam_socket::Answer::Refused(_) => Ok("a question answered: refused".into()),
        pam_socket::Answer::Error(_) => {
            Ok("a question without groups answered as malformed".into())
        }
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

    /// A pimd at `socket` that answers every question as pimd answers doctor's (an error
    /// reply), to the id `id_of` gives; until the listener is dropped with the thread.
    fn answering(socket: &Path, id_of: fn(u64) -> u64) -> UnixListener {
        let listener = UnixListener::bind(socket).unwrap();
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        let serving = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            for stream in serving.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = [0u8; HEADER_BYTES];
                if stream.read_exact(&mut head).is_err() {
                    continue;
                }
                let header = pam_socket::parse_request_header(&head).unwrap();
                let mut body = vec![0u8; header.body_len];
                stream.read_exact(&mut body).unwrap();
                let request = pam_socket::decode_request(header.id, &body).unwrap();
                assert!(request.groups.is_empty());
                let answer = pam_socket::Answer::Error("give between 1 and 16 groups".into());
                let _ = stream.write_all(&pam_socket::encode_reply(id_of(header.id), &answer));
            }
        });
        listener
    }

    #[test]
    fn given_the_socket_as_pimd_makes_it_then_pass_and_each_fault_fails() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership by root is part of what is checked
        }
        let closed = FailOpen::No;
        let dir = temp_dir("faults");
        let socket = dir.join("pam.socket");
        assert_eq!(
            check_pam_socket(&dir, &socket, false, &closed).status,
            Status::Warn
        );
        assert_eq!(
            check_pam_socket(&dir, &socket, true, &closed).status,
            Status::Fail
        );
        let listener = answering(&socket, |id| id);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = check_pam_socket(&dir, &socket, true, &closed);
        assert_eq!(ok.status, Status::Pass, "{}", ok.message);
        assert!(ok.message.contains("answers"), "{}", ok.message);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let open = check_pam_socket(&dir, &socket, true, &closed);
        assert!(
            open.status == Status::Fail && open.message.contains("mode 666"),
            "{}",
            open.message
        );
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir_open = check_pam_socket(&dir, &socket, true, &closed);
        assert!(
            dir_open.status == Status::Fail && dir_open.message.contains("mode 755"),
            "{}",
            dir_open.message
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
        // Bound but nobody accepts: the kernel takes the connection into the backlog, and
        // nothing answers within the timeout.
        let silent = UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dead = check_pam_socket(&dir, &socket, true, &closed);
        assert!(
            dead.status == Status::Fail && dead.message.contains("nothing answers"),
            "{}",
            dead.message
        );
        drop(silent);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_reply_for_another_question_then_nothing_answers() {
        let dir = temp_dir("other-id");
        let socket = dir.join("pam.socket");
        let _listener = answering(&socket, |id| id ^ 1);
        let result = exchange(&socket, Duration::from_secs(2));
        assert!(
            matches!(&result, Err(Exchange::Failed(why)) if why.contains("another request")),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_each_fail_mode_then_what_holders_get_while_pimd_is_away_is_said() {
        assert!(FailOpen::No.while_away().contains("refuses holders"));
        assert!(FailOpen::No.while_away().contains("fail=closed"));
        assert!(FailOpen::Trusted.while_away().contains("fail=open"));
        assert!(!FailOpen::Trusted.while_away().contains("refuses"));
        let distrusted = FailOpen::Distrusted("this is a chroot".into()).while_away();
        assert!(
            distrusted.contains("refuses holders") && distrusted.contains("this is a chroot"),
            "{distrusted}"
        );
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = temp_dir("fail-open");
        let socket = dir.join("pam.socket");
        let away = check_pam_socket(&dir, &socket, false, &FailOpen::Trusted);
        assert!(
            away.status == Status::Warn && away.message.contains("fail=open"),
            "{}",
            away.message
        );
        let _listener = answering(&socket, |id| id);
        let here = check_pam_socket(&dir, &socket, true, &FailOpen::Distrusted("x".into()));
        assert!(
            here.status == Status::Warn && here.message.contains("fail=open does not apply"),
            "{}",
            here.message
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
