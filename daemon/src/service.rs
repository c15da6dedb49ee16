//! The D-Bus face of the manager: identify the caller from the bus, hand the call to the
//! domain core on a blocking thread, then publish what it left behind (syslog lines, events
//! for watchers, `notify_command`). No policy lives here.

use crate::access::{AccessReader, PassWatcher, PermanentPass, MAX_USER_NAME_BYTES};
use crate::access_snapshot::AccessSnapshots;
use crate::manager::{Caller, FleetCall, Manager, Outbox, Recipient, MAX_ACCESS_GROUPS};
use crate::model::{AuditEntry, Outcome};
use crate::syslog::{Severity, Syslog};
use crate::throttle::CallKind;
use pim_common::types::{
    AccessDecision, ActivateReply, AlertInfo, AssignmentInfo, AuditRecord, DecidedRole, EventInfo,
    FleetHostDisabled, FleetHostInfo, FleetStateInfo, GrantEnd, GrantInfo, MfaStatusInfo,
    RequestDetail, RequestInfo, ReviewInfo, ReviewItemInfo, RoleInfo,
};
use pim_common::vocab::AuditAction;
use pim_common::{text, PimError, INTERFACE, OBJECT_PATH};
use pim_config::Config;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use zbus::message::Header;
use zbus::names::{BusName, OwnedUniqueName};
use zbus::{fdo, interface, Connection};

/// Most reviewers a one-off review may name.
const MAX_REVIEWERS: usize = 64;
/// Watchers beyond this are refused, so nobody can make pimd fan out without bound.
const MAX_WATCHERS: usize = 256;
/// And per user, so that one user cannot take every place.
const MAX_WATCHERS_PER_USER: usize = 16;

/// Events queued for `notify_command` beyond this are dropped (and audited), so a stuck
/// notifier cannot make pimd hold events without bound.
const NOTIFY_QUEUE_LENGTH: usize = 1024;

/// Access denials waiting for the audit beyond this are only counted (into the refusal
/// summaries), so that a burst of refused sudo calls holds nothing without bound.
const DENIAL_QUEUE_LENGTH: usize = 256;
/// Users whose overflowing denials are counted by name; the rest are counted together.
const MAX_OVERFLOW_USERS: usize = 1024;

/// Calls one user may have in progress at once. More are turned away at once (`Busy`), before
/// any work and without waiting for anything, so that one user's flood queues nothing that
/// others' calls would wait behind. root (the PAM check, administrators' tools) is never
/// limited.
const MAX_CALLS_IN_PROGRESS: u32 = 4;

/// The calls of each user in progress, and those turned away that the audit has not counted
/// yet.
#[derive(Default)]
struct InProgress(Mutex<HashMap<u32, Calls>>);

#[derive(Default)]
struct Calls {
    running: u32,
    turned_away: u32,
}

/// One call's place among its user's calls in progress, given back when dropped.
struct Place<'a> {
    in_progress: &'a InProgress,
    uid: u32,
}

impl InProgress {
    /// A place for a call by `uid` (none needed for root), or `Busy`.
    fn enter(&self, uid: u32) -> Result<Option<Place<'_>>, PimError> {
        if uid == 0 {
            return Ok(None);
        }
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let calls = users.entry(uid).or_default();
        if calls.running >= MAX_CALLS_IN_PROGRESS {
            calls.turned_away = calls.turned_away.saturating_add(1);
            return Err(PimError::Busy(format!(
                "you already have {} calls to pimd in progress; wait for them to finish and try again",
                calls.running
            )));
        }
        calls.running += 1;
        Ok(Some(Place {
            in_progress: self,
            uid,
        }))
    }

    /// How many calls of `uid` were turned away since this was last asked.
    fn take_turned_away(&self, uid: u32) -> u32 {
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(calls) = users.get_mut(&uid) else {
            return 0;
        };
        let turned_away = std::mem::take(&mut calls.turned_away);
        if calls.running == 0 {
            users.remove(&uid);
        }
        turned_away
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut users = self
            .in_progress
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(calls) = users.get_mut(&self.uid) {
            calls.running = calls.running.saturating_sub(1);
            if calls.running == 0 && calls.turned_away == 0 {
                users.remove(&self.uid);
            }
        }
    }
}

/// Checks the length of each argument `(name, value, most bytes)` of a call and only then
/// copies them: the first thing done with what a caller sends, before anything is escaped or
/// waits for a lock.
fn bounded_copies<const N: usize>(
    arguments: [(&str, &str, usize); N],
) -> Result<[String; N], PimError> {
    for (name, value, max) in &arguments {
        text::check_len(&format!("the {name}"), value, *max).map_err(PimError::InvalidArgument)?;
    }
    Ok(arguments.map(|(_, value, _)| value.to_owned()))
}

/// [`bounded_copies`] for AdminReviewStart's list of reviewers, which the call borrows from
/// the message: how many, then the length of each, and only then copies.
fn bounded_reviewers(reviewers: &[&str]) -> Result<Vec<String>, PimError> {
    if reviewers.len() > MAX_REVIEWERS {
        return Err(PimError::InvalidArgument(format!(
            "the reviewers name {} entries; at most {MAX_REVIEWERS} are allowed",
            reviewers.len()
        )));
    }
    for r in reviewers {
        // "%" and a group name.
        text::check_len("a reviewer", r, text::MAX_NAME_BYTES + 1)
            .map_err(PimError::InvalidArgument)?;
    }
    Ok(reviewers.iter().map(|r| r.to_string()).collect())
}

impl PassWatcher for Core {
    fn permanent_passed(&self, passes: Vec<PermanentPass>) {
        let _ = self.passes.try_send(passes);
    }
}

/// An access denial for the audit.
struct Denial {
    user: String,
    groups: Vec<String>,
    message: String,
}

/// The access check's denials, on their way to the one task that audits them: the answer to
/// sudo never waits for the manager, and what waits is bounded.
struct DenialAudit {
    queue: mpsc::Sender<Denial>,
    /// Denials that found the queue full, by user: counted into the refusal summaries.
    overflow: Mutex<HashMap<String, u32>>,
    /// pimd is stopping: the writer takes what is queued and ends.
    stop: Notify,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What one call on the manager leaves for the outside world.
struct Published {
    audit: Vec<AuditEntry>,
    /// Lines that are not audit records (the audit chain's head).
    syslog: Vec<(Severity, String)>,
    /// Each event with whom it is for, when there is a `notify_command` to tell.
    events: Vec<(EventInfo, Vec<Recipient>)>,
    /// Each event paired with each watcher allowed to see it.
    deliveries: Vec<(OwnedUniqueName, EventInfo)>,
}

/// State shared by the bus interface and the expiry task.
pub struct Core {
    manager: Mutex<Manager>,
    syslog: Syslog,
    watchers: Mutex<HashMap<OwnedUniqueName, Caller>>,
    /// Wakes the expiry task when deadlines may have moved.
    pub wake: tokio::sync::Notify,
    /// The bus connection of the moment (a new one after the bus came back).
    connection: Mutex<Option<Connection>>,
    notify_command: Vec<String>,
    notify_timeout: Duration,
    /// Events waiting for `notify_command`, run one at a time in the order they happened.
    notify_queue: Option<mpsc::Sender<(EventInfo, Vec<Recipient>)>>,
    in_progress: InProgress,
    denials: DenialAudit,
    /// PAM checks a `permanent` listing let through, on their way to the alerts
    /// (`break-glass-used`): the answer never waits for the manager; beyond the queue's
    /// length they are dropped (the alert is raised once anyway).
    passes: mpsc::Sender<Vec<PermanentPass>>,
}

impl Core {
    pub fn new(manager: Manager) -> Arc<Core> {
        let notify_command = manager.config().daemon.notify_command.clone();
        let notify_timeout = Duration::from_secs(manager.config().daemon.notify_timeout_secs);
        let (queue, pending) = if notify_command.is_empty() {
            (None, None)
        } else {
            let (sender, receiver) = mpsc::channel(NOTIFY_QUEUE_LENGTH);
            (Some(sender), Some(receiver))
        };
        let (denial_queue, queued_denials) = mpsc::channel(DENIAL_QUEUE_LENGTH);
        let (passes, queued_passes) = mpsc::channel(DENIAL_QUEUE_LENGTH);
        let core = Arc::new(Core {
            manager: Mutex::new(manager),
            syslog: Syslog::new(),
            watchers: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            connection: Mutex::new(None),
            notify_command,
            notify_timeout,
            notify_queue: queue,
            in_progress: InProgress::default(),
            denials: DenialAudit {
                queue: denial_queue,
                overflow: Mutex::new(HashMap::new()),
                stop: Notify::new(),
                writer: Mutex::new(None),
            },
            passes,
        });
        tokio::spawn(core.clone().raise_break_glass(queued_passes));
        let writer = tokio::spawn(core.clone().write_denials(queued_denials));
        *core
            .denials
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(writer);
        if let Some(mut pending) = pending {
            let worker = core.clone();
            tokio::spawn(async move {
                while let Some((event, recipients)) = pending.recv().await {
                    worker.run_notify_command(event, recipients).await;
                }
            });
        }
        core
    }

