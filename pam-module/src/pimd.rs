//! Asking pimd: may this user use the managed groups they hold? One question on pimd's own
//! root-only socket [`pim_common::pam_socket::PAM_SOCKET`], bounded as a whole by the
//! module's `timeout=`.
//!
//! The path is fixed: no environment variable or argument can point the module elsewhere
//! (sudo runs PAM with the invoking user's environment). The bus is not involved: no
//! dbus-daemon round trips, and sudo works for holders of a live grant while the bus restarts.
//!
//! No threads, no runtime: one blocking socket per call, closed before returning. The module
//! connects, checks that the listener is root's (`SO_PEERCRED` of the listening process: under
//! systemd or not, pimd runs as root), writes one request carrying a fresh random id, and
//! reads one reply, taken only if it carries the same id (see [`pim_common::pam_socket`] for
//! the framing). One deadline bounds everything: the connect (through `SO_SNDTIMEO`, which a
//! blocking connect on a Unix socket honours when the backlog is full), the write and each
//! read. While nothing listens, the connect is tried again until the deadline, so that a
//! holder's sudo during pimd's restart (200 ms after a crash under systemd) waits for the new
//! pimd; at the deadline pimd is absent (which `fail=open` lets through), not late.
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::sys::time::TimeVal;
use pim_common::pam_socket::{self, Answer, HEADER_BYTES};
use pim_common::types::AccessDecision;
use pim_common::vantage::VantagePlaces;

/// Why the daemon gave no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonFailure {
    /// Nothing listens: no socket, or a socket nobody accepts on, in a directory only root can
    /// change, seen as the host's init sees the file systems (see [`VantagePlaces`]), until the deadline. The only failure
    /// `fail=open` lets through: no local user can bring it about.
    Absent(String),
    /// The socket was reached but the exchange broke down (a listener that is not root's, a
    /// hang-up).
    Unreachable(String),
    /// No answer within the bound on the whole check.
    Timeout(Duration),
    /// pimd answered with an error, or with something that is not an answer to this question.
    Error(String),
}

impl fmt::Display for DaemonFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonFailure::Absent(why) => write!(f, "pimd is absent: {why}"),
            DaemonFailure::Unreachable(why) => write!(f, "pimd is unreachable: {why}"),
            DaemonFailure::Timeout(after) => {
                write!(f, "pimd did not answer within {}ms", after.as_millis())
            }
            DaemonFailure::Error(why) => write!(f, "pimd answered with an error: {why}"),
        }
    }
}

/// The question the module asks the daemon. `decision` is written against this trait so that it
/// can be tested with a fake.
pub trait Daemon {
    /// May `user`, who holds the managed `groups`, use them now?
    fn check_access(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure>;
}

/// pimd on its PAM socket.
#[derive(Debug, Clone)]
pub struct SocketDaemon {
    socket: PathBuf,
    timeout: Duration,
    /// Where the module looks to tell whether it sees the host as PID 1 does (see
    /// [`Vantage`]).
    places: VantagePlaces,
}

/// How long to wait before connecting again while nothing listens.
const ABSENT_RETRY: Duration = Duration::from_millis(20);
/// Time kept in hand for the last try while nothing listens (a sleep may overshoot).
const RETRY_MARGIN: Duration = Duration::from_millis(10);

impl SocketDaemon {
    /// pimd at its fixed socket, with `timeout` bounding each whole check.
    pub fn system(timeout: Duration) -> Self {
        Self::at(Path::new(pam_socket::PAM_SOCKET), timeout)
    }

    /// pimd at another socket; for tests only (the module always uses [`SocketDaemon::system`]).
    pub fn at(socket: &Path, timeout: Duration) -> Self {
        SocketDaemon {
            socket: socket.to_path_buf(),
            timeout,
            places: VantagePlaces::system(),
        }
    }

    /// The same, looking at `places` to tell where it is; for tests only (a test process may
    /// not be allowed to read PID 1's files, may run in a container, or may want to be
    /// elsewhere).
    pub fn with_vantage_places(mut self, places: VantagePlaces) -> Self {
        self.places = places;
        self
    }

