//! Asking pimd: `CheckAccess(user, groups)` on the system bus, bounded as a whole by the
//! module's `timeout=`.
//!
//! The connection goes to the fixed socket [`pim_common::SYSTEM_BUS_SOCKET`], never to an
//! address from the environment (sudo runs PAM with the invoking user's environment, so
//! `DBUS_SYSTEM_BUS_ADDRESS` would let that user answer for pimd).
//!
//! No threads, no runtime: one blocking socket per call, closed before returning. The whole
//! exchange is one write and one round trip, pipelined as sd-bus and zbus pipeline their
//! handshakes: the NUL byte, `AUTH EXTERNAL` with the effective uid (the one the kernel
//! reports to the bus as the peer's), `BEGIN` without waiting for `OK`, then `Hello` (serial 1)
//! and `CheckAccess` (serial 2) go out in one write. The bus handles a connection's input in
//! order and answers `OK <guid>`, the reply to `Hello`, the `NameAcquired` signal, and then
//! pimd's reply (or its own error) to serial 2. Only a METHOD_RETURN or ERROR for serial 2
//! decides; anything else is skipped (see [`crate::wire`] for the encoding and the checks on
//! what is read). If the bus refuses the authentication it says so instead of `OK`, and the
//! check fails as unreachable: there is no other mechanism to fall back to.
//!
//! One deadline bounds everything: the connect (through `SO_SNDTIMEO`, which a blocking
//! connect on a Unix socket honours when the bus's backlog is full), the write and each read.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::sys::time::TimeVal;
use pim_common::types::AccessDecision;

use crate::wire::{self, Message};

/// Why the daemon gave no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonFailure {
    /// Nothing listens: no bus socket, a socket nobody accepts on, or the bus daemon's own
    /// ServiceUnknown for pimd's name, all seen from PID 1's mount namespace. The only failure
    /// `fail=open` lets through: no local user can bring it about.
    Absent(String),
    /// The bus was reached but the exchange broke down (refused authentication, hang-up).
    Unreachable(String),
    /// No answer within the bound on the whole check.
    Timeout(Duration),
    /// pimd (or the bus) answered with an error.
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

/// pimd on the system bus.
#[derive(Debug, Clone)]
pub struct BusDaemon {
    socket: PathBuf,
    timeout: Duration,
    /// PID 1's mount namespace (see [`BusDaemon::in_init_mount_namespace`]).
    init_mount_namespace: PathBuf,
}

/// The mount namespace of PID 1: the one in which the system bus socket is where it is.
const INIT_MOUNT_NAMESPACE: &str = "/proc/1/ns/mnt";
/// This process's mount namespace.
const OWN_MOUNT_NAMESPACE: &str = "/proc/self/ns/mnt";

impl BusDaemon {
    /// The daemon on the system bus socket, with `timeout` bounding each whole check.
    pub fn system(timeout: Duration) -> Self {
        Self::at(Path::new(pim_common::SYSTEM_BUS_SOCKET), timeout)
    }

    /// A bus at another socket; for tests only (the module always uses [`BusDaemon::system`]).
    pub fn at(socket: &Path, timeout: Duration) -> Self {
        BusDaemon {
            socket: socket.to_path_buf(),
            timeout,
            init_mount_namespace: PathBuf::from(INIT_MOUNT_NAMESPACE),
        }
    }

    /// The same, taking `namespace` for PID 1's mount namespace; for tests only (a test
    /// process may not be allowed to read PID 1's, or may want to be elsewhere).
    pub fn with_init_mount_namespace(mut self, namespace: &Path) -> Self {
        self.init_mount_namespace = namespace.to_path_buf();
        self
    }

