//! The PAM module's own way in: pimd answers the access check on a root-only Unix socket at
//! [`PAM_SOCKET`], off the bus (see [`pim_common::pam_socket`] for the framing).
//!
//! The socket is bound in `/run/pim` (root's, mode 0700) with mode 0600, under a temporary
//! name renamed over the fixed one once pimd holds [`LOCK_FILE`] (one pimd at a time, decided
//! without the bus, so the socket is published before the bus is reached and stays while the
//! bus is away): a second pimd never replaces the first's socket, and a restarted pimd replaces
//! the one a crash left behind without a moment where the path is missing.
//!
//! [`WORKERS`] threads answer it, each with its own read-only [`AccessReader`]: nothing they
//! take is shared with the manager (activations, MFA, audit writes) or the async runtime but
//! the access snapshot's lock, which a reload holds only to drop the snapshot, so sudo's
//! answer never waits behind other callers' work. One of them at a time polls the
//! listener and the accepted connections whose request is incomplete (bounded in number and in
//! time, see [`Server`]). A whole request that the access snapshot allows
//! ([`crate::access_snapshot`]: in memory, read again after each commit) is answered there and
//! then, with no other thread woken; any other is decided in full on the database by the
//! thread that read it, once another took the polling over. A client that connects and sends
//! nothing holds no thread.
//! What is more waits in the kernel's backlog (bounded; the module's `timeout=` bounds its
//! connect there). At stop, the threads are stopped and joined before the denial audit is
//! finished, so that no denial comes after it.
//!
//! Only root may ask (`SO_PEERCRED`; the module runs in sudo as root). Anyone else who gets to
//! connect (the socket's mode says nobody can, but a process with CAP_DAC_OVERRIDE can) is
//! hung up on before a byte is read, and refused in the audit through a bounded queue: the
//! refusals' own throttles apply, and what overflows is counted into the refusal summaries.
//! Denials go to the same bounded denial audit as the bus's.

use crate::access::AccessReader;
use crate::access_snapshot::AccessSnapshots;
use crate::service::Core;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pim_common::pam_socket::{self, Answer, Request, HEADER_BYTES, MAX_REQUEST_BODY};
use pim_common::vocab::AuditAction;
use pim_common::PimError;
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use pim_common::pam_socket::{PAM_SOCKET, PAM_SOCKET_DIR};

/// Threads answering the socket, each with its own reader: a decision takes no lock shared
/// with the manager, and a stalled client never holds one of them. One polls while the
/// others decide (see [`Server`]).
pub const WORKERS: usize = 5;
/// How long a connection may take to send its whole request after it was accepted. The module
/// writes it whole right after connecting, so this only bounds a stopped or broken client;
/// while it waits it holds no thread, only a place among [`MAX_PENDING`].
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);
/// Connections accepted whose request is not complete yet; one more evicts the oldest.
const MAX_PENDING: usize = 64;
/// Complete requests waiting for a worker; beyond, a connection is hung up on (the module
/// denies).
const MAX_QUEUED: usize = 256;
/// The reason audited for a check hung up on because [`MAX_QUEUED`] others waited already.
const BUSY: &str =
    "pim: access refused: pimd had too many checks waiting to answer this one; try again";
/// How long writing an answer may take (it fits the socket's buffer: it never waits in
/// practice).
const REPLY_TIMEOUT: Duration = Duration::from_millis(200);
/// Refusals of callers that are not root waiting for the audit; beyond, only counted.
const REFUSAL_QUEUE_LENGTH: usize = 64;
/// Callers whose overflowing refusals are counted by uid; beyond, they go uncounted (and said
/// so in the journal).
const MAX_OVERFLOW_UIDS: usize = 1024;
/// The lock that makes one pimd at a time (see [`lock_single_pimd`]).
pub const LOCK_FILE: &str = "/run/pim/pimd.lock";

/// Takes the lock that makes this pimd the only one: an exclusive `flock` on [`LOCK_FILE`]
/// (root's, in root's 0700 `/run/pim`), held for as long as the returned value lives; the
/// kernel lets go of it when pimd ends, however it ends. Fails when another pimd holds it, or
/// answers on [`PAM_SOCKET`] (its lock file was replaced or removed under it: the lock on
/// the new file would not keep it out). The bus name is not what decides: the PAM module's
/// socket is published before the bus is reached, and stays while the bus is away.
pub fn lock_single_pimd() -> Result<Flock<std::fs::File>, String> {
    secure_directory(Path::new(PAM_SOCKET_DIR))?;
    let lock = lock_file(Path::new(LOCK_FILE))?;
    if let Some(pid) = serving_pid(Path::new(PAM_SOCKET))? {
        return Err(format!(
            "cannot own {}: another pimd is running (pid {pid} answers on {PAM_SOCKET})",
            pim_common::BUS_NAME
        ));
    }
    Ok(lock)
}

/// How many times a lock file replaced between its opening and its locking is opened again.
const LOCK_TRIES: usize = 8;