    /// `failure`, unless it says pimd is absent where that cannot be trusted: then pimd is
    /// unreachable (which denies under `fail=open` too).
    fn checked_absence(&self, failure: DaemonFailure) -> DaemonFailure {
        let DaemonFailure::Absent(why) = failure else {
            return failure;
        };
        if let Some(untrusted) = untrusted_directory(&self.socket) {
            return DaemonFailure::Unreachable(format!("{why}, but {untrusted}"));
        }
        if let Some(hidden) = self.places.hidden_from_here(&self.socket) {
            return DaemonFailure::Unreachable(format!(
                "{why}, but {hidden}: pimd may be hidden from here rather than absent"
            ));
        }
        match self.places.look().distrust() {
            None => DaemonFailure::Absent(why),
            Some(distrust) => DaemonFailure::Unreachable(format!(
                "{why}, but {distrust}: pimd may be hidden from here rather than absent"
            )),
        }
    }
}

impl Daemon for SocketDaemon {
    fn check_access(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure> {
        self.exchange(user, groups)
            .map_err(|failure| self.checked_absence(failure))
    }
}

impl SocketDaemon {
    /// A connection to pimd; while nothing listens, tried again until the deadline.
    fn connect_retrying(&self, clock: &Clock) -> Result<UnixStream, DaemonFailure> {
        loop {
            match connect(&self.socket, clock) {
                // Tried again while there is time to; the last try is made with
                // RETRY_MARGIN left, so that it cannot run out of time itself: at the
                // deadline pimd is absent, not late.
                Err(DaemonFailure::Absent(why)) => {
                    let left = clock.remaining().unwrap_or_default();
                    if left <= RETRY_MARGIN {
                        return Err(DaemonFailure::Absent(why));
                    }
                    std::thread::sleep(ABSENT_RETRY.min(left - RETRY_MARGIN));
                    if clock
                        .remaining()
                        .map_or(true, |left| left < RETRY_MARGIN / 2)
                    {
                        return Err(DaemonFailure::Absent(why));
                    }
                }
                connected => return connected,
            }
        }
    }

    /// The whole exchange (see the module's documentation).
    fn exchange(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure> {
        let clock = Clock {
            deadline: Instant::now().checked_add(self.timeout),
            timeout: self.timeout,
        };
        let id = request_id();
        let request = pam_socket::encode_request(id, user, groups)
            .map_err(|e| DaemonFailure::Error(format!("cannot encode the question: {e}")))?;
        // A connection dropped before any reply byte (pimd stopping for a restart) is tried
        // again like a missing pimd, within the deadline; but the end stays closed: after a
        // hang-up, a pimd gone at the deadline is unreachable, not absent.
        let mut hung_up: Option<DaemonFailure> = None;
        let (stream, head) = loop {
            let stream = match self.connect_retrying(&clock) {
                Err(DaemonFailure::Absent(why)) => {
                    return Err(hung_up.unwrap_or(DaemonFailure::Absent(why)))
                }
                connected => connected?,
            };
            // `stream`, and with it the socket, is dropped on every return below.
            send_all(&stream, &request, &clock)?;
            let mut head = [0u8; HEADER_BYTES];
            let mut reading = &stream;
            match read_exact(&mut reading, &mut head, &clock) {
                Err(DaemonFailure::Unreachable(why)) if why == HUNG_UP_BEFORE_ANSWERING => {
                    let left = clock.remaining().unwrap_or_default();
                    if left <= RETRY_MARGIN {
                        return Err(DaemonFailure::Unreachable(why));
                    }
                    hung_up = Some(DaemonFailure::Unreachable(why));
                    std::thread::sleep(ABSENT_RETRY.min(left - RETRY_MARGIN));
                }
                read => {
                    read?;
                    break (stream, head);
                }
            }
        };
        let malformed = |e: pam_socket::FrameError| {
            DaemonFailure::Error(format!("malformed reply from pimd: {e}"))
        };
        let header = pam_socket::parse_reply_header(&head).map_err(malformed)?;
        if header.id != id {
            return Err(DaemonFailure::Error(format!(
                "the reply is for another request (id {:#x}, not {id:#x})",
                header.id
            )));
        }
        let mut body = vec![0u8; header.body_len];
        read_exact(&mut &stream, &mut body, &clock)?;
        match pam_socket::decode_reply(&body).map_err(malformed)? {
            Answer::Allowed => Ok(AccessDecision {
                allowed: true,
                message: String::new(),
            }),
            Answer::Refused(message) => Ok(AccessDecision {
                allowed: false,
                message,
            }),
            Answer::Error(why) => Err(DaemonFailure::Error(bounded(&why))),
        }
    }
}

/// A fresh id for each request: the process's random hash keys (drawn from the kernel's
/// random source), mixed with the pid and the time.
fn request_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

/// Longest error text carried into the log.
const MAX_ERROR_TEXT: usize = 300;

/// `text` bounded in length (the caller escapes it).
fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}...", &text[..end])
    } else {
        text.to_string()
    }
}