    /// Raises `break-glass-used` for each permanent pass, one batch at a time.
    async fn raise_break_glass(self: Arc<Self>, mut queued: mpsc::Receiver<Vec<PermanentPass>>) {
        while let Some(passes) = queued.recv().await {
            if let Err(e) = self.with_manager(move |m| m.break_glass_used(passes)).await {
                eprintln!("pimd: cannot raise break-glass-used: {}", e.message());
            }
        }
    }

    /// Hands the PAM socket's denial of `user` to the same bounded audit as the bus's.
    pub fn queue_access_denial(&self, user: String, groups: Vec<String>, message: String) {
        self.queue_denial(Denial {
            user,
            groups,
            message,
        });
    }

    /// Hands an access denial to the audit writer, or counts it when the queue is full.
    fn queue_denial(&self, denial: Denial) {
        let Err(e) = self.denials.queue.try_send(denial) else {
            return;
        };
        let (mpsc::error::TrySendError::Full(denial) | mpsc::error::TrySendError::Closed(denial)) =
            e;
        let mut overflow = self
            .denials
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let user = if overflow.contains_key(&denial.user) || overflow.len() < MAX_OVERFLOW_USERS {
            denial.user
        } else {
            crate::refusals::OTHERS.to_string()
        };
        *overflow.entry(user).or_default() += 1;
    }

    /// The audit writer: one denial at a time, each with the count of those that overflowed
    /// meanwhile; when pimd stops, what is queued and what was counted.
    async fn write_denials(self: Arc<Self>, mut queued: mpsc::Receiver<Denial>) {
        loop {
            let denial = tokio::select! {
                biased;
                () = self.denials.stop.notified() => {
                    // Refuse new ones (they are counted) and take the rest.
                    queued.close();
                    continue;
                }
                denial = queued.recv() => denial,
            };
            let last = denial.is_none();
            let overflow = std::mem::take(
                &mut *self
                    .denials
                    .overflow
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            let written = self
                .with_manager(move |m| {
                    for (user, n) in overflow {
                        m.count_access_denials(&user, n);
                    }
                    match denial {
                        Some(d) => m.audit_access_denial(&d.user, &d.groups, &d.message),
                        None => Ok(()),
                    }
                })
                .await;
            if let Err(e) = written {
                eprintln!("pimd: cannot record an access refusal: {}", e.message());
            }
            if last {
                // Closed and empty: what overflowed was counted above.
                return;
            }
        }
    }

    /// Writes the access denials still queued or counted (pimd is stopping): after this, the
    /// refusal summaries hold every denial.
    pub async fn finish_denial_audit(&self) {
        self.denials.stop.notify_one();
        let writer = self
            .denials
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }

    /// The connection events go out on; the bus's next connection replaces the last.
    pub fn set_connection(&self, connection: Connection) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection);
    }

    /// Runs `f` on the manager on a blocking thread (SQLite and gpasswd block), then publishes
    /// its outbox. Calls are serialised: one code, one grant, one decision at a time.
    pub async fn with_manager<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Manager) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        let core = self.clone();
        let (result, outbox) = tokio::task::spawn_blocking(move || {
            // A panic in an earlier call leaves nothing half-done in memory (the state is in
            // SQLite), so a poisoned lock is safe to take over.
            let mut manager = core.manager.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut manager);
            (result, core.drain(&mut manager))
        })
        .await
        .map_err(|e| PimError::Internal(format!("pimd worker failed: {e}; nothing was changed")))?;
        self.publish(outbox).await;
        result
    }

    /// Runs the rest of a call in steps: each network part on a blocking thread with the
    /// manager's lock free (expiry, the mirror and the audit go on while the fleet's database
    /// is slow or gone), each step after it on the manager.
    pub async fn finish_steps<T: Send + 'static>(
        self: &Arc<Self>,
        mut call: FleetCall<T>,
    ) -> Result<T, PimError> {
        loop {
            let network = match call {
                FleetCall::Done(result) => return result,
                FleetCall::Remote(network) => network,
            };
            let then = tokio::task::spawn_blocking(network).await.map_err(|e| {
                PimError::Internal(format!("pimd worker failed: {e}; nothing was changed"))
            })?;
            call = self.with_manager(move |m| Ok(then(m))).await?;
        }
    }

    /// Takes what the manager left behind and, while its lock is still held, works out which
    /// watcher may see which event: the async thread then never waits for the manager.
    fn drain(&self, manager: &mut Manager) -> Published {
        let Outbox {
            audit,
            events,
            syslog,
        } = manager.take_outbox();
        let mut deliveries = Vec::new();
        if !events.is_empty() {
            let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
            for event in &events {
                for (name, caller) in watchers.iter() {
                    if manager.may_see(caller, event) {
                        deliveries.push((name.clone(), event.clone()));
                    }
                }
            }
        }
        // Whom each event is for, while the configuration and accounts are at hand.
        let notifying = self.notify_queue.is_some();
        let events = events
            .into_iter()
            .map(|event| {
                let recipients = if notifying {
                    manager.recipients(&event)
                } else {
                    Vec::new()
                };
                (event, recipients)
            })
            .collect();
        Published {
            audit,
            syslog,
            events,
            deliveries,
        }
    }

    /// Copies committed audit records to syslog. The database is the authoritative audit;
    /// syslog may be absent, so failures to send are ignored.
    fn log_audit(&self, entries: &[AuditEntry]) {
        for entry in entries {
            let severity = match entry.outcome {
                Outcome::Success => Severity::Info,
                Outcome::Refused => Severity::Notice,
                Outcome::Error => Severity::Error,
            };
            let _ = self.syslog.send(severity, &syslog_message(entry));
        }
    }

    /// Sends what the manager left for syslog: audit records, then the other lines.
    fn log_published(&self, published: &Published) {
        self.log_audit(&published.audit);
        for (severity, line) in &published.syslog {
            let _ = self.syslog.send(*severity, line);
        }
    }

    async fn publish(self: &Arc<Self>, published: Published) {
        self.log_published(&published);
        if published.events.is_empty() {
            return;
        }
        self.wake.notify_one();
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(connection) = connection {
            for (name, event) in &published.deliveries {
                // Unicast: only this watcher receives it.
                let _ = connection
                    .emit_signal(
                        Some(name.as_ref()),
                        OBJECT_PATH,
                        INTERFACE,
                        "Event",
                        &(event,),
                    )
                    .await;
            }
        }
        for notice in published.events {
            if let Some(queue) = &self.notify_queue {
                if let Err(e) = queue.try_send(notice) {
                    let (event, _) = match e {
                        mpsc::error::TrySendError::Full(notice)
                        | mpsc::error::TrySendError::Closed(notice) => notice,
                    };
                    self.audit_notify_failure(
                        event,
                        "notify queue full; event not delivered".into(),
                    )
                    .await;
                }
            }
        }
    }

    /// Runs `notify_command` with the event as JSON on stdin (see [`notify_json`]), bounded
    /// by `notify_timeout`. It never affects a decision; a failure is audited.
    async fn run_notify_command(self: &Arc<Self>, event: EventInfo, recipients: Vec<Recipient>) {
        let json = notify_json(&event, &recipients);
        let program = &self.notify_command[0];
        let attempt = async {
            let mut child = tokio::process::Command::new(program)
                .args(&self.notify_command[1..])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("could not start {program}: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(json.as_bytes())
                    .await
                    .map_err(|e| format!("could not write the event to {program}: {e}"))?;
            }
            let status = child.wait().await.map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{program} exited with {status}"))
            }
        };
        let failure = match tokio::time::timeout(self.notify_timeout, attempt).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => format!(
                "{program} did not finish within {}s and was killed",
                self.notify_timeout.as_secs()
            ),
        };
        let detail = format!(
            "event {} for request {}: {failure}",
            event.kind, event.request_id
        );
        self.audit_notify_failure(event, detail).await;
    }

    /// Not through `with_manager`: this audit produces no events, and must not notify again.
    async fn audit_notify_failure(self: &Arc<Self>, event: EventInfo, detail: String) {
        let core = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut manager = core.manager.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = manager.audit_notify_failure(&event, &detail) {
                eprintln!(
                    "pimd: cannot audit a notify_command failure: {}",
                    e.message()
                );
            }
            let published = core.drain(&mut manager);
            drop(manager);
            core.log_published(&published);
        })
        .await;
    }

    /// Registers a watcher; true when it is new (and so needs its departure followed).
    fn add_watcher(&self, name: OwnedUniqueName, caller: Caller) -> Result<bool, PimError> {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if !watchers.contains_key(&name) {
            let own = watchers.values().filter(|c| c.uid == caller.uid).count();
            if own >= MAX_WATCHERS_PER_USER {
                return Err(PimError::Conflict(format!(
                    "you already have {own} 'pim watch' sessions; end one first"
                )));
            }
            if watchers.len() >= MAX_WATCHERS {
                return Err(PimError::Conflict(
                    "too many watchers; try again later".into(),
                ));
            }
        }
        Ok(watchers.insert(name, caller).is_none())
    }

    /// Forgets watchers whose connection has gone.
    pub fn remove_watcher(&self, name: &str) {
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|n, _| n.as_str() != name);
    }
}