/// An exclusive lock on the file at `path`, created if need be, which is still at `path` once
/// locked: a file replaced or removed between the open and the lock (a stopping pimd's, an
/// administrator's `rm`) would be a lock nobody else takes.
fn lock_file(path: &Path) -> Result<Flock<std::fs::File>, String> {
    for _ in 0..LOCK_TRIES {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| match e {
                Errno::EWOULDBLOCK => format!(
                    "cannot own {}: another pimd is running (it holds {})",
                    pim_common::BUS_NAME,
                    path.display()
                ),
                e => format!("cannot lock {}: {e}", path.display()),
            })?;
        if is_at(&lock, path)? {
            return Ok(lock);
        }
    }
    Err(format!(
        "cannot lock {}: it was replaced {LOCK_TRIES} times while being locked",
        path.display()
    ))
}

/// Whether the open `file` is the one at `path` (same device and inode).
fn is_at(file: &std::fs::File, path: &Path) -> Result<bool, String> {
    let own = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match std::fs::symlink_metadata(path) {
        Ok(there) => Ok((there.dev(), there.ino()) == (own.dev(), own.ino())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// How long the look for another pimd on the socket may wait for its backlog.
const SERVING_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The pid of the process answering on `socket`, `None` when nothing does (no file, or a
/// socket a crashed pimd left behind). A backlog full past [`SERVING_CONNECT_TIMEOUT`] is
/// someone listening, whose pid is not known (0).
fn serving_pid(socket: &Path) -> Result<Option<i32>, String> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    let failed = |e: Errno| {
        format!(
            "cannot tell whether a pimd answers on {}: {e}",
            socket.display()
        )
    };
    let address = UnixAddr::new(socket).map_err(failed)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(failed)?;
    let timeout = nix::sys::time::TimeVal::new(SERVING_CONNECT_TIMEOUT.as_secs() as i64, 0);
    socket::setsockopt(&fd, socket::sockopt::SendTimeout, &timeout).map_err(failed)?;
    loop {
        return match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
            // Closed at once: the pimd there drops a connection that sends nothing.
            Ok(()) => Ok(Some(
                getsockopt(&fd, PeerCredentials).map_or(0, |p| p.pid()),
            )),
            Err(Errno::EINTR) => continue,
            Err(Errno::ENOENT | Errno::ECONNREFUSED) => Ok(None),
            Err(Errno::EAGAIN) => Ok(Some(0)),
            Err(e) => Err(failed(e)),
        };
    }
}

/// pimd's listening socket for the PAM module.
pub struct PamSocket {
    /// Where it was bound, until [`PamSocket::publish`] renames it to `path`.
    bound_at: PathBuf,
    path: PathBuf,
    /// The socket file's inode: at the fixed path once published, unless another pimd's
    /// replaced it since.
    inode: u64,
    published: bool,
    server: Option<Server>,
}

impl PamSocket {
    /// Binds the socket under a temporary name in `/run/pim` (made root's and 0700 if it is
    /// not), and starts the threads that answer it, one worker per reader of `readers`.
    /// Callers that are not root are refused in the audit through `core`'s manager.
    pub fn start(
        core: Arc<Core>,
        readers: Vec<Arc<Mutex<AccessReader>>>,
        snapshots: Arc<AccessSnapshots>,
    ) -> Result<PamSocket, String> {
        let path = PathBuf::from(PAM_SOCKET);
        let dir = Path::new(PAM_SOCKET_DIR);
        secure_directory(dir)?;
        let bound_at = dir.join(format!(".pam.socket.{}", std::process::id()));
        match std::fs::remove_file(&bound_at) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(format!("cannot remove {}: {e}", bound_at.display()))
            }
            _ => {}
        }
        let listener = UnixListener::bind(&bound_at)
            .map_err(|e| format!("cannot listen on {}: {e}", bound_at.display()))?;
        std::fs::set_permissions(&bound_at, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot make {} 0600: {e}", bound_at.display()))?;
        let inode = std::fs::symlink_metadata(&bound_at)
            .map_err(|e| format!("cannot read {}: {e}", bound_at.display()))?
            .ino();
        let refusals = Refusals::start(core.clone());
        let busy = core.clone();
        let deciders = readers
            .into_iter()
            .map(|reader| {
                let core = core.clone();
                Box::new(move |request: Request| decide(&reader, &core, request)) as Decider
            })
            .collect();
        let quick: Quick = Box::new(move |r| snapshots.allows(&r.user, &r.groups));
        let server = Server::start(
            listener,
            0,
            quick,
            deciders,
            Box::new(move |turned| match turned {
                TurnedAway::NotAllowed(uid) => refusals.refuse(uid),
                TurnedAway::Busy(request) => {
                    busy.queue_access_denial(request.user, request.groups, BUSY.into())
                }
            }),
        )?;
        Ok(PamSocket {
            bound_at,
            path,
            inode,
            published: false,
            server: Some(server),
        })
    }

    /// Puts the socket at its fixed path, replacing whatever is there (a socket a crashed pimd
    /// left behind; the lock says no other pimd runs).
    pub fn publish(&mut self) -> Result<(), String> {
        std::fs::rename(&self.bound_at, &self.path).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                self.bound_at.display(),
                self.path.display()
            )
        })?;
        self.published = true;
        Ok(())
    }

    /// Removes the socket (a stopped pimd is absent to the module), then stops its threads
    /// and waits for them: every denial they decided is queued for the audit when this
    /// returns.
    pub fn stop(&mut self) {
        self.unlink();
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Removes the socket, at the fixed path only while it is this one.
    fn unlink(&self) {
        let path = if self.published {
            &self.path
        } else {
            &self.bound_at
        };
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for PamSocket {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes `dir` root's and 0700, creating it if need be; refuses a directory that is a symbolic
/// link or not root's (it must not be anyone else's to change).
fn secure_directory(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            return Err(format!("cannot create {}: {e}", dir.display()))
        }
        _ => {}
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != 0 {
        return Err(format!(
            "{} is not a directory of root's (owner uid {}); not listening there",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} 0700: {e}", dir.display()))?;
    }
    Ok(())
}

/// Root's question answered by one reader; a denial goes to the audit.
fn decide(reader: &Mutex<AccessReader>, core: &Core, request: Request) -> Answer {
    let decided = reader
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .decide(&request.user, &request.groups);
    match decided {
        Ok(decision) if decision.allowed => Answer::Allowed,
        Ok(decision) => {
            core.queue_access_denial(request.user, request.groups, decision.message.clone());
            Answer::Refused(decision.message)
        }
        Err(e) => Answer::Error(e.message()),
    }
}

/// What a thread does with a complete request.
type Decider = Box<dyn FnMut(Request) -> Answer + Send>;
/// Whether a complete request is allowed at once, by what pimd keeps in memory
/// ([`crate::access_snapshot`]); false hands it to a [`Decider`]. It must not wait.
type Quick = Box<dyn Fn(&Request) -> bool + Send + Sync>;
/// A connection turned away without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnedAway {
    /// Of a uid that may not ask: hung up on before a byte was read.
    NotAllowed(u32),
    /// A whole request hung up on, [`MAX_QUEUED`] others waiting for a thread already.
    Busy(Request),
}
/// What is done with a connection turned away.
type Refuser = Box<dyn Fn(TurnedAway) + Send + Sync>;

/// The threads behind the socket, one per decider. One at a time leads: it polls the listener
/// and every accepted connection whose request is incomplete (at most [`MAX_PENDING`], each
/// for at most [`REQUEST_TIMEOUT`]; one more evicts the oldest), so that a client that
/// connects and sends nothing (a holder can SIGSTOP their own sudo right after it connected)
/// holds no thread. Once a request is whole, the leader hands the polling to an idle thread
/// and decides that request itself: a check wakes one thread in pimd, not two (a collector,
/// then a worker), and on a busy host each wake-up is a wait for the CPU that sudo's
/// answer waits behind. With no thread idle, the leader queues the request (at most
/// [`MAX_QUEUED`]) for the next thread that is done, and goes on polling.
pub struct Server {
    /// Written to (or dropped) to wake the leader when stopping.
    stop: UnixStream,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What the threads share.
struct Shared {
    state: Mutex<State>,
    woken: std::sync::Condvar,
    listener: UnixListener,
    /// Readable once the server stops.
    stopped: UnixStream,
    allowed_uid: u32,
    quick: Quick,
    refuse: Refuser,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    /// Whole requests waiting for a thread, oldest first.
    jobs: VecDeque<Job>,
    /// The incomplete connections, here while no thread leads (the leader holds them).
    polling: Option<VecDeque<Pending>>,
    /// Threads waiting to be woken, not counting those woken already.
    idle: usize,
    /// Wake-ups given and not taken yet (a condition variable may also wake a thread for
    /// nothing, which must not count as one).
    wakes: usize,
    /// Stopping: nothing more is accepted; what is queued is still answered.
    closed: bool,
}

impl State {
    /// Wakes up to `n` idle threads.
    fn wake(&mut self, n: usize, woken: &std::sync::Condvar) {
        let n = n.min(self.idle);
        self.idle -= n;
        self.wakes += n;
        for _ in 0..n {
            woken.notify_one();
        }
    }
}

/// A complete request on its connection.
struct Job {
    stream: UnixStream,
    request: Request,
}

impl Server {
    /// Serves `listener`: requests of `allowed_uid` (root, for pimd) that `quick` allows are
    /// answered by the thread that read them, the others are decided by the `deciders`, one
    /// thread each; connections of anyone else go to `refuse`.
    pub fn start(
        listener: UnixListener,
        allowed_uid: u32,
        quick: Quick,
        deciders: Vec<Decider>,
        refuse: Refuser,
    ) -> Result<Server, String> {
        let failed = |e: std::io::Error| format!("cannot start the PAM socket's threads: {e}");
        listener.set_nonblocking(true).map_err(failed)?;
        let (stop, stopped) = UnixStream::pair().map_err(failed)?;
        stopped.set_nonblocking(true).map_err(failed)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                polling: Some(VecDeque::new()),
                ..State::default()
            }),
            woken: std::sync::Condvar::new(),
            listener,
            stopped,
            allowed_uid,
            quick,
            refuse,
        });
        // Returns once every thread runs: a thread not started yet would neither take a
        // queued request nor the polling, and checks would be turned away as busy meanwhile.
        let running = Arc::new(std::sync::Barrier::new(deciders.len() + 1));
        let mut threads = Vec::new();
        for mut decider in deciders {
            let (shared, running) = (shared.clone(), running.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("pam-socket".into())
                    .spawn(move || {
                        running.wait();
                        serve(&shared, &mut decider)
                    })
                    .map_err(failed)?,
            );
        }
        running.wait();
        Ok(Server {
            stop,
            shared,
            threads,
        })
    }

    /// Stops accepting (no connection is accepted after), lets the threads answer what is
    /// queued, and waits for every thread.
    pub fn stop(self) {
        let Server {
            stop,
            shared,
            threads,
        } = self;
        shared.lock().closed = true;
        shared.woken.notify_all();
        let _ = (&stop).write_all(b"x");
        drop(stop);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// A thread: answers queued requests first, leads when nobody does, waits otherwise; until
/// the server stops and the queue is empty.
fn serve(shared: &Shared, decider: &mut Decider) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            drop(state);
            answer(job, decider);
            state = shared.lock();
            continue;
        }
        if state.closed {
            return;
        }
        if let Some(polling) = state.polling.take() {
            drop(state);
            // A leader that died would leave the socket file with nobody accepting, which
            // the module takes for an absent pimd: better that pimd dies and is restarted.
            let mine = abort_on_panic("the PAM socket's poller", || lead(shared, polling));
            if let Some(job) = mine {
                answer(job, decider);
            }
            state = shared.lock();
            continue;
        }
        state.idle += 1;
        while state.wakes == 0 && !state.closed {
            state = shared
                .woken
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.wakes > 0 {
            state.wakes -= 1;
        } else {
            state.idle -= 1;
        }
    }
}

