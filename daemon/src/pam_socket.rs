//! The PAM module's own way in: pimd answers the access check on a root-only Unix socket at
//! [`PAM_SOCKET`], off the bus (see [`pim_common::pam_socket`] for the framing).
//!
//! The socket is bound in `/run/pim` (root's, mode 0700) with mode 0600, under a temporary
//! name renamed over the fixed one only once pimd owns its bus name: a second pimd that loses
//! the name never replaces the first's socket, and a restarted pimd replaces the one a crash
//! left behind without a moment where the path is missing.
//!
//! [`WORKERS`] threads of their own each accept on the socket and answer one connection at a
//! time, each with its own read-only [`AccessReader`]: nothing they take is shared with the
//! manager (activations, MFA, audit writes) or the async runtime, so sudo's answer never waits
//! behind other callers' work. What is more waits in the kernel's backlog (bounded; the
//! module's `timeout=` bounds its connect there), so a flood of connections costs pimd no
//! memory and no threads. Each connection's request must arrive within [`REQUEST_TIMEOUT`].
//!
//! Only root may ask (`SO_PEERCRED`; the module runs in sudo as root). Anyone else who gets to
//! connect (the socket's mode says nobody can, but a process with CAP_DAC_OVERRIDE can) is
//! hung up on before a byte is read, and refused in the audit through a bounded queue: the
//! refusals' own throttles apply, and what overflows is counted into the refusal summaries.
//! Denials go to the same bounded denial audit as the bus's.

use crate::access::AccessReader;
use crate::service::Core;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pim_common::pam_socket::{self, Answer, Request, HEADER_BYTES};
use pim_common::vocab::AuditAction;
use pim_common::PimError;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use pim_common::pam_socket::{PAM_SOCKET, PAM_SOCKET_DIR};

/// Threads answering the socket, each with its own reader: more than the cores sudo runs on
/// here, so that a few connections slow to send their request (a holder can stop their own
/// sudo with SIGSTOP right after it connected) do not hold up the others.
pub const WORKERS: usize = 4;
/// How long a connection may take to send its request. The module writes it whole right after
/// connecting, so this only bounds a stopped or broken client; it is what a stalled connection
/// can cost the one behind it.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Refusals of callers that are not root waiting for the audit; beyond, only counted.
const REFUSAL_QUEUE_LENGTH: usize = 64;
/// Callers whose overflowing refusals are counted by uid; beyond, they go uncounted (and said
/// so in the journal).
const MAX_OVERFLOW_UIDS: usize = 1024;

/// pimd's listening socket for the PAM module.
pub struct PamSocket {
    /// Where it was bound, until [`PamSocket::publish`] renames it to `path`.
    bound_at: PathBuf,
    path: PathBuf,
    /// The socket file's inode: at the fixed path once published, unless another pimd's
    /// replaced it since.
    inode: u64,
    published: bool,
}

impl PamSocket {
    /// Binds the socket under a temporary name in `/run/pim` (made root's and 0700 if it is
    /// not), and starts the threads that answer it, one per reader of `readers`. Callers that
    /// are not root are refused in the audit through `core`'s manager.
    pub fn start(
        core: Arc<Core>,
        readers: Vec<Arc<Mutex<AccessReader>>>,
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
        for reader in readers {
            let listener = listener
                .try_clone()
                .map_err(|e| format!("cannot share {}: {e}", bound_at.display()))?;
            let (core, refusals) = (core.clone(), refusals.clone());
            std::thread::Builder::new()
                .name("pam-socket".into())
                .spawn(move || serve(&listener, &reader, &core, &refusals))
                .map_err(|e| format!("cannot start the PAM socket's threads: {e}"))?;
        }
        Ok(PamSocket {
            bound_at,
            path,
            inode,
            published: false,
        })
    }

    /// Puts the socket at its fixed path, replacing whatever is there (a socket a crashed pimd
    /// left behind). Called once pimd owns its bus name.
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
}

impl Drop for PamSocket {
    /// Removes the socket, at the fixed path only while it is this one: a stopped pimd is
    /// absent (nothing there) to the module.
    fn drop(&mut self) {
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

/// One thread's work: accept, check the caller, answer, hang up; for ever.
fn serve(listener: &UnixListener, reader: &Mutex<AccessReader>, core: &Core, refusals: &Refusals) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                eprintln!("pimd: cannot accept on {PAM_SOCKET}: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let uid = match getsockopt(&stream, PeerCredentials) {
            Ok(peer) => peer.uid(),
            Err(e) => {
                eprintln!("pimd: cannot tell who connected to {PAM_SOCKET}: {e}");
                continue;
            }
        };
        if uid != 0 {
            drop(stream);
            refusals.refuse(uid);
            continue;
        }
        // A panic while answering loses that connection (the module then denies), not the
        // thread: a thread gone would be one fewer for every later sudo.
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(stream, reader, core)
        }));
        if answered.is_err() {
            eprintln!("pimd: answering on {PAM_SOCKET} failed (a panic); the check was denied");
        }
    }
}

/// Reads root's question and writes the answer; a connection that breaks down is dropped.
fn answer(mut stream: UnixStream, reader: &Mutex<AccessReader>, core: &Core) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let request = match read_request(&mut stream, deadline) {
        Ok(request) => request,
        Err(Unanswered::Gone) => return,
        Err(Unanswered::Malformed(id, why)) => {
            let _ = write_reply(&mut stream, id, &Answer::Error(why), deadline);
            return;
        }
    };
    let decided = reader
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .decide(&request.user, &request.groups);
    let reply = match decided {
        Ok(decision) if decision.allowed => Answer::Allowed,
        Ok(decision) => {
            core.queue_access_denial(request.user, request.groups, decision.message.clone());
            Answer::Refused(decision.message)
        }
        Err(e) => Answer::Error(e.message()),
    };
    let _ = write_reply(&mut stream, request.id, &reply, deadline);
}

/// Why a connection gets no decision.
enum Unanswered {
    /// It hung up, broke down or took too long: nobody to answer.
    Gone,
    /// Its request (of that id, 0 when the header itself is wrong) is malformed.
    Malformed(u64, String),
}

fn read_request(stream: &mut UnixStream, deadline: Instant) -> Result<Request, Unanswered> {
    let mut head = [0u8; HEADER_BYTES];
    read_exact(stream, &mut head, deadline)?;
    let header = pam_socket::parse_request_header(&head)
        .map_err(|e| Unanswered::Malformed(0, e.to_string()))?;
    let mut body = vec![0u8; header.body_len];
    read_exact(stream, &mut body, deadline)?;
    pam_socket::decode_request(header.id, &body)
        .map_err(|e| Unanswered::Malformed(header.id, e.to_string()))
}

fn read_exact(
    stream: &mut UnixStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), Unanswered> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(Unanswered::Gone);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(Unanswered::Gone),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(Unanswered::Gone),
        }
    }
    Ok(())
}

fn write_reply(
    stream: &mut UnixStream,
    id: u64,
    answer: &Answer,
    deadline: Instant,
) -> std::io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
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