/// The deadline of the whole check.
struct Clock {
    /// `None` when the timeout is too large to add to now (then each step gets the whole
    /// timeout; `timeout=` is at most a minute, so this does not happen in the module).
    deadline: Option<Instant>,
    timeout: Duration,
}

impl Clock {
    /// Time left, never zero (a zero socket timeout would mean "wait forever").
    fn remaining(&self) -> Result<Duration, DaemonFailure> {
        let Some(deadline) = self.deadline else {
            return Ok(self.timeout);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.expired())
        } else {
            Ok(left)
        }
    }

    fn expired(&self) -> DaemonFailure {
        DaemonFailure::Timeout(self.timeout)
    }
}

fn connect(path: &Path, clock: &Clock) -> Result<UnixStream, DaemonFailure> {
    let unreachable = |e: Errno| DaemonFailure::Unreachable(format!("{}: {e}", path.display()));
    let address = UnixAddr::new(path).map_err(unreachable)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(unreachable)?;
    loop {
        // A connect blocks while the listener's backlog is full, for at most SO_SNDTIMEO, and
        // then fails with EAGAIN.
        let left = clock.remaining()?;
        let micros = i64::try_from(left.as_micros().max(1)).unwrap_or(i64::MAX);
        let timeval = TimeVal::new(micros / 1_000_000, micros % 1_000_000);
        socket::setsockopt(&fd, socket::sockopt::SendTimeout, &timeval).map_err(unreachable)?;
        match socket::connect(fd.as_raw_fd(), &address) {
            Ok(()) => {
                let peer = socket::getsockopt(&fd, socket::sockopt::PeerCredentials)
                    .map_err(unreachable)?;
                return match untrusted_listener(peer.uid()) {
                    None => Ok(UnixStream::from(fd)),
                    Some(why) => Err(DaemonFailure::Unreachable(format!(
                        "{}: {why}",
                        path.display()
                    ))),
                };
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(clock.expired()),
            // Nothing there, or a socket nobody accepts on (pimd is gone): absent. A refused
            // connect on anything but a socket is not pimd's doing.
            Err(e @ Errno::ENOENT) => return Err(absent(path, e)),
            Err(e @ Errno::ECONNREFUSED) if is_socket(path) => return Err(absent(path, e)),
            Err(e) => return Err(unreachable(e)),
        }
    }
}

/// Why a listener running as `uid` is not pimd, or `None` when it may be: pimd runs as root.
/// Whatever answers at the socket path in the caller's mount namespace is what the module
/// trusts, and a sandbox a user starts could put something of theirs there.
fn untrusted_listener(uid: u32) -> Option<String> {
    (uid != 0).then(|| format!("the listener runs as uid {uid}, not root: it is not pimd"))
}

/// Why the directory of `socket` (or, while it does not exist, its parent) could be changed by
/// someone other than root, so that a missing or dead socket there proves nothing; `None`
/// when only root can.
fn untrusted_directory(socket: &Path) -> Option<String> {
    let mut dir = socket.parent()?;
    loop {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.uid() != 0 || m.mode() & 0o022 != 0 => {
                return Some(format!(
                    "{} is not root's alone (owner uid {}, mode {:o})",
                    dir.display(),
                    m.uid(),
                    m.mode() & 0o7777
                ))
            }
            Ok(_) => return None,
            Err(e) if e.kind() == ErrorKind::NotFound => dir = dir.parent()?,
            Err(e) => return Some(format!("{} cannot be read: {e}", dir.display())),
        }
    }
}