/// Decides `job` and writes the answer.
fn answer(job: Job, decider: &mut Decider) {
    let Job {
        mut stream,
        request,
    } = job;
    // A panic while deciding loses that connection (the module then denies), not the
    // thread: a thread gone would be one fewer for every later sudo.
    let id = request.id;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decider(request))) {
        Ok(answer) => {
            let _ = write_reply(&mut stream, id, &answer);
        }
        Err(_) => {
            eprintln!("pimd: answering on {PAM_SOCKET} failed (a panic); the check was denied")
        }
    }
}

/// A connection whose request is still coming.
struct Pending {
    stream: UnixStream,
    received: Vec<u8>,
    deadline: Instant,
}

/// What the bytes received so far make.
enum Progress {
    Incomplete,
    Complete(Request),
    /// Malformed (the request's id, 0 when the header itself is wrong; why).
    Malformed(u64, String),
}

/// The request in `received`, if it is whole.
fn progress(received: &[u8]) -> Progress {
    let Some(head) = received.get(..HEADER_BYTES) else {
        return Progress::Incomplete;
    };
    let head: &[u8; HEADER_BYTES] = head.try_into().expect("HEADER_BYTES long");
    let header = match pam_socket::parse_request_header(head) {
        Ok(header) => header,
        Err(e) => return Progress::Malformed(0, e.to_string()),
    };
    let Some(body) = received.get(HEADER_BYTES..HEADER_BYTES + header.body_len) else {
        return Progress::Incomplete;
    };
    match pam_socket::decode_request(header.id, body) {
        Ok(request) => Progress::Complete(request),
        Err(e) => Progress::Malformed(header.id, e.to_string()),
    }
}