    /// Whether this process sees the mounts PID 1 sees. A missing socket, or a socket nobody
    /// accepts on, means pimd is absent only there: a set-uid sandbox (firejail without
    /// `nonewprivs`, `--blacklist=/run/dbus`) can hide or replace the bus in a mount namespace
    /// of the user's own while sudo still works in it. `Err` says why it cannot tell (reading
    /// PID 1's namespace needs root).
    fn in_init_mount_namespace(&self) -> Result<bool, String> {
        let identity = |path: &Path| {
            std::fs::metadata(path)
                .map(|m| (m.dev(), m.ino()))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        Ok(identity(Path::new(OWN_MOUNT_NAMESPACE))? == identity(&self.init_mount_namespace)?)
    }

    /// `failure`, unless it says pimd is absent where that cannot be trusted: then the bus is
    /// unreachable (which denies under `fail=open` too).
    fn checked_absence(&self, failure: DaemonFailure) -> DaemonFailure {
        let DaemonFailure::Absent(why) = failure else {
            return failure;
        };
        match self.in_init_mount_namespace() {
            Ok(true) => DaemonFailure::Absent(why),
            Ok(false) => DaemonFailure::Unreachable(format!(
                "{why}, seen from a mount namespace other than PID 1's, where the bus may be hidden rather than absent"
            )),
            Err(e) => DaemonFailure::Unreachable(format!(
                "{why}, and whether this is PID 1's mount namespace is unknown ({e})"
            )),
        }
    }
}

impl Daemon for BusDaemon {
    fn check_access(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure> {
        self.exchange(user, groups)
            .map_err(|failure| self.checked_absence(failure))
    }
}

impl BusDaemon {
    /// The whole exchange with the bus (see the module's documentation).
    fn exchange(&self, user: &str, groups: &[String]) -> Result<AccessDecision, DaemonFailure> {
        let clock = Clock {
            deadline: Instant::now().checked_add(self.timeout),
            timeout: self.timeout,
        };
        let request = request(nix::unistd::geteuid().as_raw(), user, groups)
            .map_err(|e| DaemonFailure::Error(format!("cannot encode the call: {e}")))?;
        let stream = connect(&self.socket, &clock)?;
        send_all(&stream, &request, &clock)?;
        let mut bus = Incoming {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            clock,
        };
        // `bus`, and with it the socket, is dropped on every return below.
        bus.auth_reply()?;
        loop {
            let message = bus.next_reply()?;
            match message.reply_serial {
                Some(CHECK_ACCESS_SERIAL) => return answer(&message),
                Some(HELLO_SERIAL) if message.kind == wire::ERROR => {
                    return Err(DaemonFailure::Error(format!(
                        "the bus refused Hello: {}",
                        error_summary(&message)
                    )))
                }
                // The reply to Hello, or a reply that is none of ours.
                _ => continue,
            }
        }
    }
}

/// The bus daemon's own name, the sender of the errors it makes itself.
const BUS_DAEMON_NAME: &str = "org.freedesktop.DBus";
const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
const HELLO_SERIAL: u32 = 1;
const CHECK_ACCESS_SERIAL: u32 = 2;
/// Bytes asked of the socket per read (the bus's answers are a few hundred bytes).
const READ_CHUNK: usize = 4096;
/// Longest error text carried into the log.
const MAX_ERROR_TEXT: usize = 300;

/// Everything the module sends, in one buffer: SASL, `Hello`, `CheckAccess`.
fn request(uid: u32, user: &str, groups: &[String]) -> Result<Vec<u8>, wire::WireError> {
    let mut bytes = wire::auth_external(uid);
    bytes.extend(wire::encode_method_call(&wire::HELLO, HELLO_SERIAL)?);
    bytes.extend(wire::encode_method_call(
        &wire::check_access_call(&wire::check_access_args(user, groups)),
        CHECK_ACCESS_SERIAL,
    )?);
    Ok(bytes)
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
    let unreachable =
        |e: Errno| DaemonFailure::Unreachable(format!("system bus at {}: {e}", path.display()));
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
                let own_euid = nix::unistd::geteuid().as_raw();
                return match untrusted_listener(peer.uid(), own_euid) {
                    None => Ok(UnixStream::from(fd)),
                    Some(why) => Err(DaemonFailure::Unreachable(format!(
                        "system bus at {}: {why}",
                        path.display()
                    ))),
                };
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(clock.expired()),
            // Nothing there, or a socket nobody accepts on (the bus daemon is gone): absent. A
            // refused connect on anything but a socket is not the bus's doing.
            Err(e @ Errno::ENOENT) => return Err(absent(path, e)),
            Err(e @ Errno::ECONNREFUSED) if is_socket(path) => return Err(absent(path, e)),
            Err(e) => return Err(unreachable(e)),
        }
    }
}