/// What `notify_command` reads on its standard input: one JSON object, the event's fields as
/// they always were (`kind`, `at`, `user`, `role`, `request_id`, `grant_id`, `actor`,
/// `detail`) and `recipients`, whom it is for: `[{"name": "bob", "as": ["approver"]}, ...]`
/// (see `manager/recipients.rs` and `packaging/notify/README.md`).
fn notify_json(event: &EventInfo, recipients: &[Recipient]) -> String {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "recipients".into(),
            serde_json::to_value(recipients).unwrap_or_default(),
        );
    }
    value.to_string()
}

/// One syslog line per audit record, with the user's words escaped.
fn syslog_message(e: &AuditEntry) -> String {
    let mut line = format!(
        "{} {}: actor={} user={} role={}",
        e.action,
        e.outcome.as_str(),
        syslog_name(&e.actor),
        syslog_name(&e.user),
        syslog_name(&e.role)
    );
    for (key, value) in [
        ("reason", &e.reason),
        ("ticket", &e.ticket),
        ("detail", &e.detail),
    ] {
        if !value.is_empty() {
            line.push_str(&format!(" {key}={}", syslog_quoted(value)));
        }
    }
    line
}

/// A name (actor, user, role) for a syslog line: bare when it is made only of ASCII letters,
/// digits and `._-$@` (every name useradd and the configuration accept, and `user@domain`),
/// else quoted like user text. The actor is whatever NSS calls the caller and is never
/// validated: a winbind or sssd name such as `DOMAIN\John Smith`, or one holding `=`, `"` or
/// an invisible character, must not forge a field nor reach the log raw.
fn syslog_name(name: &str) -> Cow<'_, str> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '$' | '@'));
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(syslog_quoted(name))
    }
}

/// A value for a syslog line, in quotes. No control character and no quote from it reaches
/// the line, so it can neither forge a line nor end the value and forge the fields after it:
/// a quote becomes \x22, after `escape` has doubled backslashes (so that a typed "\x22" stays
/// distinguishable).
fn syslog_quoted(value: &str) -> String {
    format!("\"{}\"", text::escape(value).replace('"', "\\x22"))
}

/// Drops a watcher when its connection leaves the bus. The match rule names this one
/// connection: a rule for every NameOwnerChanged would wake pimd for each PAM check's
/// short-lived connection, on the path sudo waits on.
async fn forget_when_gone(core: Arc<Core>, bus: fdo::DBusProxy<'static>, name: String) {
    use futures_util::StreamExt;
    if let Ok(mut changes) = bus
        .receive_name_owner_changed_with_args(&[(0, name.as_str())])
        .await
    {
        // It may have left before the rule was in place.
        let present = match BusName::try_from(name.as_str()) {
            Ok(bus_name) => matches!(bus.name_has_owner(bus_name).await, Ok(true)),
            Err(_) => false,
        };
        if present {
            while let Some(change) = changes.next().await {
                if change.args().is_ok_and(|a| a.new_owner().is_none()) {
                    break;
                }
            }
        }
    }
    core.remove_watcher(&name);
}

/// Connections whose uid is kept; beyond this the record starts afresh.
const KEPT_CALLER_UIDS: usize = 4096;
/// How long pimd waits for the bus to say who a caller is. A bus whose queue to pimd is full
/// (a flood of large messages) drops its answers: without a bound such a call would wait, and
/// hold its message, for ever.
const CALLER_UID_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ManagerService {
    core: Arc<Core>,
    bus: fdo::DBusProxy<'static>,
    /// CheckAccess's read path, shared with the reload that swaps its configuration.
    access: Arc<AccessReaders>,
    /// The uid of each connection that called, as the bus said. A connection's credentials
    /// are fixed when it connects and the bus never reuses a unique name, so what is kept
    /// stays true; it saves a round trip to the bus on every call after a connection's first.
    caller_uids: Mutex<HashMap<OwnedUniqueName, u32>>,
}

impl ManagerService {
    pub fn new(core: Arc<Core>, bus: fdo::DBusProxy<'static>, access: Arc<AccessReaders>) -> Self {
        ManagerService {
            core,
            bus,
            access,
            caller_uids: Mutex::new(HashMap::new()),
        }
    }

    /// The uid the bus gave for the sending connection at an earlier call, if any.
    fn kept_uid(&self, header: &Header<'_>) -> Option<u32> {
        let sender = header.sender()?;
        self.caller_uids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sender.as_str())
            .copied()
    }

    /// The caller's uid, from the bus's record of the sending connection: never from
    /// anything the caller says.
    async fn caller_uid(&self, header: &Header<'_>) -> Result<u32, PimError> {
        let sender = header
            .sender()
            .ok_or_else(|| PimError::PermissionDenied("message without a sender".into()))?;
        if let Some(uid) = self.kept_uid(header) {
            return Ok(uid);
        }
        let asked = self
            .bus
            .get_connection_unix_user(BusName::from(sender.clone()));
        let uid = tokio::time::timeout(CALLER_UID_TIMEOUT, asked)
            .await
            .map_err(|_| {
                PimError::PermissionDenied(format!(
                    "cannot identify the caller: the bus did not answer within {}s",
                    CALLER_UID_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| PimError::PermissionDenied(format!("cannot identify the caller: {e}")))?;
        let mut uids = self
            .caller_uids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if uids.len() >= KEPT_CALLER_UIDS {
            uids.clear();
        }
        uids.insert(sender.to_owned().into(), uid);
        Ok(uid)
    }

    /// The access question from a bus caller. Root's answer never waits behind other callers'
    /// work: it comes from the access check's own read path, which holds nothing the manager's
    /// writers hold, off the async thread. Nothing is read before the bus has said who is
    /// calling: the PAM module asks on pimd's own socket, and a read started on the chance that
    /// a bus caller is root would be work done for every flooder's call.
    async fn answer_access(
        &self,
        h: &Header<'_>,
        user: String,
        groups: Vec<String>,
    ) -> Result<AccessDecision, PimError> {
        if self.caller_uid(h).await? != 0 {
            // Refused and audited there.
            return self
                .access_check_call(h, move |m, c| m.check_access(c, &user, &groups))
                .await;
        }
        answer_root(&self.core, &self.access, user, groups).await
    }

    /// An access check the manager answers itself (asked by a caller other than root, or with
    /// arguments too long): no call limit applies; a refusal is audited as `access-check`.
    async fn access_check_call<T: Send + 'static>(
        &self,
        header: &Header<'_>,
        f: impl FnOnce(&mut Manager, &Caller) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        let action = AuditAction::AccessCheck;
        self.limited_call(header, action, None, Ok(()), |m, c, ()| f(m, c))
            .await
    }

    /// A call of the clients that only reads and takes no text, refused as `action` beyond the
    /// caller's reads a minute (it holds the manager, which expiry and other calls wait for).
    async fn read_call<T: Send + 'static>(
        &self,
        header: &Header<'_>,
        action: AuditAction,
        f: impl FnOnce(&mut Manager, &Caller) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        self.limited_call(header, action, Some(CallKind::Reads), Ok(()), |m, c, ()| {
            f(m, c)
        })
        .await
    }

    /// [`Self::limited_steps`] of a call that needs no fleet authority.
    async fn limited_call<A: Send + 'static, T: Send + 'static>(
        &self,
        header: &Header<'_>,
        action: AuditAction,
        limit: Option<CallKind>,
        args: Result<A, PimError>,
        f: impl FnOnce(&mut Manager, &Caller, A) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        self.limited_steps(header, action, limit, args, move |m, c, a| {
            FleetCall::Done(f(m, c, a))
        })
        .await
    }

    /// A reading call in steps (it may need the fleet's authority), as [`Self::read_call`].
    async fn read_steps<T: Send + 'static>(
        &self,
        header: &Header<'_>,
        action: AuditAction,
        f: impl FnOnce(&mut Manager, &Caller) -> FleetCall<T> + Send + 'static,
    ) -> Result<T, PimError> {
        self.limited_steps(header, action, Some(CallKind::Reads), Ok(()), |m, c, ()| {
            f(m, c)
        })
        .await
    }

    /// Runs `f` on `args` for the caller within the limits: at most [`MAX_CALLS_IN_PROGRESS`]
    /// at once; for a call of kind `limit`, at most the kind's calls a minute;
    /// and only when `args` is not an error (the arguments' own copies, made once
    /// [`bounded_copies`] made them within bounds). Else the call is refused as `action` and
    /// the refusal audited. A call to the fleet's authority runs its network parts with the
    /// manager free ([`Core::finish_steps`]).
    async fn limited_steps<A: Send + 'static, T: Send + 'static>(
        &self,
        header: &Header<'_>,
        action: AuditAction,
        limit: Option<CallKind>,
        args: Result<A, PimError>,
        f: impl FnOnce(&mut Manager, &Caller, A) -> FleetCall<T> + Send + 'static,
    ) -> Result<T, PimError> {
        let uid = self.caller_uid(header).await?;
        let place = self.core.in_progress.enter(uid)?;
        let first = self
            .core
            .with_manager(move |m| {
                let caller = m.caller(uid)?;
                if let Some(kind) = limit {
                    m.admit_call(&caller, action, kind)?;
                }
                Ok(match args {
                    Ok(args) => f(m, &caller, args),
                    Err(e) => FleetCall::Done(m.refuse_call(&caller, action, e)),
                })
            })
            .await;
        let result = match first {
            Ok(call) => self.core.finish_steps(call).await,
            Err(e) => Err(e),
        };
        // Calls are turned away only while others run: each one that ends hands over those
        // turned away meanwhile, so the last to end leaves none uncounted.
        drop(place);
        let turned_away = self.core.in_progress.take_turned_away(uid);
        if turned_away > 0 {
            let counted = self
                .core
                .with_manager(move |m| {
                    let caller = m.caller(uid)?;
                    m.count_turned_away(&caller, turned_away);
                    Ok(())
                })
                .await;
            if counted.is_err() {
                eprintln!("pimd: {turned_away} call(s) of uid {uid} turned away went uncounted");
            }
        }
        result
    }
}