fn absent(path: &Path, e: Errno) -> DaemonFailure {
    DaemonFailure::Absent(format!("{}: {e}", path.display()))
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Writes all of `bytes` with MSG_NOSIGNAL: a pimd that hung up must not SIGPIPE the host.
fn send_all(stream: &UnixStream, bytes: &[u8], clock: &Clock) -> Result<(), DaemonFailure> {
    let mut sent = 0;
    while sent < bytes.len() {
        stream
            .set_write_timeout(Some(clock.remaining()?))
            .map_err(|e| DaemonFailure::Unreachable(format!("pimd's socket: {e}")))?;
        match socket::send(stream.as_raw_fd(), &bytes[sent..], MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(DaemonFailure::Unreachable("pimd accepted no bytes".into())),
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(clock.expired()),
            // pimd closed before reading the request (a stop, a restart): nothing was
            // answered, so this is the hang-up that is tried again within the timeout.
            Err(Errno::EPIPE | Errno::ECONNRESET) => {
                return Err(DaemonFailure::Unreachable(HUNG_UP_BEFORE_ANSWERING.into()))
            }
            Err(e) => {
                return Err(DaemonFailure::Unreachable(format!(
                    "cannot write to pimd: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// What [`read_exact`] says when pimd hung up before sending anything.
const HUNG_UP_BEFORE_ANSWERING: &str = "pimd closed the connection before answering";

/// Fills `buf` from the socket under the deadline.
fn read_exact(
    stream: &mut &UnixStream,
    buf: &mut [u8],
    clock: &Clock,
) -> Result<(), DaemonFailure> {
    let mut filled = 0;
    while filled < buf.len() {
        stream
            .set_read_timeout(Some(clock.remaining()?))
            .map_err(|e| DaemonFailure::Unreachable(format!("pimd's socket: {e}")))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => {
                return Err(DaemonFailure::Unreachable(HUNG_UP_BEFORE_ANSWERING.into()))
            }
            Ok(0) => {
                return Err(DaemonFailure::Unreachable(
                    "pimd closed the connection in the middle of its answer".into(),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A pimd stopping with the request unread resets the connection.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && filled == 0 => {
                return Err(DaemonFailure::Unreachable(HUNG_UP_BEFORE_ANSWERING.into()))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(clock.expired())
            }
            Err(e) => {
                return Err(DaemonFailure::Unreachable(format!(
                    "cannot read from pimd: {e}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    /// Places that make this test process look like the host's init: its own PID namespace
    /// taken for the initial one, its own mount namespace and root for PID 1's (a test may not
    /// read PID 1's files, and may run in a container).
    fn as_init() -> VantagePlaces {
        let own = VantagePlaces::system();
        let pid_namespace = std::fs::metadata(&own.pid_namespace).unwrap().ino();
        VantagePlaces {
            initial_pid_namespace: pid_namespace,
            init_mount_namespace: own.mount_namespace.clone(),
            init_root: own.root.clone(),
            ..own
        }
    }

    /// The daemon at `socket`, seen as from the host's init (see [`as_init`]).
    fn pimd_at(socket: &Path, timeout: Duration) -> SocketDaemon {
        SocketDaemon::at(socket, timeout).with_vantage_places(as_init())
    }

    fn temp_socket(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pam-pim-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("pam.socket"), dir)
    }

    /// Reads the module's request on a fresh connection.
    fn read_request(stream: &mut UnixStream) -> pam_socket::Request {
        let mut head = [0u8; HEADER_BYTES];
        stream.read_exact(&mut head).unwrap();
        let header = pam_socket::parse_request_header(&head).unwrap();
        let mut body = vec![0u8; header.body_len];
        stream.read_exact(&mut body).unwrap();
        pam_socket::decode_request(header.id, &body).unwrap()
    }

    /// A pimd at a temporary socket whose one connection is handled by `serve`.
    struct FakePimd {
        socket: PathBuf,
        dir: PathBuf,
        server: JoinHandle<()>,
    }

    impl FakePimd {
        fn start(name: &str, serve: impl FnOnce(UnixStream) + Send + 'static) -> Self {
            let (socket, dir) = temp_socket(name);
            let listener = UnixListener::bind(&socket).unwrap();
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                serve(stream);
            });
            FakePimd {
                socket,
                dir,
                server,
            }
        }

        /// A pimd that reads the request and answers `answer` to the id `id_of` gives.
        fn answering(name: &str, id_of: fn(u64) -> u64, answer: Answer) -> Self {
            Self::start(name, move |mut stream| {
                let request = read_request(&mut stream);
                let reply = pam_socket::encode_reply(id_of(request.id), &answer);
                stream.write_all(&reply).unwrap();
            })
        }

        fn check(self, timeout: Duration) -> Result<AccessDecision, DaemonFailure> {
            let result = pimd_at(&self.socket, timeout).check_access("alice", &["sudo".into()]);
            self.server.join().unwrap();
            std::fs::remove_dir_all(&self.dir).unwrap();
            result
        }
    }

    fn same(id: u64) -> u64 {
        id
    }

    #[test]
    fn given_the_question_then_the_request_names_the_user_and_groups() {
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let pimd = FakePimd::start("request", move |mut stream| {
            let request = read_request(&mut stream);
            stream
                .write_all(&pam_socket::encode_reply(request.id, &Answer::Allowed))
                .unwrap();
            seen_tx.send(request).unwrap();
        });
        let result = pimd_at(&pimd.socket, Duration::from_secs(5))
            .check_access("alice", &["sudo".into(), "wheel".into()]);
        pimd.server.join().unwrap();
        std::fs::remove_dir_all(&pimd.dir).unwrap();
        assert_eq!(result.map(|d| d.allowed), Ok(true));
        let request = seen_rx.recv().unwrap();
        assert_eq!(request.user, "alice");
        assert_eq!(request.groups, ["sudo", "wheel"]);
    }

    #[test]
    fn given_each_answer_then_it_decides() {
        let refused = FakePimd::answering("refused", same, Answer::Refused("pim: no".into()))
            .check(Duration::from_secs(5));
        assert_eq!(
            refused,
            Ok(AccessDecision {
                allowed: false,
                message: "pim: no".into()
            })
        );
        let error = FakePimd::answering("error", same, Answer::Error("é".repeat(1000)))
            .check(Duration::from_secs(5));
        assert!(
            matches!(&error, Err(DaemonFailure::Error(why)) if why.len() < 400 && why.ends_with("...")),
            "{error:?}"
        );
    }

    #[test]
    fn given_a_reply_for_another_request_then_it_is_never_accepted() {
        // Allowing, and otherwise well formed: only the id is wrong.
        for (name, id_of) in [
            ("next", (|id: u64| id.wrapping_add(1)) as fn(u64) -> u64),
            ("zero", |_| 0),
            ("flipped", |id| id ^ (1 << 63)),
        ] {
            let result =
                FakePimd::answering(name, id_of, Answer::Allowed).check(Duration::from_secs(5));
            assert!(
                matches!(&result, Err(DaemonFailure::Error(why)) if why.contains("another request")),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn given_two_requests_then_their_ids_differ() {
        assert_ne!(request_id(), request_id());
    }

    #[test]
    fn given_malformed_or_oversized_replies_then_errors() {
        let garbage = FakePimd::start("garbage", |mut stream| {
            let request = read_request(&mut stream);
            let mut reply = pam_socket::encode_reply(request.id, &Answer::Allowed);
            reply[0] = b'?';
            stream.write_all(&reply).unwrap();
        });
        let result = garbage.check(Duration::from_secs(5));
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
        let huge = FakePimd::start("huge", |mut stream| {
            let request = read_request(&mut stream);
            let mut reply = pam_socket::encode_reply(request.id, &Answer::Allowed);
            reply[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
            stream.write_all(&reply).unwrap();
        });
        let result = huge.check(Duration::from_secs(5));
        assert!(
            matches!(&result, Err(DaemonFailure::Error(why)) if why.contains("longer")),
            "{result:?}"
        );
    }

    #[test]
    fn given_the_answer_in_single_bytes_then_it_is_reassembled() {
        let pimd = FakePimd::start("trickle", |mut stream| {
            let request = read_request(&mut stream);
            let reply = pam_socket::encode_reply(request.id, &Answer::Refused("x".into()));
            for byte in reply {
                stream.write_all(&[byte]).unwrap();
                stream.flush().unwrap();
            }
        });
        assert_eq!(
            pimd.check(Duration::from_secs(5)).map(|d| d.message),
            Ok("x".into())
        );
    }

    #[test]
    fn given_another_vantage_than_pid_1s_then_a_missing_socket_is_unreachable() {
        // A set-uid sandbox that hides /run/pim in a mount namespace of the user's, with a PID
        // namespace and a /proc of its own, or a chroot: the module cannot tell "absent" from
        // "hidden", so fail=open must not apply.
        let (socket, dir) = temp_socket("elsewhere");
        let not_a_socket = dir.join("file");
        std::fs::write(&not_a_socket, b"").unwrap();
        let init = as_init();
        let elsewhere = [
            VantagePlaces {
                init_mount_namespace: "/proc/self/ns/net".into(),
                ..init.clone()
            },
            VantagePlaces {
                init_mount_namespace: "/nonexistent/ns/mnt".into(),
                ..init.clone()
            },
            VantagePlaces {
                initial_pid_namespace: init.initial_pid_namespace ^ 1,
                ..init.clone()
            },
            VantagePlaces {
                pid_namespace: "/nonexistent/ns/pid".into(),
                ..init.clone()
            },
            VantagePlaces {
                init_root: dir.clone(),
                ..init.clone()
            },
            VantagePlaces {
                proc: dir.clone(),
                ..init.clone()
            },
        ];
        for places in elsewhere {
            for path in [&socket, &not_a_socket] {
                let result = SocketDaemon::at(path, Duration::from_millis(100))
                    .with_vantage_places(places.clone())
                    .check_access("alice", &["sudo".to_string()]);
                assert!(
                    matches!(&result, Err(DaemonFailure::Unreachable(why))
                        if path == &not_a_socket || why.contains("hidden")),
                    "{places:?} {}: {result:?}",
                    path.display()
                );
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_chroot_into_a_bind_mount_of_root_then_a_socket_init_still_sees_is_unreachable() {
        // mount --rbind / X; chroot X with a /run/pim of its own: / has the host's device,
        // inode (and here namespaces); only PID 1's root shows that the socket is still there.
        let (socket, dir) = temp_socket("bind-chroot");
        let init_root = dir.join("init-root");
        let through_init = init_root.join(socket.strip_prefix("/").unwrap());
        std::fs::create_dir_all(through_init.parent().unwrap()).unwrap();
        let places = VantagePlaces {
            init_root: init_root.clone(),
            ..as_init()
        };
        let daemon = SocketDaemon::at(&socket, Duration::from_millis(60));
        let absent = daemon
            .clone()
            .with_vantage_places(places.clone())
            .check_access("alice", &["sudo".to_string()]);
        // (init_root stands for PID 1's root here, so the root check also objects; what
        // matters is that only the file seen through it makes "PID 1 sees" the reason.)
        assert!(
            matches!(&absent, Err(DaemonFailure::Unreachable(why)) if !why.contains("PID 1 sees")),
            "{absent:?}"
        );
        let _listener = UnixListener::bind(&through_init).unwrap();
        let result = daemon
            .with_vantage_places(places)
            .check_access("alice", &["sudo".to_string()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why.contains("PID 1 sees")),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_this_process_then_the_places_can_be_read() {
        // Whatever the test runs in, this process's own places are readable and /proc is a
        // procfs.
        let seen = VantagePlaces::system().look();
        assert_eq!(seen.proc_is_procfs, Ok(true));
        assert!(seen.pid_namespace.is_ok(), "{seen:?}");
        assert!(
            seen.mount_namespace.is_ok() && seen.root.is_ok(),
            "{seen:?}"
        );
        assert_eq!(as_init().look().distrust(), None);
    }

    #[test]
    fn given_a_directory_others_may_write_then_a_missing_socket_is_unreachable() {
        use std::os::unix::fs::PermissionsExt;
        let (socket, dir) = temp_socket("writable");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let result = pimd_at(&socket, Duration::from_millis(100)).check_access("a", &["g".into()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why.contains("not root's alone")),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_refused_connect_on_something_that_is_not_a_socket_then_unreachable() {
        let (_, dir) = temp_socket("file");
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let result = pimd_at(&file, Duration::from_secs(5)).check_access("alice", &["sudo".into()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why.contains("ECONNREFUSED")),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_no_socket_until_the_deadline_then_absent() {
        let (socket, dir) = temp_socket("absent");
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let result = pimd_at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Absent(why)) if why.contains("ENOENT")),
            "{result:?}"
        );
        assert!(started.elapsed() < timeout + Duration::from_millis(700));
        drop(UnixListener::bind(&socket).unwrap());
        let result = pimd_at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Absent(why)) if why.contains("ECONNREFUSED")),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_pimd_coming_back_within_the_timeout_then_its_answer_is_waited_for() {
        let (socket, dir) = temp_socket("restart");
        let path = socket.clone();
        let restarted = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let listener = UnixListener::bind(&path).unwrap();
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(&mut stream);
            stream
                .write_all(&pam_socket::encode_reply(request.id, &Answer::Allowed))
                .unwrap();
        });
        let result = pimd_at(&socket, Duration::from_secs(5)).check_access("alice", &["g".into()]);
        restarted.join().unwrap();
        assert_eq!(result.map(|d| d.allowed), Ok(true));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn assert_bounded(
        result: Result<AccessDecision, DaemonFailure>,
        timeout: Duration,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        assert_eq!(result, Err(DaemonFailure::Timeout(timeout)));
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_millis(700),
            "{elapsed:?}"
        );
    }

    #[test]
    fn given_a_pimd_that_never_answers_then_timeout_bounds_the_whole_check() {
        let (socket, dir) = temp_socket("silent");
        // Accepts connections (the kernel does, into the backlog) and never says a word.
        let listener = UnixListener::bind(&socket).unwrap();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = pimd_at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        assert_bounded(result, timeout, started);
        drop(listener);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_pimd_that_stalls_mid_answer_then_timeout() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let pimd = FakePimd::start("stall", move |mut stream| {
            let request = read_request(&mut stream);
            let reply = pam_socket::encode_reply(request.id, &Answer::Allowed);
            stream.write_all(&reply[..reply.len() - 1]).unwrap();
            let _ = stop_rx.recv();
        });
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = pimd_at(&pimd.socket, timeout).check_access("alice", &["sudo".into()]);
        assert_bounded(result, timeout, started);
        drop(stop_tx);
        pimd.server.join().unwrap();
        std::fs::remove_dir_all(&pimd.dir).unwrap();
    }

    #[test]
    fn given_a_full_backlog_then_timeout_bounds_the_connect() {
        let (socket, dir) = temp_socket("backlog");
        // A listener with a backlog of 0 takes one pending connection, never accepted; the
        // next connect blocks in the kernel.
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::bind(listener.as_raw_fd(), &UnixAddr::new(&socket).unwrap()).unwrap();
        socket::listen(&listener, socket::Backlog::new(0).unwrap()).unwrap();
        let mut pending = Vec::new();
        // Fill the backlog with nonblocking connects until the kernel says it is full.
        loop {
            let fd = socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            match socket::connect(fd.as_raw_fd(), &UnixAddr::new(&socket).unwrap()) {
                Ok(()) => pending.push(fd),
                Err(Errno::EAGAIN) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(pending.len() < 1000);
        }
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = pimd_at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        assert_bounded(result, timeout, started);
        drop(pending);
        drop(listener);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_pimd_that_hangs_up_then_unreachable() {
        // Tried again until the deadline (the socket stays, nobody accepts), and still closed:
        // unreachable, not absent.
        let result = FakePimd::start("hangup", drop).check(Duration::from_millis(300));
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why == HUNG_UP_BEFORE_ANSWERING),
            "{result:?}"
        );
    }

    #[test]
    fn given_a_restart_that_drops_the_connection_before_answering_then_the_new_pimd_is_asked() {
        let (socket, dir) = temp_socket("restart-drop");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            drop(listener.accept().unwrap());
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(&mut stream);
            stream
                .write_all(&pam_socket::encode_reply(request.id, &Answer::Allowed))
                .unwrap();
        });
        let result =
            pimd_at(&socket, Duration::from_secs(5)).check_access("alice", &["sudo".into()]);
        server.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(result.map(|d| d.allowed), Ok(true));
    }

    #[test]
    fn given_a_pimd_that_hangs_up_mid_answer_then_unreachable_at_once() {
        let result = FakePimd::start("hangup-mid", |mut stream| {
            let _ = read_request(&mut stream);
            stream.write_all(&[0u8; 3]).unwrap();
        })
        .check(Duration::from_secs(5));
        assert!(
            matches!(result, Err(DaemonFailure::Unreachable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn given_a_listener_that_is_not_roots_then_it_is_not_pimd() {
        assert!(untrusted_listener(0).is_none());
        assert!(untrusted_listener(1000).is_some_and(|why| why.contains("uid 1000")));
    }

    #[test]
    fn given_the_system_daemon_then_the_fixed_socket_is_used() {
        let daemon = SocketDaemon::system(Duration::from_secs(2));
        assert_eq!(daemon.socket, Path::new("/run/pim/pam.socket"));
    }

    #[test]
    fn given_a_user_name_with_nul_then_error_without_connecting() {
        let (socket, dir) = temp_socket("nul");
        let result =
            pimd_at(&socket, Duration::from_secs(1)).check_access("al\0ice", &["sudo".into()]);
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