/// Why a listener running as `uid` is not the system bus, or `None` when it may be: a socket
/// root listens on (the bus daemon's, whether systemd's socket unit or dbus-daemon itself
/// created it before dropping root), or one of the process's own effective uid, which can
/// tell it nothing it could gain by (under sudo, that is root again). Whatever answers at the
/// socket path in the caller's mount namespace is what the module trusts, and a sandbox a user
/// starts (a D-Bus proxy of their own, say) could put something of theirs there. No account
/// is looked up by name: a directory user called `messagebus` must not be trusted.
fn untrusted_listener(uid: u32, own_euid: u32) -> Option<String> {
    if uid == 0 || uid == own_euid {
        None
    } else {
        Some(format!(
            "the listener runs as uid {uid}, not root: it is not the system bus"
        ))
    }
}

fn absent(path: &Path, e: Errno) -> DaemonFailure {
    DaemonFailure::Absent(format!("system bus at {}: {e}", path.display()))
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Writes all of `bytes` with MSG_NOSIGNAL: a bus that hung up must not SIGPIPE the host.
fn send_all(stream: &UnixStream, bytes: &[u8], clock: &Clock) -> Result<(), DaemonFailure> {
    let mut sent = 0;
    while sent < bytes.len() {
        stream
            .set_write_timeout(Some(clock.remaining()?))
            .map_err(|e| DaemonFailure::Unreachable(format!("bus socket: {e}")))?;
        match socket::send(stream.as_raw_fd(), &bytes[sent..], MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => {
                return Err(DaemonFailure::Unreachable(
                    "the bus accepted no bytes".into(),
                ))
            }
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(clock.expired()),
            Err(e) => {
                return Err(DaemonFailure::Unreachable(format!(
                    "cannot write to the bus: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// What the bus sends back, read under the deadline.
struct Incoming {
    stream: UnixStream,
    buf: Vec<u8>,
    clock: Clock,
}

impl Incoming {
    /// Appends at least one byte from the socket to `buf`.
    fn read_more(&mut self) -> Result<(), DaemonFailure> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            self.stream
                .set_read_timeout(Some(self.clock.remaining()?))
                .map_err(|e| DaemonFailure::Unreachable(format!("bus socket: {e}")))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(DaemonFailure::Unreachable(
                        "the bus closed the connection".into(),
                    ))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(self.clock.expired())
                }
                Err(e) => {
                    return Err(DaemonFailure::Unreachable(format!(
                        "cannot read from the bus: {e}"
                    )))
                }
            }
        }
    }

    /// Reads and checks the bus's reply to AUTH, `OK <guid>\r\n`.
    fn auth_reply(&mut self) -> Result<(), DaemonFailure> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                wire::check_auth_reply(&self.buf[..end])
                    .map_err(|e| DaemonFailure::Unreachable(e.to_string()))?;
                self.buf.drain(..end + 2);
                return Ok(());
            }
            if self.buf.len() > wire::MAX_AUTH_LINE {
                return Err(DaemonFailure::Error(
                    "the bus answered AUTH with an overlong line".into(),
                ));
            }
            self.read_more()?;
        }
    }

    /// The next METHOD_RETURN or ERROR, decoded. Signals and calls (which anyone on the bus may
    /// send to our unique name) are skipped unread, whatever their size; replies are only
    /// forwarded by the bus to the caller that asked, so they are held to our size limit.
    fn next_reply(&mut self) -> Result<Message, DaemonFailure> {
        let malformed = |e: wire::WireError| {
            DaemonFailure::Error(format!("malformed message from the bus: {e}"))
        };
        loop {
            let Some(frame) = wire::frame(&self.buf).map_err(malformed)? else {
                self.read_more()?;
                continue;
            };
            if !matches!(frame.kind, wire::METHOD_RETURN | wire::ERROR) {
                self.skip(frame.len)?;
                continue;
            }
            if frame.len > wire::MAX_MESSAGE_BYTES {
                return Err(DaemonFailure::Error(format!(
                    "a reply of {} bytes is more than the module accepts",
                    frame.len
                )));
            }
            while self.buf.len() < frame.len {
                self.read_more()?;
            }
            let message = wire::decode(&self.buf[..frame.len]).map_err(malformed)?;
            self.buf.drain(..frame.len);
            return Ok(message);
        }
    }

    /// Discards the next `len` bytes, buffered or not yet read.
    fn skip(&mut self, mut len: usize) -> Result<(), DaemonFailure> {
        loop {
            if self.buf.len() >= len {
                self.buf.drain(..len);
                return Ok(());
            }
            len -= self.buf.len();
            self.buf.clear();
            self.read_more()?;
        }
    }
}

/// pimd's answer, or the error that came instead.
fn answer(message: &Message) -> Result<AccessDecision, DaemonFailure> {
    if message.kind == wire::ERROR {
        let name = message.error_name.as_deref().unwrap_or("");
        let from_bus = message.sender.as_deref() == Some(BUS_DAEMON_NAME);
        return Err(if name == SERVICE_UNKNOWN && from_bus {
            // The bus's own word that nobody owns the name and none can be activated. Anything
            // else denies: pimd's errors, NoReply, and a failed activation, which dbus-daemon
            // reports as Spawn.* and dbus-broker as NameHasNoOwner ("Could not activate remote
            // peer ...: startup job failed"; the module never sets NO_AUTO_START, so that name
            // never means "nobody there" here).
            DaemonFailure::Absent(format!(
                "{} is not on the bus: {}",
                pim_common::BUS_NAME,
                error_summary(message)
            ))
        } else {
            DaemonFailure::Error(error_summary(message))
        });
    }
    let (allowed, message) = message
        .bool_and_string()
        .map_err(|e| DaemonFailure::Error(format!("malformed reply from pimd: {e}")))?;
    Ok(AccessDecision { allowed, message })
}

/// `name: text` of an ERROR message, the text bounded in length (the caller escapes it).
fn error_summary(message: &Message) -> String {
    let name = message.error_name.as_deref().unwrap_or("(no name)");
    let text = match message.error_text() {
        Ok(text) => text,
        Err(e) => format!("(unreadable text: {e})"),
    };
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{name}: {}...", &text[..end])
    } else {
        format!("{name}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{access_reply, reply, reply_from, signal};
    use crate::wire::{Endian, ERROR, METHOD_RETURN};
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    const GUID: &[u8] = b"OK 0123456789abcdef0123456789abcdef\r\n";

    /// The daemon at `socket`, in PID 1's mount namespace as far as it can tell (this
    /// process's own: a test may not read PID 1's).
    fn bus_at(socket: &Path, timeout: Duration) -> BusDaemon {
        BusDaemon::at(socket, timeout).with_init_mount_namespace(Path::new(OWN_MOUNT_NAMESPACE))
    }

    fn temp_socket(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pam-pim-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("bus"), dir)
    }

    /// What the module sent: the SASL lines and the two calls.
    struct Request {
        auth: Vec<u8>,
        hello: Message,
        call: Message,
    }

    /// Reads what the module sends on a fresh connection.
    fn read_request(stream: &mut UnixStream) -> Request {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let auth_end = loop {
            if let Some(at) = buf.windows(7).position(|w| w == b"BEGIN\r\n") {
                break at + 7;
            }
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "client hung up during AUTH");
            buf.extend_from_slice(&chunk[..n]);
        };
        let auth = buf.drain(..auth_end).collect();
        let mut messages = Vec::new();
        while messages.len() < 2 {
            match wire::frame(&buf).unwrap() {
                Some(frame) if buf.len() >= frame.len => {
                    messages.push(wire::decode(&buf[..frame.len]).unwrap());
                    buf.drain(..frame.len);
                }
                _ => {
                    let n = stream.read(&mut chunk).unwrap();
                    assert!(n > 0, "client hung up before its calls");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        assert!(buf.is_empty(), "unexpected bytes after the calls");
        let call = messages.pop().unwrap();
        let hello = messages.pop().unwrap();
        Request { auth, hello, call }
    }

    /// A bus at a temporary socket whose one connection is handled by `serve`.
    struct FakeBus {
        socket: PathBuf,
        dir: PathBuf,
        server: JoinHandle<()>,
    }

    impl FakeBus {
        fn start(name: &str, serve: impl FnOnce(UnixStream) + Send + 'static) -> Self {
            let (socket, dir) = temp_socket(name);
            let listener = UnixListener::bind(&socket).unwrap();
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                serve(stream);
            });
            FakeBus {
                socket,
                dir,
                server,
            }
        }

        /// A bus that reads the request and answers `OK`, the Hello reply, NameAcquired, and
        /// then `answer`.
        fn answering(name: &str, answer: Vec<u8>) -> Self {
            Self::start(name, move |mut stream| {
                read_request(&mut stream);
                let mut out = GUID.to_vec();
                out.extend(hello_reply());
                out.extend(signal(Endian::Little, "NameAcquired", 5));
                out.extend(answer);
                stream.write_all(&out).unwrap();
                // Wait for the client to hang up.
                let _ = stream.read(&mut [0u8; 16]);
            })
        }

        fn check(self, timeout: Duration) -> Result<AccessDecision, DaemonFailure> {
            let result = bus_at(&self.socket, timeout)
                .check_access("alice", &["sudo".to_string(), "wheel".to_string()]);
            self.server.join().unwrap();
            std::fs::remove_dir_all(&self.dir).unwrap();
            result
        }
    }

    fn hello_reply() -> Vec<u8> {
        reply(Endian::Little, METHOD_RETURN, 1, None, "s", |b| {
            b.string(":1.42")
        })
    }

    /// An error for the call from pimd (`:1.7`).
    fn error(name: &str, text: &str) -> Vec<u8> {
        reply(Endian::Little, ERROR, 2, Some(name), "s", |b| {
            b.string(text)
        })
    }

    /// An error for the call from the bus daemon itself.
    fn bus_error(name: &str, text: &str) -> Vec<u8> {
        reply_from(
            BUS_DAEMON_NAME,
            Endian::Little,
            ERROR,
            2,
            Some(name),
            "s",
            |b| b.string(text),
        )
    }

    #[test]
    fn given_a_listener_of_another_account_then_not_the_bus() {
        // Under sudo (effective uid 0) only root's listener is the bus.
        assert_eq!(untrusted_listener(0, 0), None);
        let why = untrusted_listener(1000, 0).expect("a user's listener");
        assert!(why.contains("uid 1000"), "{why}");
        assert!(
            untrusted_listener(101, 0).is_some(),
            "messagebus by name is not trusted"
        );
        // A process of alice's own trusts root's and her own, which can give her nothing.
        assert_eq!(untrusted_listener(1000, 1000), None);
        assert!(untrusted_listener(1001, 1000).is_some());
    }
    #[test]
    fn given_a_bus_then_one_write_carries_auth_hello_and_the_call() {
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let bus = FakeBus::start("request", move |mut stream| {
            let request = read_request(&mut stream);
            sent_tx.send(request).unwrap();
            let mut out = GUID.to_vec();
            out.extend(hello_reply());
            out.extend(access_reply(Endian::Little, 1, ""));
            stream.write_all(&out).unwrap();
        });
        let result = bus.check(Duration::from_secs(5));
        assert_eq!(
            result,
            Ok(AccessDecision {
                allowed: true,
                message: String::new()
            })
        );
        let request = sent_rx.recv().unwrap();
        assert_eq!(
            request.auth,
            wire::auth_external(nix::unistd::geteuid().as_raw())
        );
        assert_eq!(request.hello.serial, 1);
        assert_eq!(request.hello.member.as_deref(), Some("Hello"));
        assert_eq!(
            request.hello.destination.as_deref(),
            Some("org.freedesktop.DBus")
        );
        let call = request.call;
        assert_eq!(call.serial, 2);
        assert_eq!(call.destination.as_deref(), Some("org.pim.Manager1"));
        assert_eq!(call.path.as_deref(), Some("/org/pim/Manager1"));
        assert_eq!(call.interface.as_deref(), Some("org.pim.Manager1"));
        assert_eq!(call.member.as_deref(), Some("CheckAccess"));
        assert_eq!(call.signature, "sas");
        let expected = request_bytes_of_call("alice", &["sudo", "wheel"]);
        assert_eq!(call.body, expected);
    }

    /// The body `sas` of CheckAccess, as the encoder writes it.
    fn request_bytes_of_call(user: &str, groups: &[&str]) -> Vec<u8> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let bytes = request(0, user, &groups).unwrap();
        let auth = wire::auth_external(0).len();
        let hello = wire::frame(&bytes[auth..]).unwrap().unwrap().len;
        wire::decode(&bytes[auth + hello..]).unwrap().body
    }

    #[test]
    fn given_pimd_answers_then_its_decision_is_returned() {
        let refusal = "pim: your grant for role admin ended";
        let result = FakeBus::answering("refused", access_reply(Endian::Little, 0, refusal))
            .check(Duration::from_secs(5));
        assert_eq!(
            result,
            Ok(AccessDecision {
                allowed: false,
                message: refusal.into()
            })
        );
        let result = FakeBus::answering("big-endian", access_reply(Endian::Big, 1, ""))
            .check(Duration::from_secs(5));
        assert_eq!(result.map(|d| d.allowed), Ok(true));
    }

    #[test]
    fn given_the_answer_in_single_bytes_then_it_is_reassembled() {
        let bus = FakeBus::start("trickle", |mut stream| {
            read_request(&mut stream);
            let mut out = GUID.to_vec();
            out.extend(hello_reply());
            out.extend(signal(Endian::Big, "NameAcquired", 5));
            out.extend(access_reply(Endian::Little, 1, "x"));
            for byte in out {
                stream.write_all(&[byte]).unwrap();
                stream.flush().unwrap();
            }
            let _ = stream.read(&mut [0u8; 16]);
        });
        assert_eq!(
            bus.check(Duration::from_secs(5)).map(|d| d.allowed),
            Ok(true)
        );
    }

    #[test]
    fn given_large_signals_before_the_reply_then_skipped() {
        let bus = FakeBus::start("flood", |mut stream| {
            read_request(&mut stream);
            let mut out = GUID.to_vec();
            out.extend(hello_reply());
            for _ in 0..3 {
                out.extend(signal(Endian::Little, "Junk", 3 * wire::MAX_MESSAGE_BYTES));
            }
            out.extend(access_reply(Endian::Little, 1, ""));
            stream.write_all(&out).unwrap();
            let _ = stream.read(&mut [0u8; 16]);
        });
        assert_eq!(
            bus.check(Duration::from_secs(5)).map(|d| d.allowed),
            Ok(true)
        );
    }

    #[test]
    fn given_bus_errors_then_classified() {
        // dbus-daemon's and dbus-broker's words for a name nobody owns and none can activate.
        for text in [
            "The name org.pim.Manager1 was not provided by any .service files",
            "The name is not activatable",
        ] {
            let result = FakeBus::answering("unknown", bus_error(SERVICE_UNKNOWN, text))
                .check(Duration::from_secs(5));
            assert!(
                matches!(&result, Err(DaemonFailure::Absent(why)) if why.contains(SERVICE_UNKNOWN)),
                "{result:?}"
            );
        }
        // pimd owns the name but gave no answer, or its activation failed: not absent.
        for name in [
            "org.freedesktop.DBus.Error.NoReply",
            "org.freedesktop.DBus.Error.NoServer",
            "org.freedesktop.DBus.Error.Spawn.ChildExited",
            "org.pim.Manager1.Error.InvalidArgument",
        ] {
            let result =
                FakeBus::answering("answered", error(name, "no")).check(Duration::from_secs(5));
            assert!(
                matches!(&result, Err(DaemonFailure::Error(why)) if why.contains(name)),
                "{result:?}"
            );
        }
        let result = FakeBus::answering(
            "denied",
            error(
                "org.pim.Manager1.Error.PermissionDenied",
                "only root may\ncheck",
            ),
        )
        .check(Duration::from_secs(5));
        assert_eq!(
            result,
            Err(DaemonFailure::Error(
                "org.pim.Manager1.Error.PermissionDenied: only root may\ncheck".into()
            ))
        );
        let long = "é".repeat(1000);
        let result =
            FakeBus::answering("long", error("a.b.C", &long)).check(Duration::from_secs(5));
        let Err(DaemonFailure::Error(why)) = result else {
            panic!("{result:?}");
        };
        assert!(why.len() < 400 && why.ends_with("..."), "{why}");
    }

    #[test]
    fn given_a_failed_activation_on_dbus_broker_then_an_error_not_absent() {
        // dbus-broker answers a call whose activation failed (pimd crashing at start) with
        // NameHasNoOwner; the module never sets NO_AUTO_START, so it never means absent.
        let result = FakeBus::answering(
            "broker-activation",
            bus_error(
                "org.freedesktop.DBus.Error.NameHasNoOwner",
                "Could not activate remote peer 'org.pim.Manager1': startup job failed",
            ),
        )
        .check(Duration::from_secs(5));
        assert!(
            matches!(&result, Err(DaemonFailure::Error(why)) if why.contains("startup job failed")),
            "{result:?}"
        );
    }

    #[test]
    fn given_service_unknown_from_anyone_but_the_bus_then_an_error_not_absent() {
        let result = FakeBus::answering(
            "forged",
            error(SERVICE_UNKNOWN, "The name is not activatable"),
        )
        .check(Duration::from_secs(5));
        assert!(
            matches!(&result, Err(DaemonFailure::Error(why)) if why.contains(SERVICE_UNKNOWN)),
            "{result:?}"
        );
    }

    #[test]
    fn given_another_mount_namespace_than_pid_1s_then_a_missing_bus_is_unreachable() {
        // A set-uid sandbox that hides /run/dbus in a mount namespace of the user's: the
        // module cannot tell "absent" from "hidden", so fail=open must not apply.
        let (socket, dir) = temp_socket("elsewhere");
        let not_a_socket = dir.join("file");
        std::fs::write(&not_a_socket, b"").unwrap();
        for namespace in ["/proc/self/ns/net", "/nonexistent/ns/mnt"] {
            for path in [&socket, &not_a_socket] {
                let result = BusDaemon::at(path, Duration::from_secs(5))
                    .with_init_mount_namespace(Path::new(namespace))
                    .check_access("alice", &["sudo".to_string()]);
                assert!(
                    matches!(&result, Err(DaemonFailure::Unreachable(_))),
                    "{namespace} {}: {result:?}",
                    path.display()
                );
            }
        }
        // The bus's service errors seen from elsewhere are no proof of absence either.
        let bus = FakeBus::answering("elsewhere-unknown", bus_error(SERVICE_UNKNOWN, "no"));
        let result = BusDaemon::at(&bus.socket, Duration::from_secs(5))
            .with_init_mount_namespace(Path::new("/proc/self/ns/net"))
            .check_access("alice", &["sudo".to_string()]);
        bus.server.join().unwrap();
        std::fs::remove_dir_all(&bus.dir).unwrap();
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(_))),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_refused_connect_on_something_that_is_not_a_socket_then_unreachable() {
        let (_, dir) = temp_socket("file");
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let result = bus_at(&file, Duration::from_secs(5)).check_access("alice", &["sudo".into()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why.contains("ECONNREFUSED")),
            "{result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_malformed_or_oversized_replies_then_errors() {
        let result = FakeBus::answering("bool", access_reply(Endian::Little, 7, ""))
            .check(Duration::from_secs(5));
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
        let wrong = reply(Endian::Little, METHOD_RETURN, 2, None, "b", |b| b.u32(1));
        let result = FakeBus::answering("signature", wrong).check(Duration::from_secs(5));
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
        let huge = access_reply(Endian::Little, 1, &"x".repeat(wire::MAX_MESSAGE_BYTES));
        let result = FakeBus::answering("huge", huge).check(Duration::from_secs(5));
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
        let mut garbage = access_reply(Endian::Little, 1, "");
        garbage[0] = b'?';
        let result = FakeBus::answering("garbage", garbage).check(Duration::from_secs(5));
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
    }

    #[test]
    fn given_authentication_refused_then_unreachable() {
        let bus = FakeBus::start("rejected", |mut stream| {
            read_request(&mut stream);
            stream.write_all(b"REJECTED EXTERNAL\r\n").unwrap();
        });
        let result = bus.check(Duration::from_secs(5));
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why.contains("REJECTED")),
            "{result:?}"
        );
    }

    #[test]
    fn given_a_hello_error_then_error() {
        let bus = FakeBus::start("hello", |mut stream| {
            read_request(&mut stream);
            let mut out = GUID.to_vec();
            out.extend(reply(
                Endian::Little,
                ERROR,
                1,
                Some("org.freedesktop.DBus.Error.LimitsExceeded"),
                "s",
                |b| b.string("too many"),
            ));
            stream.write_all(&out).unwrap();
        });
        let result = bus.check(Duration::from_secs(5));
        assert!(
            matches!(&result, Err(DaemonFailure::Error(why)) if why.contains("LimitsExceeded")),
            "{result:?}"
        );
    }

    #[test]
    fn given_no_socket_then_absent_quickly() {
        let (socket, dir) = temp_socket("absent");
        let started = Instant::now();
        let result =
            bus_at(&socket, Duration::from_secs(5)).check_access("alice", &["sudo".to_string()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Absent(why)) if why.contains("ENOENT")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_socket_nobody_listens_on_then_absent() {
        let (socket, dir) = temp_socket("refused");
        drop(UnixListener::bind(&socket).unwrap());
        let result =
            bus_at(&socket, Duration::from_secs(5)).check_access("alice", &["sudo".to_string()]);
        assert!(
            matches!(&result, Err(DaemonFailure::Absent(why)) if why.contains("ECONNREFUSED")),
            "{result:?}"
        );
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
    fn given_a_bus_that_never_answers_then_timeout_bounds_the_whole_check() {
        let (socket, dir) = temp_socket("silent");
        // Accepts connections (the kernel does, into the backlog) and never says a word.
        let listener = UnixListener::bind(&socket).unwrap();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = bus_at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        assert_bounded(result, timeout, started);
        drop(listener);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_bus_that_stalls_mid_answer_then_timeout() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let bus = FakeBus::start("stall", move |mut stream| {
            read_request(&mut stream);
            let mut out = GUID.to_vec();
            out.extend(hello_reply());
            let answer = access_reply(Endian::Little, 1, "");
            out.extend_from_slice(&answer[..answer.len() - 3]);
            stream.write_all(&out).unwrap();
            let _ = stop_rx.recv();
        });
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = bus_at(&bus.socket, timeout).check_access("alice", &["sudo".into()]);
        assert_bounded(result, timeout, started);
        drop(stop_tx);
        bus.server.join().unwrap();
        std::fs::remove_dir_all(&bus.dir).unwrap();
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
        let result = bus_at(&socket, timeout).check_access("alice", &["sudo".to_string()]);
        assert_bounded(result, timeout, started);
        drop(pending);
        drop(listener);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_bus_that_hangs_up_then_unreachable() {
        let bus = FakeBus::start("hangup", drop);
        let result = bus.check(Duration::from_secs(5));
        assert!(
            matches!(result, Err(DaemonFailure::Unreachable(_))),
            "{result:?}"
        );
        let bus = FakeBus::start("hangup-after-ok", |mut stream| {
            read_request(&mut stream);
            stream.write_all(GUID).unwrap();
        });
        let result = bus.check(Duration::from_secs(5));
        assert!(
            matches!(&result, Err(DaemonFailure::Unreachable(why)) if why.contains("closed")),
            "{result:?}"
        );
    }

    #[test]
    fn given_the_system_daemon_then_the_fixed_socket_is_used() {
        let daemon = BusDaemon::system(Duration::from_secs(2));
        assert_eq!(daemon.socket, Path::new("/run/dbus/system_bus_socket"));
    }

    #[test]
    fn given_a_user_name_with_nul_then_error_without_connecting() {
        let (socket, dir) = temp_socket("nul");
        let result =
            bus_at(&socket, Duration::from_secs(1)).check_access("al\0ice", &["sudo".into()]);
        assert!(matches!(result, Err(DaemonFailure::Error(_))), "{result:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