impl ManagerService {
    /// `AdminAssign` and `AdminAssignActive`: `[user, role, reason]` (no reason for an
    /// eligible one).
    async fn assign_call(
        &self,
        h: &Header<'_>,
        [user, role, reason]: [&str; 3],
        not_before: i64,
        not_after: i64,
        active: bool,
    ) -> Result<String, PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
        ]);
        let action = if active {
            AuditAction::AdminAssignActive
        } else {
            AuditAction::AdminAssign
        };
        let warning = self
            .limited_call(
                h,
                action,
                Some(CallKind::Admin),
                args,
                move |m, c, [user, role, reason]| {
                    if active {
                        m.admin_assign_active(c, &user, &role, not_before, not_after, &reason)
                    } else {
                        m.admin_assign(c, &user, &role, not_before, not_after)
                    }
                },
            )
            .await?;
        // The assignment's start, end and notices may be reconciliation's next deadline, and
        // reconciliation finishes what a warning says did not go through.
        self.core.wake.notify_one();
        Ok(warning)
    }
}

#[interface(name = "org.pim.Manager1")]
impl ManagerService {
    async fn list_roles(&self, #[zbus(header)] h: Header<'_>) -> Result<Vec<RoleInfo>, PimError> {
        self.read_call(&h, AuditAction::ListRoles, |m, c| m.list_roles(c))
            .await
    }