/// Runs `f`; a panic in it aborts the process. A dead collector would leave the socket file
/// with nobody accepting, which the module takes for an absent pimd: better that pimd dies
/// and systemd restarts it.
fn abort_on_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => {
            eprintln!("pimd: {what} panicked; aborting so that pimd is restarted");
            std::process::abort()
        }
    }
}

/// The leader (see [`Server`]): accepts, checks the caller, gathers each request; returns
/// the request this thread is to decide once another thread took the polling over, or `None`
/// when the server stops.
fn lead(shared: &Shared, mut pending: VecDeque<Pending>) -> Option<Job> {
    loop {
        let now = Instant::now();
        // Past their deadline: hung up on.
        pending.retain(|p| p.deadline > now);
        let wait = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .map_or(1000, |left| left.as_millis().clamp(1, 1000) as u16);
        let (stop_ready, listener_ready, ready) = {
            let mut fds = Vec::with_capacity(pending.len() + 2);
            fds.push(PollFd::new(shared.stopped.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(shared.listener.as_fd(), PollFlags::POLLIN));
            fds.extend(
                pending
                    .iter()
                    .map(|p| PollFd::new(p.stream.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::from(wait)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("pimd: cannot poll {PAM_SOCKET}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (
                ready(&fds[0]),
                ready(&fds[1]),
                fds[2..].iter().map(ready).collect::<Vec<_>>(),
            )
        };
        if stop_ready {
            return None;
        }
        // Read what came, oldest first: when the queue is full, the later ones are hung up on.
        let mut whole = Vec::new();
        let mut waiting = VecDeque::with_capacity(pending.len());
        for (connection, ready) in pending.drain(..).zip(ready) {
            if !ready {
                waiting.push_back(connection);
            } else if let Some(still) = advance(connection, &mut whole) {
                waiting.push_back(still);
            }
        }
        pending = waiting;
        if listener_ready {
            accept_all(shared, &mut pending, &mut whole);
        }
        whole.retain_mut(|job| !answered_at_once(shared, job));
        if whole.is_empty() {
            continue;
        }
        let mut state = shared.lock();
        // One idle thread to take the polling over and one for each request queued.
        // (Requests queued earlier have the wake-ups they were given.)
        if state.idle >= whole.len() && !state.closed {
            let mine = whole.remove(0);
            let (queued, busy) = queue(&mut state, whole);
            state.polling = Some(pending);
            state.wake(queued + 1, &shared.woken);
            drop(state);
            turn_away(shared, busy);
            return Some(mine);
        }
        let (queued, busy) = queue(&mut state, whole);
        state.wake(queued, &shared.woken);
        drop(state);
        turn_away(shared, busy);
    }
}

/// Answers `job` here if it is allowed at once (no thread is woken for it); whether it was.
/// A panic in the quick answer hands the request to a decider.
fn answered_at_once(shared: &Shared, job: &mut Job) -> bool {
    let quick = || (shared.quick)(&job.request);
    if !std::panic::catch_unwind(std::panic::AssertUnwindSafe(quick)).unwrap_or(false) {
        return false;
    }
    let _ = write_reply(&mut job.stream, job.request.id, &Answer::Allowed);
    true
}

/// Queues `jobs`, oldest first: how many were queued, and the requests of those beyond
/// [`MAX_QUEUED`].
fn queue(state: &mut State, jobs: Vec<Job>) -> (usize, Vec<Request>) {
    let mut busy = Vec::new();
    let before = state.jobs.len();
    for job in jobs {
        if state.jobs.len() >= MAX_QUEUED {
            // Hung up on (the module denies): a denial like any other, in the audit.
            busy.push(job.request);
        } else {
            state.jobs.push_back(job);
        }
    }
    (state.jobs.len() - before, busy)
}

fn turn_away(shared: &Shared, busy: Vec<Request>) {
    for request in busy {
        (shared.refuse)(TurnedAway::Busy(request));
    }
}

/// Reads what `connection` sent; a whole request goes to `whole` (a malformed one is answered);
/// the connection back while its request is incomplete, `None` when it is done with.
fn advance(mut connection: Pending, whole: &mut Vec<Job>) -> Option<Pending> {
    read_some(&mut connection).ok()?;
    match progress(&connection.received) {
        Progress::Incomplete => Some(connection),
        Progress::Complete(request) => {
            whole.push(Job {
                stream: connection.stream,
                request,
            });
            None
        }
        Progress::Malformed(id, why) => {
            let _ = write_reply(&mut connection.stream, id, &Answer::Error(why));
            None
        }
    }
}

/// Accepts what waits in the backlog, and reads each request at once: the module writes it
/// whole right after connecting, so it is there already, and is decided without waiting
/// among the incomplete ones (where a flood of silent connections would evict it).
fn accept_all(shared: &Shared, pending: &mut VecDeque<Pending>, whole: &mut Vec<Job>) {
    loop {
        let stream = match shared.listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: the backlog keeps them; wait a little rather than spin.
                eprintln!("pimd: cannot accept on {PAM_SOCKET}: {e}");
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        };
        let uid = match getsockopt(&stream, PeerCredentials) {
            Ok(peer) => peer.uid(),
            Err(e) => {
                eprintln!("pimd: cannot tell who connected to {PAM_SOCKET}: {e}");
                continue;
            }
        };
        if uid != shared.allowed_uid {
            drop(stream);
            (shared.refuse)(TurnedAway::NotAllowed(uid));
            continue;
        }
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let accepted = Pending {
            stream,
            received: Vec::with_capacity(256),
            deadline: Instant::now() + REQUEST_TIMEOUT,
        };
        let Some(incomplete) = advance(accepted, whole) else {
            continue;
        };
        if pending.len() >= MAX_PENDING {
            // The oldest incomplete request goes: a client that sends nothing must not keep
            // out the ones that do.
            pending.pop_front();
        }
        pending.push_back(incomplete);
    }
}

/// Reads what is there; `Err` when the connection is to be dropped (hung up, broken, or more
/// than a request can be).
fn read_some(pending: &mut Pending) -> Result<(), ()> {
    let mut buf = [0u8; 4096];
    loop {
        match pending.stream.read(&mut buf) {
            Ok(0) => return Err(()),
            Ok(n) => {
                pending.received.extend_from_slice(&buf[..n]);
                if pending.received.len() > HEADER_BYTES + MAX_REQUEST_BODY {
                    return Err(());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
}

fn write_reply(stream: &mut UnixStream, id: u64, answer: &Answer) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(&pam_socket::encode_reply(id, answer))
}

/// Connections of callers that are not root, on their way to the audit.
#[derive(Clone)]
struct Refusals {
    queue: mpsc::Sender<u32>,
    /// Refusals that found the queue full, by uid.
    overflow: Arc<Mutex<HashMap<u32, u32>>>,
}

impl Refusals {
    /// The queue and the task that audits what it holds, one at a time, through the manager.
    fn start(core: Arc<Core>) -> Refusals {
        let (queue, mut queued) = mpsc::channel::<u32>(REFUSAL_QUEUE_LENGTH);
        let overflow = Arc::new(Mutex::new(HashMap::<u32, u32>::new()));
        let counted = overflow.clone();
        tokio::spawn(async move {
            while let Some(uid) = queued.recv().await {
                let overflowed =
                    std::mem::take(&mut *counted.lock().unwrap_or_else(PoisonError::into_inner));
                let written = core
                    .with_manager(move |m| {
                        for (uid, n) in overflowed {
                            if let Ok(caller) = m.caller(uid) {
                                m.count_turned_away(&caller, n);
                            }
                        }
                        let caller = m.caller(uid)?;
                        m.refuse_call::<()>(
                            &caller,
                            AuditAction::AccessCheck,
                            PimError::PermissionDenied(format!(
                                "only root may ask pimd's PAM socket ({PAM_SOCKET})"
                            )),
                        )
                    })
                    .await;
                if let Err(e) = written {
                    if !matches!(e, PimError::PermissionDenied(_)) {
                        eprintln!(
                            "pimd: cannot record a refusal on {PAM_SOCKET}: {}",
                            e.message()
                        );
                    }
                }
            }
        });
        Refusals { queue, overflow }
    }

    /// Hands the refusal of `uid` to the audit, or counts it when the queue is full.
    fn refuse(&self, uid: u32) {
        if self.queue.try_send(uid).is_ok() {
            return;
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
        if overflow.contains_key(&uid) || overflow.len() < MAX_OVERFLOW_UIDS {
            *overflow.entry(uid).or_default() += 1;
        } else {
            eprintln!("pimd: a connection of uid {uid} to {PAM_SOCKET} refused, uncounted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server on a socket in a fresh temporary directory, answering "allowed" for the uid
    /// of this test process, and counting its decisions.
    fn server(name: &str) -> (Server, PathBuf, Arc<AtomicUsize>) {
        slow_server(name, Duration::ZERO, Arc::new(AtomicUsize::new(0)))
    }

    /// [`server`] whose decisions take `delay`, counting those begun in `begun`.
    fn slow_server(
        name: &str,
        delay: Duration,
        begun: Arc<AtomicUsize>,
    ) -> (Server, PathBuf, Arc<AtomicUsize>) {
        let path = temp_dir(name).join("pam.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let decided = Arc::new(AtomicUsize::new(0));
        let deciders = (0..WORKERS)
            .map(|_| {
                let (decided, begun) = (decided.clone(), begun.clone());
                Box::new(move |_: Request| {
                    begun.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(delay);
                    decided.fetch_add(1, Ordering::SeqCst);
                    Answer::Allowed
                }) as Decider
            })
            .collect();
        let uid = nix::unistd::getuid().as_raw();
        let server = Server::start(
            listener,
            uid,
            Box::new(|_| false),
            deciders,
            Box::new(|_| {}),
        )
        .unwrap();
        (server, path, decided)
    }

    /// The module's exchange, bounded by `timeout` as its `timeout=` bounds it.
    fn ask(path: &Path, timeout: Duration) -> std::io::Result<Answer> {
        ask_about(path, "alice", timeout)
    }

    /// [`ask`] about `user`.
    fn ask_about(path: &Path, user: &str, timeout: Duration) -> std::io::Result<Answer> {
        let mut stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(&pam_socket::encode_request(7, user, &["sudo".into()]).unwrap())?;
        let mut head = [0u8; HEADER_BYTES];
        stream.read_exact(&mut head)?;
        let header = pam_socket::parse_reply_header(&head).unwrap();
        assert_eq!(header.id, 7);
        let mut body = vec![0u8; header.body_len];
        stream.read_exact(&mut body)?;
        Ok(pam_socket::decode_reply(&body).unwrap())
    }

    /// A fresh temporary directory for one test's socket and lock.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pimd-pam-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits until `gate` is open.
    fn wait_open(gate: &(Mutex<bool>, std::sync::Condvar)) {
        let (open, opened) = gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
    }

    /// Deciders that count the decisions begun in `begun`, wait until `gate` opens, then
    /// allow.
    fn gated_deciders(
        gate: &Arc<(Mutex<bool>, std::sync::Condvar)>,
        begun: &Arc<AtomicUsize>,
    ) -> Vec<Decider> {
        (0..WORKERS)
            .map(|_| {
                let (gate, begun) = (gate.clone(), begun.clone());
                Box::new(move |_: Request| {
                    begun.fetch_add(1, Ordering::SeqCst);
                    wait_open(&gate);
                    Answer::Allowed
                }) as Decider
            })
            .collect()
    }

    /// Reads a reply to `id`; `None` when pimd hung up without one.
    fn reply(stream: &mut UnixStream, id: u64) -> Option<Answer> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = [0u8; HEADER_BYTES];
        stream.read_exact(&mut head).ok()?;
        let header = pam_socket::parse_reply_header(&head).unwrap();
        assert_eq!(header.id, id);
        let mut body = vec![0u8; header.body_len];
        stream.read_exact(&mut body).unwrap();
        Some(pam_socket::decode_reply(&body).unwrap())
    }

    #[test]
    fn given_a_holders_request_and_then_a_flood_of_silent_connections_in_the_backlog_then_it_is_answered(
    ) {
        // All of them wait in the backlog and are accepted in one go: a request left to wait
        // among the incomplete ones would be evicted by the silent connections after it.
        let dir = temp_dir("backlog");
        let path = dir.join("pam.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let mut holder = UnixStream::connect(&path).unwrap();
        holder
            .write_all(&pam_socket::encode_request(5, "alice", &["sudo".into()]).unwrap())
            .unwrap();
        let silent: Vec<UnixStream> = (0..MAX_PENDING + 8)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let gate = Arc::new((Mutex::new(true), std::sync::Condvar::new()));
        let uid = nix::unistd::getuid().as_raw();
        let begun = Arc::new(AtomicUsize::new(0));
        let server = Server::start(
            listener,
            uid,
            Box::new(|_| false),
            gated_deciders(&gate, &begun),
            Box::new(|_| {}),
        )
        .unwrap();
        assert_eq!(reply(&mut holder, 5), Some(Answer::Allowed));
        drop(silent);
        server.stop();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_checks_held_up_in_their_decision_then_the_next_ones_are_still_accepted_and_answered() {
        // The thread that accepted a check decides it, so another must have taken the polling
        // over: while all threads but two hang in a decision, checks keep being answered.
        let dir = temp_dir("handover");
        let path = dir.join("pam.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let deciders = (0..WORKERS)
            .map(|_| {
                let gate = gate.clone();
                Box::new(move |request: Request| {
                    if request.user == "slow" {
                        wait_open(&gate);
                    }
                    Answer::Allowed
                }) as Decider
            })
            .collect();
        let uid = nix::unistd::getuid().as_raw();
        let server = Server::start(
            listener,
            uid,
            Box::new(|_| false),
            deciders,
            Box::new(|_| {}),
        )
        .unwrap();
        let held: Vec<UnixStream> = (0..WORKERS as u64 - 2)
            .map(|id| {
                let mut stream = UnixStream::connect(&path).unwrap();
                stream
                    .write_all(&pam_socket::encode_request(id, "slow", &["sudo".into()]).unwrap())
                    .unwrap();
                stream
            })
            .collect();
        for _ in 0..3 {
            assert_eq!(ask(&path, Duration::from_secs(5)).unwrap(), Answer::Allowed);
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for (id, mut stream) in held.into_iter().enumerate() {
            assert_eq!(reply(&mut stream, id as u64), Some(Answer::Allowed));
        }
        server.stop();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_every_worker_busy_and_the_queue_full_then_the_check_hung_up_on_is_turned_away_as_busy()
    {
        let dir = temp_dir("busy");
        let path = dir.join("pam.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let turned = Arc::new(Mutex::new(Vec::<TurnedAway>::new()));
        let seen = turned.clone();
        let uid = nix::unistd::getuid().as_raw();
        let begun = Arc::new(AtomicUsize::new(0));
        let server = Server::start(
            listener,
            uid,
            Box::new(|_| false),
            gated_deciders(&gate, &begun),
            Box::new(move |t| seen.lock().unwrap().push(t)),
        )
        .unwrap();
        let connect = |id: u64| {
            let mut stream = UnixStream::connect(&path).unwrap();
            let user = format!("user{id}");
            stream
                .write_all(&pam_socket::encode_request(id, &user, &["sudo".into()]).unwrap())
                .unwrap();
            (id, stream)
        };
        // Every thread but the one polling decides (and waits at the gate), MAX_QUEUED wait
        // for them, and one more is hung up on.
        let deciding = WORKERS as u64 - 1;
        let mut clients: Vec<(u64, UnixStream)> = (0..deciding).map(connect).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while begun.load(Ordering::SeqCst) < deciding as usize {
            assert!(
                Instant::now() < deadline,
                "the threads did not all start deciding"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        clients.extend((deciding..deciding + MAX_QUEUED as u64 + 1).map(connect));
        let deadline = Instant::now() + Duration::from_secs(30);
        while turned.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "nothing was turned away");
            std::thread::sleep(Duration::from_millis(5));
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let hung_up: Vec<u64> = clients
            .iter_mut()
            .filter_map(|(id, stream)| match reply(stream, *id) {
                Some(answer) => {
                    assert_eq!(answer, Answer::Allowed);
                    None
                }
                None => Some(*id),
            })
            .collect();
        assert_eq!(hung_up.len(), 1, "{hung_up:?}");
        let turned = turned.lock().unwrap().clone();
        assert_eq!(
            turned,
            [TurnedAway::Busy(Request {
                id: hung_up[0],
                user: format!("user{}", hung_up[0]),
                groups: vec!["sudo".into()],
            })]
        );
        server.stop();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A server whose quick answer allows `quick_user` (or panics for `panic_user`), and whose
    /// deciders count what they decide.
    fn quick_server(name: &str) -> (Server, PathBuf, Arc<AtomicUsize>) {
        let path = temp_dir(name).join("pam.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let decided = Arc::new(AtomicUsize::new(0));
        let deciders = (0..WORKERS)
            .map(|_| {
                let decided = decided.clone();
                Box::new(move |_: Request| {
                    decided.fetch_add(1, Ordering::SeqCst);
                    Answer::Refused("pim: decided in full".into())
                }) as Decider
            })
            .collect();
        let quick: Quick = Box::new(|request| match request.user.as_str() {
            "quick_user" => true,
            "panic_user" => panic!("a quick answer that panics"),
            _ => false,
        });
        let uid = nix::unistd::getuid().as_raw();
        let server = Server::start(listener, uid, quick, deciders, Box::new(|_| {})).unwrap();
        (server, path, decided)
    }

    fn ask_as(path: &Path, user: &str) -> Answer {
        ask_about(path, user, Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn given_a_request_the_quick_answer_allows_then_no_decider_is_asked() {
        let (server, path, decided) = quick_server("quick");
        for _ in 0..20 {
            assert_eq!(ask_as(&path, "quick_user"), Answer::Allowed);
        }
        assert_eq!(decided.load(Ordering::SeqCst), 0);
        assert_eq!(
            ask_as(&path, "other"),
            Answer::Refused("pim: decided in full".into())
        );
        assert_eq!(decided.load(Ordering::SeqCst), 1);
        server.stop();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn given_a_quick_answer_that_panics_then_the_request_is_decided_in_full_and_the_server_lives() {
        let (server, path, decided) = quick_server("quickpanic");
        assert_eq!(
            ask_as(&path, "panic_user"),
            Answer::Refused("pim: decided in full".into())
        );
        assert_eq!(decided.load(Ordering::SeqCst), 1);
        assert_eq!(ask_as(&path, "quick_user"), Answer::Allowed);
        server.stop();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn given_a_lock_file_replaced_after_it_was_locked_then_the_lock_is_not_at_its_path() {
        let dir = temp_dir("lock");
        let path = dir.join("pimd.lock");
        let lock = lock_file(&path).unwrap();
        assert!(is_at(&lock, &path).unwrap());
        assert!(lock_file(&path)
            .unwrap_err()
            .contains("another pimd is running"));
        let other = dir.join("other");
        std::fs::write(&other, b"").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(!is_at(&lock, &path).unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(!is_at(&lock, &path).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_listener_or_a_stale_socket_or_nothing_then_serving_pid_tells() {
        let dir = temp_dir("serving");
        let path = dir.join("pam.socket");
        assert_eq!(serving_pid(&path).unwrap(), None);
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(serving_pid(&path).unwrap(), Some(std::process::id() as i32));
        drop(listener);
        assert_eq!(serving_pid(&path).unwrap(), None, "a socket left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_many_connections_that_never_send_then_a_holder_is_answered_within_its_timeout() {
        let (server, path, _) = server("silent");
        // More silent connections than workers, and than the pending places: none holds a
        // worker, and the holder's connection evicts the oldest when they are all taken.
        let silent: Vec<UnixStream> = (0..MAX_PENDING + 3 * WORKERS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        for _ in 0..3 {
            assert_eq!(ask(&path, Duration::from_secs(2)).unwrap(), Answer::Allowed);
        }
        // A half-sent request does not hold a worker either.
        let mut half = UnixStream::connect(&path).unwrap();
        let request = pam_socket::encode_request(9, "bob", &["sudo".into()]).unwrap();
        half.write_all(&request[..HEADER_BYTES + 1]).unwrap();
        assert_eq!(ask(&path, Duration::from_secs(2)).unwrap(), Answer::Allowed);
        drop(silent);
        drop(half);
        server.stop();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn given_a_request_in_pieces_then_it_is_answered() {
        let (server, path, _) = server("pieces");
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let request = pam_socket::encode_request(11, "alice", &["sudo".into()]).unwrap();
        for byte in &request {
            stream.write_all(&[*byte]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut head = [0u8; HEADER_BYTES];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(pam_socket::parse_reply_header(&head).unwrap().id, 11);
        server.stop();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn given_a_malformed_header_then_an_error_reply() {
        let (server, path, decided) = server("malformed");
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&[b'?'; HEADER_BYTES]).unwrap();
        let mut head = [0u8; HEADER_BYTES];
        stream.read_exact(&mut head).unwrap();
        let header = pam_socket::parse_reply_header(&head).unwrap();
        let mut body = vec![0u8; header.body_len];
        stream.read_exact(&mut body).unwrap();
        assert!(matches!(
            pam_socket::decode_reply(&body).unwrap(),
            Answer::Error(_)
        ));
        assert_eq!(decided.load(Ordering::SeqCst), 0);
        server.stop();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn given_a_stop_then_every_thread_is_joined_after_the_last_decision() {
        let (server, path, decided) = server("stop");
        for _ in 0..5 {
            ask(&path, Duration::from_secs(5)).unwrap();
        }
        // A connection waiting in the backlog at the stop is not answered, and the stop
        // returns (it waits for no client).
        let waiting = UnixStream::connect(&path).unwrap();
        server.stop();
        assert_eq!(decided.load(Ordering::SeqCst), 5);
        drop(waiting);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn given_a_decision_under_way_at_the_stop_then_the_stop_waits_for_it() {
        // pimd finishes the denial audit after the stop: a denial decided meanwhile must be
        // queued by then.
        let begun = Arc::new(AtomicUsize::new(0));
        let (server, path, decided) =
            slow_server("under-way", Duration::from_millis(300), begun.clone());
        let asker = {
            let path = path.clone();
            std::thread::spawn(move || ask(&path, Duration::from_secs(5)))
        };
        while begun.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.stop();
        assert_eq!(decided.load(Ordering::SeqCst), 1);
        assert_eq!(asker.join().unwrap().unwrap(), Answer::Allowed);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