    async fn activate(
        &self,
        #[zbus(header)] h: Header<'_>,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
    ) -> Result<ActivateReply, PimError> {
        // Borrowed from the message, and copied only once known to be within bounds.
        let args = bounded_copies([
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
            ("ticket", ticket, text::MAX_TICKET_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::Activate,
            Some(CallKind::Grants),
            args,
            move |m, c, [role, reason, ticket, code]| {
                m.fleet_or_local(
                    |m| m.fleet_activate(c, &role, duration_secs, &reason, &ticket, &code, None),
                    |m| m.activate(c, &role, duration_secs, &reason, &ticket, &code),
                )
            },
        )
        .await
    }

    async fn deactivate(
        &self,
        #[zbus(header)] h: Header<'_>,
        role: &str,
    ) -> Result<GrantInfo, PimError> {
        let args = bounded_copies([("role", role, text::MAX_NAME_BYTES)]);
        self.limited_steps(
            &h,
            AuditAction::Deactivate,
            Some(CallKind::Grants),
            args,
            move |m, c, [role]| {
                m.fleet_or_local(|m| m.fleet_deactivate(c, &role), |m| m.deactivate(c, &role))
            },
        )
        .await
    }

    async fn extend(
        &self,
        #[zbus(header)] h: Header<'_>,
        role: &str,
        duration_secs: u64,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError> {
        let args = bounded_copies([
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_call(
            &h,
            AuditAction::Extend,
            Some(CallKind::Grants),
            args,
            move |m, c, [role, reason, code]| m.extend(c, &role, duration_secs, &reason, &code),
        )
        .await
    }

    async fn status(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<(Vec<GrantInfo>, Vec<RequestInfo>, Vec<GrantEnd>), PimError> {
        self.read_call(&h, AuditAction::Status, |m, c| {
            let (grants, requests) = m.status(c)?;
            Ok((grants, requests, m.grant_ends(c)?))
        })
        .await
    }

    async fn mfa_enroll(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<(String, String), PimError> {
        self.limited_steps(
            &h,
            AuditAction::MfaEnroll,
            Some(CallKind::Mfa),
            Ok(()),
            |m, c, ()| m.fleet_or_local(|m| m.fleet_mfa_enroll(c, ""), |m| m.mfa_enroll(c)),
        )
        .await
    }

    async fn mfa_enroll_with_ticket(
        &self,
        #[zbus(header)] h: Header<'_>,
        ticket: &str,
    ) -> Result<(String, String), PimError> {
        let args = bounded_copies([("ticket", ticket, crate::manager::MAX_TICKET_BYTES)]);
        self.limited_steps(
            &h,
            AuditAction::MfaEnroll,
            Some(CallKind::Mfa),
            args,
            move |m, c, [ticket]| {
                m.fleet_or_local(
                    |m| m.fleet_mfa_enroll(c, &ticket),
                    |m| m.mfa_enroll_with_ticket(c, &ticket),
                )
            },
        )
        .await
    }

    async fn mfa_confirm(
        &self,
        #[zbus(header)] h: Header<'_>,
        code: &str,
    ) -> Result<Vec<String>, PimError> {
        let args = bounded_copies([("code", code, text::MAX_CODE_BYTES)]);
        self.limited_steps(
            &h,
            AuditAction::MfaConfirm,
            Some(CallKind::Mfa),
            args,
            move |m, c, [code]| {
                m.fleet_or_local(
                    |m| m.fleet_mfa_confirm(c, &code),
                    |m| m.mfa_confirm(c, &code),
                )
            },
        )
        .await
    }

    async fn mfa_status(&self, #[zbus(header)] h: Header<'_>) -> Result<MfaStatusInfo, PimError> {
        self.read_steps(&h, AuditAction::MfaStatus, |m, c| {
            m.fleet_or_local(|m| m.fleet_mfa_status(c), |m| m.mfa_status(c))
        })
        .await
    }

    async fn mfa_rotate(
        &self,
        #[zbus(header)] h: Header<'_>,
        code: &str,
    ) -> Result<(String, String), PimError> {
        let args = bounded_copies([("code", code, text::MAX_CODE_BYTES)]);
        self.limited_call(
            &h,
            AuditAction::MfaRotate,
            Some(CallKind::Mfa),
            args,
            move |m, c, [code]| m.mfa_rotate(c, &code),
        )
        .await
    }

    async fn mfa_recovery_codes(
        &self,
        #[zbus(header)] h: Header<'_>,
        code: &str,
    ) -> Result<Vec<String>, PimError> {
        let args = bounded_copies([("code", code, text::MAX_CODE_BYTES)]);
        self.limited_call(
            &h,
            AuditAction::MfaRecoveryCodes,
            Some(CallKind::Mfa),
            args,
            move |m, c, [code]| m.mfa_recovery_codes(c, &code),
        )
        .await
    }

    async fn audit(
        &self,
        #[zbus(header)] h: Header<'_>,
        since: i64,
        user: &str,
        role: &str,
    ) -> Result<Vec<AuditRecord>, PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("role", role, text::MAX_NAME_BYTES),
        ]);
        self.limited_call(
            &h,
            AuditAction::AuditRead,
            Some(CallKind::Reads),
            args,
            move |m, c, [user, role]| m.audit(c, since, &user, &role),
        )
        .await
    }

    /// Walks the audit chain (admins and auditors): see `manager/chain.rs`.
    async fn verify_audit(
        &self,
        #[zbus(header)] h: Header<'_>,
        head: &str,
    ) -> Result<pim_common::chain::Verification, PimError> {
        // ID:HASH is at most 20 digits, ':' and 64 hex digits.
        let args = bounded_copies([("head", head, 128)]);
        self.limited_call(
            &h,
            AuditAction::AuditVerify,
            Some(CallKind::Reads),
            args,
            move |m, c, [head]| m.verify_audit(c, &head),
        )
        .await
    }

    async fn list_requests(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<Vec<RequestInfo>, PimError> {
        self.read_steps(&h, AuditAction::ListRequests, |m, c| {
            m.fleet_or_local(|m| m.fleet_requests(c), |m| m.list_requests(c))
        })
        .await
    }

    async fn approve(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        let args = bounded_copies([
            ("comment", comment, text::MAX_REASON_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::Approve,
            Some(CallKind::Decisions),
            args,
            move |m, c, [comment, code]| {
                m.fleet_or_local(
                    |m| m.fleet_decide(c, id, &comment, &code, true),
                    |m| m.approve(c, id, &comment, &code),
                )
            },
        )
        .await
    }

    async fn deny(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        let args = bounded_copies([
            ("comment", comment, text::MAX_REASON_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::Deny,
            Some(CallKind::Decisions),
            args,
            move |m, c, [comment, code]| {
                m.fleet_or_local(
                    |m| m.fleet_decide(c, id, &comment, &code, false),
                    |m| m.deny(c, id, &comment, &code),
                )
            },
        )
        .await
    }

    async fn cancel(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
    ) -> Result<RequestInfo, PimError> {
        self.limited_steps(
            &h,
            AuditAction::Cancel,
            Some(CallKind::Grants),
            Ok(()),
            move |m, c, ()| m.fleet_or_local(|m| m.fleet_cancel(c, id), |m| m.cancel(c, id)),
        )
        .await
    }

    async fn watch(&self, #[zbus(header)] h: Header<'_>) -> Result<(), PimError> {
        let sender = h
            .sender()
            .ok_or_else(|| PimError::PermissionDenied("message without a sender".into()))?
            .to_owned();
        let caller = self
            .read_call(&h, AuditAction::Watch, |_, c| Ok(c.clone()))
            .await?;
        if self.core.add_watcher(sender.clone().into(), caller)? {
            tokio::spawn(forget_when_gone(
                self.core.clone(),
                self.bus.clone(),
                sender.to_string(),
            ));
        }
        Ok(())
    }

    #[zbus(signal)]
    async fn event(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        event: EventInfo,
    ) -> zbus::Result<()>;

    async fn admin_grants(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<Vec<GrantInfo>, PimError> {
        self.read_call(&h, AuditAction::AdminGrants, |m, c| m.admin_grants(c))
            .await
    }

    async fn admin_assign(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<String, PimError> {
        self.assign_call(&h, [user, role, ""], not_before, not_after, false)
            .await
    }

    async fn admin_assign_active(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
        reason: &str,
    ) -> Result<String, PimError> {
        self.assign_call(&h, [user, role, reason], not_before, not_after, true)
            .await
    }

    async fn renew(
        &self,
        #[zbus(header)] h: Header<'_>,
        role: &str,
        until: i64,
        reason: &str,
    ) -> Result<RequestDetail, PimError> {
        let args = bounded_copies([
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
        ]);
        let reply = self
            .limited_call(
                &h,
                AuditAction::RenewRequest,
                Some(CallKind::Grants),
                args,
                move |m, c, [role, reason]| m.renew(c, &role, until, &reason),
            )
            .await?;
        self.core.wake.notify_one();
        Ok(reply)
    }

    async fn show_request(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
    ) -> Result<RequestDetail, PimError> {
        self.read_steps(&h, AuditAction::ShowRequest, move |m, c| {
            m.fleet_or_local(|m| m.fleet_show_request(c, id), |m| m.show_request(c, id))
        })
        .await
    }

    async fn my_assignments(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<Vec<AssignmentInfo>, PimError> {
        self.read_call(&h, AuditAction::Assignments, |m, c| m.my_assignments(c))
            .await
    }

    async fn admin_unassign(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        role: &str,
    ) -> Result<(GrantInfo, String), PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("role", role, text::MAX_NAME_BYTES),
        ]);
        let reply = self
            .limited_call(
                &h,
                AuditAction::AdminUnassign,
                Some(CallKind::Admin),
                args,
                move |m, c, [user, role]| m.admin_unassign(c, &user, &role),
            )
            .await?;
        if !reply.1.is_empty() {
            // Reconciliation finishes what did not go through.
            self.core.wake.notify_one();
        }
        Ok(reply)
    }

    async fn admin_revoke(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        role: &str,
        reason: &str,
    ) -> Result<GrantInfo, PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::AdminRevoke,
            Some(CallKind::Admin),
            args,
            move |m, c, [user, role, reason]| {
                m.fleet_or_local(
                    |m| m.fleet_revoke(c, &user, &role, &reason, ""),
                    |m| m.admin_revoke(c, &user, &role, &reason),
                )
            },
        )
        .await
    }

    async fn admin_mfa_reset(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
    ) -> Result<(), PimError> {
        let args = bounded_copies([("user", user, text::MAX_NAME_BYTES)]);
        self.limited_call(
            &h,
            AuditAction::AdminMfaReset,
            Some(CallKind::Admin),
            args,
            move |m, c, [user]| m.admin_mfa_reset(c, &user),
        )
        .await
    }

    async fn admin_mfa_unlock(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
    ) -> Result<(), PimError> {
        let args = bounded_copies([("user", user, text::MAX_NAME_BYTES)]);
        self.limited_call(
            &h,
            AuditAction::AdminMfaUnlock,
            Some(CallKind::Admin),
            args,
            move |m, c, [user]| m.admin_mfa_unlock(c, &user),
        )
        .await
    }

    /// Roles the caller decides for other than by being eligible (approver, owner, admin,
    /// reviewer).
    async fn decided_roles(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<Vec<DecidedRole>, PimError> {
        self.read_call(&h, AuditAction::ListRoles, |m, c| m.decided_roles(c))
            .await
    }

    async fn admin_review_start(
        &self,
        #[zbus(header)] h: Header<'_>,
        role: &str,
        duration_secs: u64,
        reviewers: Vec<&str>,
    ) -> Result<ReviewInfo, PimError> {
        let args = bounded_reviewers(&reviewers).and_then(|reviewers| {
            let [role] = bounded_copies([("role", role, text::MAX_NAME_BYTES)])?;
            Ok((role, reviewers))
        });
        let reply = self
            .limited_call(
                &h,
                AuditAction::ReviewStart,
                Some(CallKind::Admin),
                args,
                move |m, c, (role, reviewers)| {
                    m.admin_review_start(c, &role, duration_secs, &reviewers)
                },
            )
            .await?;
        // Its end is a new deadline for reconciliation.
        self.core.wake.notify_one();
        Ok(reply)
    }

    async fn list_reviews(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<Vec<ReviewInfo>, PimError> {
        self.read_call(&h, AuditAction::ListReviews, |m, c| m.list_reviews(c))
            .await
    }

    async fn review_decide(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
        user: &str,
        decision: &str,
        comment: &str,
        code: &str,
    ) -> Result<ReviewItemInfo, PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("decision", decision, text::MAX_NAME_BYTES),
            ("comment", comment, text::MAX_REASON_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_call(
            &h,
            AuditAction::ReviewDecide,
            Some(CallKind::Decisions),
            args,
            move |m, c, [user, decision, comment, code]| {
                m.review_decide(c, id, &user, &decision, &comment, &code)
            },
        )
        .await
    }

    async fn admin_review_show(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
    ) -> Result<ReviewInfo, PimError> {
        self.read_call(&h, AuditAction::ReviewShow, move |m, c| {
            m.admin_review_show(c, id)
        })
        .await
    }

    async fn list_alerts(
        &self,
        #[zbus(header)] h: Header<'_>,
        all: bool,
    ) -> Result<Vec<AlertInfo>, PimError> {
        self.read_call(&h, AuditAction::ListAlerts, move |m, c| {
            m.list_alerts(c, all)
        })
        .await
    }

    async fn admin_reinstate(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        role: &str,
    ) -> Result<(), PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("role", role, text::MAX_NAME_BYTES),
        ]);
        self.limited_call(
            &h,
            AuditAction::AdminReinstate,
            Some(CallKind::Admin),
            args,
            move |m, c, [user, role]| m.admin_reinstate(c, &user, &role),
        )
        .await
    }

    // --- fleet mode (manager/fleet.rs) ---

    #[allow(clippy::too_many_arguments)]
    async fn activate_on_host(
        &self,
        #[zbus(header)] h: Header<'_>,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
        host: &str,
    ) -> Result<ActivateReply, PimError> {
        let args = bounded_copies([
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
            ("ticket", ticket, text::MAX_TICKET_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
            ("host", host, text::MAX_NAME_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::Activate,
            Some(CallKind::Grants),
            args,
            move |m, c, [role, reason, ticket, code, host]| {
                m.activate_on_host(c, &role, duration_secs, &reason, &ticket, &code, &host)
            },
        )
        .await
    }

    async fn admin_revoke_with_code(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        role: &str,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("role", role, text::MAX_NAME_BYTES),
            ("reason", reason, text::MAX_REASON_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::AdminRevoke,
            Some(CallKind::Admin),
            args,
            move |m, c, [user, role, reason, code]| m.fleet_revoke(c, &user, &role, &reason, &code),
        )
        .await
    }

    async fn fleet_hosts(
        &self,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<Vec<FleetHostInfo>, PimError> {
        self.read_steps(&h, AuditAction::FleetHosts, |m, c| m.fleet_hosts(c))
            .await
    }

    async fn fleet_state(&self, #[zbus(header)] h: Header<'_>) -> Result<FleetStateInfo, PimError> {
        self.read_call(&h, AuditAction::FleetState, |m, c| m.fleet_state(c))
            .await
    }

    async fn fleet_host_add(
        &self,
        #[zbus(header)] h: Header<'_>,
        name: &str,
        tags: Vec<String>,
        code: &str,
    ) -> Result<String, PimError> {
        let args = bounded_copies([
            ("name", name, text::MAX_NAME_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ])
        .and_then(|copies| {
            if tags.len() > crate::manager::MAX_HOST_TAGS {
                return Err(PimError::InvalidArgument(format!(
                    "{} tags given; a host has at most {}",
                    tags.len(),
                    crate::manager::MAX_HOST_TAGS
                )));
            }
            for tag in &tags {
                text::check_len("a tag", tag, text::MAX_NAME_BYTES)
                    .map_err(PimError::InvalidArgument)?;
            }
            Ok((copies, tags))
        });
        self.limited_steps(
            &h,
            AuditAction::FleetHostAdd,
            Some(CallKind::Admin),
            args,
            move |m, c, ([name, code], tags)| m.fleet_host_add(c, &name, &tags, &code),
        )
        .await
    }

    async fn fleet_host_disable(
        &self,
        #[zbus(header)] h: Header<'_>,
        name: &str,
        code: &str,
    ) -> Result<FleetHostDisabled, PimError> {
        let args = bounded_copies([
            ("name", name, text::MAX_NAME_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::FleetHostDisable,
            Some(CallKind::Admin),
            args,
            move |m, c, [name, code]| m.fleet_host_disable(c, &name, &code),
        )
        .await
    }

    async fn fleet_host_enable(
        &self,
        #[zbus(header)] h: Header<'_>,
        name: &str,
        code: &str,
    ) -> Result<String, PimError> {
        let args = bounded_copies([
            ("name", name, text::MAX_NAME_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::FleetHostEnable,
            Some(CallKind::Admin),
            args,
            move |m, c, [name, code]| m.fleet_host_enable(c, &name, &code),
        )
        .await
    }

    async fn fleet_mfa_ticket(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        code: &str,
        reset: bool,
    ) -> Result<String, PimError> {
        let args = bounded_copies([
            ("user", user, text::MAX_NAME_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::FleetMfaTicket,
            Some(CallKind::Admin),
            args,
            move |m, c, [user, code]| m.fleet_mfa_ticket(c, &user, &code, reset),
        )
        .await
    }

    async fn fleet_policy_push(
        &self,
        #[zbus(header)] h: Header<'_>,
        policy: &str,
        code: &str,
    ) -> Result<i64, PimError> {
        let args = bounded_copies([
            ("policy", policy, crate::manager::MAX_POLICY_BYTES),
            ("code", code, text::MAX_CODE_BYTES),
        ]);
        self.limited_steps(
            &h,
            AuditAction::FleetPolicyPush,
            Some(CallKind::Admin),
            args,
            move |m, c, [policy, code]| m.fleet_policy_push(c, &policy, &code),
        )
        .await
    }
    async fn dismiss_alert(
        &self,
        #[zbus(header)] h: Header<'_>,
        id: i64,
        reason: &str,
    ) -> Result<AlertInfo, PimError> {
        let args = bounded_copies([("reason", reason, text::MAX_REASON_BYTES)]);
        self.limited_call(
            &h,
            AuditAction::AlertDismiss,
            Some(CallKind::Admin),
            args,
            move |m, c, [reason]| m.dismiss_alert(c, id, &reason),
        )
        .await
    }

    async fn check_access(
        &self,
        #[zbus(header)] h: Header<'_>,
        user: &str,
        groups: Vec<&str>,
    ) -> Result<AccessDecision, PimError> {
        let oversized = user.len() > MAX_USER_NAME_BYTES
            || groups.len() > MAX_ACCESS_GROUPS
            || groups.iter().any(|g| g.len() > text::MAX_NAME_BYTES);
        if oversized {
            // Refused (and audited for non-root callers) without any work on their behalf,
            // from copies no longer than it takes to say what is wrong.
            let (user, groups) = bounded_question(user, &groups);
            return self
                .access_check_call(&h, move |m, c| m.check_access(c, &user, &groups))
                .await;
        }
        let (user, groups) = (
            user.to_owned(),
            groups.iter().map(|g| g.to_string()).collect(),
        );
        self.answer_access(&h, user, groups).await
    }
}

/// Root's answer to the access question, read on the reader only root's questions use. Never
/// waits for the manager: a denial is queued for the audit.
async fn answer_root(
    core: &Core,
    access: &Arc<AccessReaders>,
    user: String,
    groups: Vec<String>,
) -> Result<AccessDecision, PimError> {
    let decision = access.answer_root(user.clone(), groups.clone()).await?;
    if !decision.allowed {
        core.queue_denial(Denial {
            user,
            groups,
            message: decision.message.clone(),
        });
    }
    Ok(decision)
}

fn worker_failed(e: tokio::task::JoinError) -> PimError {
    PimError::Internal(format!("pimd worker failed: {e}"))
}

/// CheckAccess's read path: one reader that only questions from root on the bus use, on a
/// blocking thread (a caller that is not root never reaches it), and one for each thread of
/// the PAM socket ([`crate::pam_socket`]), which only that thread uses.
pub struct AccessReaders {
    root: Arc<Mutex<AccessReader>>,
    pam_socket: Vec<Arc<Mutex<AccessReader>>>,
    /// The PAM socket's quick answer, which a reload must reach as it reaches the readers.
    snapshots: Option<Arc<AccessSnapshots>>,
}

impl AccessReaders {
    pub fn new(
        root: AccessReader,
        pam_socket: Vec<AccessReader>,
        snapshots: Option<Arc<AccessSnapshots>>,
    ) -> Arc<AccessReaders> {
        Arc::new(AccessReaders {
            root: Arc::new(Mutex::new(root)),
            pam_socket: pam_socket
                .into_iter()
                .map(|r| Arc::new(Mutex::new(r)))
                .collect(),
            snapshots,
        })
    }

    /// The PAM socket's readers, one for each of its threads.
    pub fn pam_socket_readers(&self) -> Vec<Arc<Mutex<AccessReader>>> {
        self.pam_socket.clone()
    }

    /// From now on every reader tells `watcher` of the checks a `permanent` listing let
    /// through.
    pub fn watch_passes(&self, watcher: Arc<dyn PassWatcher>) {
        for reader in std::iter::once(&self.root).chain(&self.pam_socket) {
            reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .watch_passes(watcher.clone());
        }
    }

    /// Takes the configuration a reload installed.
    pub fn set_config(&self, config: Arc<Config>) {
        if let Some(snapshots) = &self.snapshots {
            snapshots.set_config(config.clone());
        }
        for reader in std::iter::once(&self.root).chain(&self.pam_socket) {
            reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_config(config.clone());
        }
    }

    /// Root's answer, read on the reader no other caller uses.
    async fn answer_root(
        &self,
        user: String,
        groups: Vec<String>,
    ) -> Result<AccessDecision, PimError> {
        let reader = self.root.clone();
        tokio::task::spawn_blocking(move || read(&reader, &user, &groups))
            .await
            .map_err(worker_failed)?
    }
}

fn read(
    reader: &Mutex<AccessReader>,
    user: &str,
    groups: &[String],
) -> Result<AccessDecision, PimError> {
    reader
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .decide(user, groups)
}

/// At most one more group than may be asked about, and of each text at most a few bytes more
/// than its bound: enough for the refusal to say what is too long, not a copy of a flood.
fn bounded_question(user: &str, groups: &[&str]) -> (String, Vec<String>) {
    let bounded = |s: &str, max: usize| -> String {
        let mut end = s.len().min(max + 1);
        while !s.is_char_boundary(end) {
            end += 1;
        }
        s[..end].to_owned()
    };
    (
        bounded(user, MAX_USER_NAME_BYTES),
        groups
            .iter()
            .take(MAX_ACCESS_GROUPS + 1)
            .map(|g| bounded(g, text::MAX_NAME_BYTES))
            .collect(),
    )
}

#[cfg(test)]
mod interface_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::fake::FakeAccounts;
    use crate::clock::fake::FakeClock;
    use crate::store::sqlite::SqliteStore;

    struct EmptyDirectory;

    impl pim_config::Directory for EmptyDirectory {
        fn user_exists(&self, _: &str) -> bool {
            false
        }
        fn group_exists(&self, _: &str) -> bool {
            false
        }
    }

    fn core() -> Arc<Core> {
        let accounts = FakeAccounts::default();
        let (config, problems) = pim_config::parse("", "pim.toml", &EmptyDirectory);
        assert!(problems
            .iter()
            .all(|p| p.severity == pim_config::Severity::Warning));
        let manager = Manager::new(
            Arc::new(config.unwrap()),
            SqliteStore::open_in_memory().unwrap(),
            Box::new(accounts),
            Box::new(FakeClock::at(0)),
            Box::new(crate::processes::fake::FakeProcesses::default()),
            "host".into(),
        );
        Core::new(manager)
    }

    #[tokio::test]
    async fn given_a_fleet_call_waiting_for_the_database_then_the_manager_answers_meanwhile() {
        use crate::fleet::fake::{FakeAuthority, Hold};
        let fake = FakeAuthority::reachable("web7", 0);
        let (waiting, is_waiting) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        fake.fleet().hold = Some(Hold {
            waiting,
            release: released,
        });
        let core = core();
        let config = core.with_manager(|m| Ok(m.config().clone())).await.unwrap();
        let connector = Arc::new(fake.clone());
        core.with_manager(move |m| {
            m.set_fleet(crate::manager::Fleet::new(connector, config, "web7".into()));
            Ok(())
        })
        .await
        .unwrap();
        let alice = Caller {
            uid: 1000,
            name: "alice".into(),
        };
        let call = core
            .with_manager(move |m| Ok(m.fleet_mfa_status(&alice)))
            .await
            .unwrap();
        let pending = tokio::spawn({
            let core = core.clone();
            async move { core.finish_steps(call).await }
        });
        tokio::task::spawn_blocking(move || is_waiting.recv())
            .await
            .unwrap()
            .unwrap();
        // Expiry's turn on the manager while the call waits for the database.
        core.with_manager(|m| m.reconcile()).await.unwrap();
        release.send(()).unwrap();
        let status = pending.await.unwrap().unwrap();
        assert!(!status.enrolled);
        assert_eq!(fake.fleet().calls, ["enrolled? alice"]);
    }

    /// A host with role admin (group sudo) that alice is eligible for and has not activated,
    /// its database in a file of its own: a core on it and the access check's readers.
    pub(super) struct AccessHost {
        dir: std::path::PathBuf,
        pub(super) core: Arc<Core>,
        pub(super) access: Arc<AccessReaders>,
    }

    impl AccessHost {
        pub(super) fn new(name: &str) -> AccessHost {
            let dir = std::env::temp_dir()
                .join(format!("pim-service-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            // SqliteStore::open makes it, root's alone, as pimd's database directory must be.
            let path = dir.join("pim.db");
            let accounts = FakeAccounts::default();
            accounts.add_user("root", 0);
            accounts.add_user("alice", 1000);
            accounts.add_group("sudo", &[]);
            let text = "[roles.admin]\ngroup = \"sudo\"\neligible = [\"alice\"]\n\
                        require_mfa = false\nrequire_justification = false\n";
            let (config, problems) = pim_config::parse(text, "pim.toml", &accounts);
            assert!(problems.is_empty(), "{problems:?}");
            let config = Arc::new(config.unwrap());
            let manager = Manager::new(
                config.clone(),
                SqliteStore::open(&path).unwrap(),
                Box::new(accounts.clone()),
                Box::new(FakeClock::at(1_800_000_000)),
                Box::new(crate::processes::fake::FakeProcesses::default()),
                "host".into(),
            );
            let reader = || {
                AccessReader::new(
                    config.clone(),
                    SqliteStore::open_read_only(&path).unwrap(),
                    Box::new(accounts.clone()),
                    Box::new(FakeClock::at(1_800_000_000)),
                )
            };
            let access = AccessReaders::new(reader(), vec![], None);
            AccessHost {
                dir,
                core: Core::new(manager),
                access,
            }
        }

        /// The access check's records in the audit, one by one and counted in summaries.
        async fn access_denials_audited(&self) -> (usize, u32) {
            self.core.finish_denial_audit().await;
            let root = Caller {
                uid: 0,
                name: "root".into(),
            };
            let records = self
                .core
                .with_manager(move |m| {
                    m.record_unrecorded_refusals(true)?;
                    m.audit(&root, 0, "", "")
                })
                .await
                .unwrap();
            let one_by_one = records
                .iter()
                .filter(|r| r.action == AuditAction::AccessCheck && r.actor == "pam")
                .count();
            let counted = records
                .iter()
                .filter(|r| r.action == AuditAction::RefusalsUnrecorded && r.actor == "pam")
                .map(|r| {
                    let n = r.detail.split(' ').next().unwrap();
                    n.parse::<u32>().unwrap()
                })
                .sum();
            (one_by_one, counted)
        }
    }

    impl Drop for AccessHost {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Bounds a step that must not wait for the manager: a deadlock fails instead of hanging.
    async fn without_waiting<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), step)
            .await
            .unwrap_or_else(|_| panic!("{what} waited for the manager"))
    }

    #[tokio::test]
    // Holding the lock while the access path runs is the point.
    #[allow(clippy::await_holding_lock)]
    async fn given_the_manager_held_busy_then_roots_access_check_is_answered_and_audited_after() {
        let host = AccessHost::new("busy");
        let sudo = vec!["sudo".to_string()];
        let busy = host.core.manager.lock().unwrap();
        let decision = without_waiting(
            "the access check",
            answer_root(&host.core, &host.access, "alice".into(), sudo.clone()),
        )
        .await
        .unwrap();
        assert!(!decision.allowed);
        assert!(
            decision.message.contains("run 'pim activate admin'"),
            "{decision:?}"
        );
        drop(busy);
        assert_eq!(host.access_denials_audited().await, (1, 0));
    }

    #[tokio::test]
    async fn given_more_denials_than_the_queue_holds_then_the_rest_are_counted_in_the_summary() {
        let host = AccessHost::new("overflow");
        let busy = host.core.manager.lock().unwrap();
        let total = DENIAL_QUEUE_LENGTH + 40;
        for _ in 0..total {
            host.core.queue_denial(Denial {
                user: "alice".into(),
                groups: vec!["sudo".into()],
                message: "pim: no".into(),
            });
        }
        assert!(!host.core.denials.overflow.lock().unwrap().is_empty());
        drop(busy);
        let (one_by_one, counted) = host.access_denials_audited().await;
        assert_eq!(one_by_one, crate::refusals::RECORDS_PER_WINDOW as usize);
        assert_eq!(one_by_one + counted as usize, total);
    }

    fn name(n: usize) -> OwnedUniqueName {
        OwnedUniqueName::try_from(format!(":1.{n}")).unwrap()
    }

    #[tokio::test]
    async fn given_many_watch_sessions_then_one_user_cannot_take_every_place() {
        let core = core();
        let alice = Caller {
            uid: 1000,
            name: "alice".into(),
        };
        let bob = Caller {
            uid: 1001,
            name: "bob".into(),
        };
        for n in 0..MAX_WATCHERS_PER_USER {
            assert_eq!(core.add_watcher(name(n), alice.clone()), Ok(true));
        }
        assert!(core.add_watcher(name(1000), alice.clone()).is_err());
        assert_eq!(
            core.add_watcher(name(0), alice),
            Ok(false),
            "re-subscribing is fine"
        );
        assert_eq!(core.add_watcher(name(2000), bob), Ok(true));
    }

    #[test]
    fn given_more_calls_in_progress_than_allowed_then_busy_and_root_never() {
        let in_progress = InProgress::default();
        let places: Vec<_> = (0..MAX_CALLS_IN_PROGRESS)
            .map(|_| in_progress.enter(1000).unwrap())
            .collect();
        assert!(places.iter().all(Option::is_some));
        for _ in 0..3 {
            let Err(PimError::Busy(message)) = in_progress.enter(1000) else {
                panic!("the fifth call is turned away");
            };
            assert!(message.contains("4 calls to pimd in progress"), "{message}");
        }
        assert!(in_progress.enter(1001).is_ok(), "others are not held back");
        for _ in 0..100 {
            assert!(matches!(in_progress.enter(0), Ok(None)), "root");
        }
        drop(places);
        assert_eq!(in_progress.take_turned_away(1000), 3, "for the audit");
        assert_eq!(in_progress.take_turned_away(1000), 0, "counted once");
        assert!(in_progress.0.lock().unwrap().is_empty(), "nothing kept");
        assert!(
            in_progress.enter(1000).unwrap().is_some(),
            "places given back"
        );
    }

    #[test]
    fn given_an_argument_too_long_then_refused_naming_it_and_the_limit() {
        let huge = "x".repeat(30 << 20);
        let refused = bounded_copies([
            ("role", "admin", text::MAX_NAME_BYTES),
            ("reason", &huge, text::MAX_REASON_BYTES),
        ]);
        assert_eq!(
            refused,
            Err(PimError::InvalidArgument(
                "the reason is 31457280 bytes long; at most 1024 are allowed".into()
            ))
        );
        assert_eq!(
            bounded_copies([("code", "123456", text::MAX_CODE_BYTES)]),
            Ok(["123456".to_string()])
        );
    }

    #[test]
    fn given_too_many_or_too_long_reviewers_then_refused_naming_the_bound_before_any_copy() {
        let many = vec!["carol"; 100_000];
        assert_eq!(
            bounded_reviewers(&many),
            Err(PimError::InvalidArgument(
                "the reviewers name 100000 entries; at most 64 are allowed".into()
            ))
        );
        let long = "x".repeat(1 << 20);
        let m = match bounded_reviewers(&["owners", &long]) {
            Err(PimError::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(m.starts_with("a reviewer is 1048576 bytes long"), "{m}");
        let fine = vec!["%secops"; MAX_REVIEWERS];
        assert_eq!(bounded_reviewers(&fine).unwrap().len(), MAX_REVIEWERS);
    }

    /// A refused activation by alice with `reason` and `detail`.
    fn refusal(reason: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            at: 0,
            actor: "alice".into(),
            action: AuditAction::Activate,
            user: "alice".into(),
            role: "admin".into(),
            outcome: Outcome::Refused,
            reason: reason.into(),
            ticket: String::new(),
            detail: detail.into(),
        }
    }

    #[test]
    fn given_quotes_in_user_text_then_the_syslog_line_has_no_forged_field() {
        let entry = refusal(
            r#"x" outcome=success detail="approved by bob"#,
            r#"typed \x22 literally"#,
        );
        let line = syslog_message(&entry);
        assert_eq!(line.matches('"').count(), 4, "{line}");
        assert!(
            line.contains(r#"reason="x\x22 outcome=success detail=\x22approved by bob""#),
            "{line}"
        );
        assert!(line.contains(r#"detail="typed \\x22 literally""#), "{line}");
    }

    /// A refused activation of `role` for `user`, asked by `actor`.
    fn by(actor: &str, user: &str, role: &str) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            user: user.into(),
            role: role.into(),
            ..refusal("", "")
        }
    }

    /// The `actor=.. user=.. role=..` part of the line for `entry`.
    fn names_part(entry: &AuditEntry) -> String {
        syslog_message(entry)
            .strip_prefix("activate refused: ")
            .unwrap()
            .to_string()
    }

    #[test]
    fn given_plain_names_then_the_syslog_line_keeps_them_bare() {
        for (actor, user, role) in [
            ("alice", "alice", "admin"),
            ("svc_backup.2-x$", "machine$", "db-ops"),
            ("john@ad.example.com", "ALICE01", "r.1"),
            ("pam", "alice", ""),
        ] {
            assert_eq!(
                names_part(&by(actor, user, role)),
                format!("actor={actor} user={user} role={role}")
            );
        }
    }

    #[test]
    fn given_a_name_with_a_space_and_a_field_then_it_is_quoted_and_forges_nothing() {
        let entry = by("John Smith role=admin", "alice", "db");
        assert_eq!(
            names_part(&entry),
            r#"actor="John Smith role=admin" user=alice role=db"#
        );
        let entry = by("alice", "x outcome=success", "db role=admin");
        assert_eq!(
            names_part(&entry),
            r#"actor=alice user="x outcome=success" role="db role=admin""#
        );
    }

    #[test]
    fn given_a_name_with_a_backslash_then_it_is_quoted_and_escaped() {
        assert_eq!(
            names_part(&by(r"DOMAIN\John", "alice", "admin")),
            r#"actor="DOMAIN\\John" user=alice role=admin"#
        );
        // Escaped once: the writer's last guard leaves the doubled backslash alone.
        let line = crate::syslog::format_line(
            crate::syslog::Severity::Notice,
            0,
            1,
            &syslog_message(&by("DOM\\x22", "alice", "admin")),
        );
        assert!(
            line.ends_with(r#"activate refused: actor="DOM\\x22" user=alice role=admin"#),
            "{line}"
        );
    }

    #[test]
    fn given_a_name_with_a_quote_then_it_cannot_end_its_value() {
        let entry = by(r#"eve" user="root"#, "alice", "admin");
        let line = syslog_message(&entry);
        assert_eq!(
            line,
            r#"activate refused: actor="eve\x22 user=\x22root" user=alice role=admin"#
        );
        assert_eq!(line.matches('"').count(), 2, "{line}");
    }

    #[test]
    fn given_unsafe_characters_in_a_name_then_quoted_and_escaped() {
        for (actor, shown) in [
            ("ad\u{202E}nimda", r#""ad\u{202e}nimda""#),
            ("eve\nforged", r#""eve\x0aforged""#),
            ("eve\u{2028}forged", r#""eve\u{2028}forged""#),
            ("jos\u{E9} ", "\"jos\u{E9} \""),
        ] {
            let line = syslog_message(&by(actor, "alice", "admin"));
            assert!(
                line.contains(&format!("actor={shown} user=alice")),
                "{line}"
            );
            assert!(!line.chars().any(text::is_unsafe), "{line:?}");
        }
    }

    #[test]
    fn given_backslashes_and_control_characters_in_user_text_then_escaped_once() {
        let entry = refusal("C:\\temp\nforged\u{1b}[0m", "");
        let line = crate::syslog::format_line(
            crate::syslog::Severity::Notice,
            0,
            1,
            &syslog_message(&entry),
        );
        assert!(
            line.ends_with(r#"reason="C:\\temp\x0aforged\x1b[0m""#),
            "{line}"
        );
    }
}
