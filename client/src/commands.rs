//! Each command: check the command line, call the daemon, print the answer.
//!
//! Arguments are checked before the bus is touched, so a usage error (exit 2) never depends on
//! the daemon being up.

mod governance;
mod mfa;

use crate::cli::{
    ActivateArgs, AdminCommand, ApproveArgs, AuditArgs, AuditCommand, Cli, Command, DenyArgs,
    ExtendArgs, MfaCommand, RenewArgs,
};
use crate::error::{daemon_message, Failure, EXIT_OK, EXIT_PENDING};
use crate::input::{self, Console, Terminal};
use crate::output::{self, to_json};
use crate::time::{self, Clock};
use crate::{colour, csv, error, groups};
use futures_util::StreamExt;
use pim_common::proxy::{EventStream, ManagerProxy};
use pim_common::text::{self, escape, MAX_REASON_BYTES, MAX_TICKET_BYTES};
use pim_common::types::{EventInfo, GrantInfo, RequestInfo, RoleInfo};
use pim_common::vocab::{ActivationState, AuditAction, EventKind, RequestState};
use pim_common::{duration, limits, PimError};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::time::Duration;
use zbus::names::UniqueName;
use zbus::proxy::OwnerChangedStream;

/// How often `activate --wait` asks the daemon directly, in case an event was missed.
const RECHECK: Duration = Duration::from_secs(30);

/// A run that ended well: done, or (activate) waiting for approval.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Pending,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Done => EXIT_OK,
            Outcome::Pending => EXIT_PENDING,
        }
    }
}

pub async fn run(cli: Cli) -> Result<Outcome, Failure> {
    let json = cli.json;
    let console = &mut Terminal;
    match cli.command {
        Command::Roles => roles(json).await,
        Command::Activate(args) => activate(args, json, console).await,
        Command::Deactivate { role } => deactivate(&role, json).await,
        Command::Extend(args) => extend(args, json, console).await,
        Command::Status => status(json).await,
        Command::Mfa(MfaCommand::Enroll { code, ticket }) => match ticket {
            Some(ticket) => mfa::enroll_with_ticket(&ticket, json, console).await,
            None => mfa::enroll(code.as_deref(), json, console).await,
        },
        Command::Mfa(MfaCommand::Confirm { code, code_flag }) => {
            mfa::confirm(code.or(code_flag).as_deref(), json, console).await
        }
        Command::Mfa(MfaCommand::Status) => mfa::status(json).await,
        Command::Mfa(MfaCommand::RecoveryCodes { code }) => {
            mfa::recovery_codes(code.as_deref(), json, console).await
        }
        Command::Requests => requests(json).await,
        Command::Approve(args) => approve(args, json, console).await,
        Command::Deny(args) => deny(args, json, console).await,
        Command::Cancel { id } => cancel(id, json).await,
        Command::Watch => watch(json).await,
        Command::Audit(AuditArgs {
            command: Some(AuditCommand::Verify(args)),
            ..
        }) => crate::verify::run(args, json).await,
        Command::Audit(args) => audit(args, json).await,
        Command::Alerts(args) => crate::alerts::run(args, json).await,
        Command::Renew(args) => governance::renew(args, json).await,
        Command::Show { id } => governance::show(id, json).await,
        Command::Wait { id } => governance::wait(id, json).await,
        Command::Admin(cmd) => admin(cmd, json, console).await,
        Command::Doctor(args) => crate::doctor::run(args, json).await,
        Command::Reviews => crate::reviews::reviews(json).await,
        Command::Review(cmd) => crate::reviews::decide(cmd, json, console).await,
        Command::Completions { shell } => {
            write_out(&completions(shell))?;
            Ok(Outcome::Done)
        }
    }
}

/// The completion script of `pim` for `shell`, from its clap definition.
pub fn completions(shell: crate::cli::CompletionShell) -> String {
    use crate::cli::CompletionShell;
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pim", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Plumbing

pub(crate) async fn connect() -> Result<ManagerProxy<'static>, Failure> {
    let conn = zbus::Connection::system().await?;
    Ok(ManagerProxy::new(&conn).await?)
}

pub(crate) fn write_out(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                Failure::Quiet(error::EXIT_FAILED)
            } else {
                Failure::Failed(format!("cannot write to standard output: {e}"))
            }
        })
}

/// Prints the JSON document or the text, whichever was asked for.
pub(crate) fn emit(
    json: bool,
    doc: impl FnOnce() -> Value,
    text: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if json {
        write_out(&to_json(&doc(), true))
    } else {
        write_out(&text())
    }
}

/// A remark on stderr that is not the final error (progress, warnings).
fn note(text: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// What pimd says it could not finish after a change that stands (it says when it retries).
fn warn_unfinished(warning: &str) {
    if !warning.is_empty() {
        note(&format!("pim: warning: {}", escape(warning.trim())));
    }
}

pub(crate) fn check_name(what: &str, value: &str) -> Result<(), Failure> {
    text::check_name(what, value).map_err(Failure::Usage)
}

pub(crate) fn check_text(what: &str, value: Option<&str>, max: usize) -> Result<(), Failure> {
    match value {
        Some(v) => text::check(what, v, max).map_err(Failure::Usage),
        None => Ok(()),
    }
}

/// `-d`: seconds, or 0 for "the role's default".
pub fn duration_arg(value: Option<&str>) -> Result<u64, Failure> {
    match value {
        None => Ok(0),
        Some(v) => duration::parse(v).map_err(|e| Failure::Usage(format!("--duration: {e}"))),
    }
}

/// `--since`, `--from`, `--until`: seconds since the epoch, or 0 when not given.
pub fn time_arg(option: &str, value: Option<&str>, clock: &Clock) -> Result<i64, Failure> {
    match value {
        None => Ok(0),
        Some(v) => time::parse(v, clock).map_err(|e| Failure::Usage(format!("{option}: {e}"))),
    }
}

fn reason_prompt(role: &RoleInfo, doing: &str) -> String {
    let name = escape(&role.name);
    if role.min_justification > 0 {
        format!(
            "Reason for {doing} {name} (at least {} characters): ",
            role.min_justification
        )
    } else {
        format!("Reason for {doing} {name}: ")
    }
}

fn ticket_prompt(role: &RoleInfo) -> String {
    if role.ticket_pattern.is_empty() {
        format!("Ticket for {}: ", escape(&role.name))
    } else {
        format!(
            "Ticket for {} (matching {}): ",
            escape(&role.name),
            escape(&role.ticket_pattern)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The caller's own roles

async fn roles(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let roles = proxy.list_roles().await?;
    let decides = proxy.decided_roles().await?;
    let clock = Clock::system();
    emit(
        json,
        || {
            json!({
                "roles": roles.iter().map(output::role_json).collect::<Vec<_>>(),
                "decides_for": decides.iter().map(crate::reviews::decided_json).collect::<Vec<_>>(),
            })
        },
        || crate::reviews::roles_with_decisions_text(&roles, &decides, &clock),
    )?;
    Ok(Outcome::Done)
}

/// The reason: given, or asked for on the terminal when `role` requires one (`doing`, e.g.
/// "activating", goes into the prompt).
fn ask_reason(
    role: Option<&RoleInfo>,
    doing: &str,
    given: Option<&str>,
    console: &mut dyn Console,
) -> Result<String, Failure> {
    let ask = role
        .filter(|r| r.require_justification)
        .map(|r| reason_prompt(r, doing));
    input::text_or_ask(given, "reason", MAX_REASON_BYTES, ask.as_deref(), console)
}

/// The TOTP code: given, or asked for on the terminal when `role` requires MFA.
fn ask_code(
    role: Option<&RoleInfo>,
    given: Option<&str>,
    console: &mut dyn Console,
) -> Result<String, Failure> {
    let needed = role.is_some_and(|r| r.require_mfa);
    input::code(given, needed, &input::current_user(), console)
}

async fn activate(
    a: ActivateArgs,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let Some(role_name) = a.role.as_deref() else {
        return Err(name_a_role().await);
    };
    check_name("role", role_name)?;
    if let Some(host) = &a.host {
        check_name("host", host)?;
    }
    let duration = duration_arg(a.duration.as_deref())?;
    check_text("reason", a.reason.as_deref(), MAX_REASON_BYTES)?;
    check_text("ticket", a.ticket.as_deref(), MAX_TICKET_BYTES)?;
    if a.shell && json {
        // A shell after the JSON document is nothing a script could read.
        return Err(Failure::Usage(
            "--shell starts an interactive shell: not with --json".into(),
        ));
    }

    let proxy = connect().await?;
    // The role's policy decides what to ask for. A role the caller cannot see gets no prompts:
    // the daemon's refusal says why.
    let role = proxy
        .list_roles()
        .await?
        .into_iter()
        .find(|r| r.name == role_name);
    // What the role's data and the caller's enrolment already refuse is said before any
    // prompt: a duration above the role's maximum, no enrolment for a role that needs a code.
    if let Some(role) = &role {
        limits::check_duration(&role.name, duration, role.max_duration_secs)
            .map_err(PimError::InvalidArgument)?;
        if role.require_mfa && !proxy.mfa_status().await?.enrolled {
            return Err(PimError::MfaNotEnrolled("you have no TOTP enrolment".into()).into());
        }
    }
    let reason = ask_reason(role.as_ref(), "activating", a.reason.as_deref(), console)?;
    // A reason too short is refused before the code is asked for.
    if let Some(role) = &role {
        limits::check_reason(
            &role.name,
            role.require_justification,
            role.min_justification,
            &reason,
        )
        .map_err(PimError::InvalidArgument)?;
    }
    let ticket_ask = role
        .as_ref()
        .filter(|r| r.require_ticket)
        .map(ticket_prompt);
    let ticket = input::text_or_ask(
        a.ticket.as_deref(),
        "ticket",
        MAX_TICKET_BYTES,
        ticket_ask.as_deref(),
        console,
    )?;
    let code = ask_code(role.as_ref(), a.code.as_deref(), console)?;

    // Subscribe before filing the request, so that a quick decision is not missed.
    let (events, owners) = if a.wait && role.as_ref().is_none_or(|r| r.require_approval) {
        // Follow pimd's comings and goings first: a restarted pimd has forgotten the
        // subscription, and the wait subscribes again when it is back.
        let owners = proxy.inner().receive_owner_changed().await.ok();
        (subscribe(&proxy).await, owners)
    } else {
        (None, None)
    };

    let reply = match &a.host {
        Some(host) => {
            proxy
                .activate_on_host(role_name, duration, &reason, &ticket, &code, host)
                .await?
        }
        None => {
            proxy
                .activate(role_name, duration, &reason, &ticket, &code)
                .await?
        }
    };
    let clock = Clock::system();
    match reply.state {
        ActivationState::Active => {
            emit(
                json,
                || output::activate_json("active", Some(&reply.grant), None, clock.now),
                || output::activated_text(&reply.grant, &clock),
            )?;
            if a.shell {
                return Err(groups::exec_shell(&reply.grant.group));
            }
            Ok(Outcome::Done)
        }
        ActivationState::Pending if !a.wait => {
            emit(
                json,
                || output::activate_json("pending", None, Some(&reply.request), clock.now),
                || output::pending_text(&reply.request, &clock),
            )?;
            if a.shell {
                note("no shell yet: the request waits for approval ('pim activate --wait --shell' starts one once it is granted)");
            }
            Ok(Outcome::Pending)
        }
        ActivationState::Pending => {
            if !json {
                write_out(&output::pending_text(&reply.request, &clock))?;
            }
            let group = reply.request.group.clone();
            let outcome = wait_for_decision(&proxy, events, owners, reply.request, json).await?;
            if a.shell && outcome == Outcome::Done {
                return Err(groups::exec_shell(&group));
            }
            Ok(outcome)
        }
    }
}

/// `pim activate` without a role: the roles the caller can activate (on stderr, beside the
/// usage error: nothing was activated), when pimd answers.
async fn name_a_role() -> Failure {
    if let Ok(proxy) = connect().await {
        if let Ok(roles) = proxy.list_roles().await {
            note(output::roles_text(&roles, &Clock::system()).trim_end());
        }
    }
    Failure::Usage("name the role to activate: pim activate ROLE (see 'pim roles')".into())
}

/// Asks the daemon for events; `None` (with a note) when that fails, since `--wait` can still
/// poll.
async fn subscribe(proxy: &ManagerProxy<'static>) -> Option<EventStream> {
    let result = async {
        let stream = proxy.receive_event().await?;
        proxy.watch().await?;
        Ok::<_, PimError>(stream)
    }
    .await;
    match result {
        Ok(stream) => Some(stream),
        Err(e) => {
            note(&format!(
                "pim: cannot follow events ({}); asking every {}s instead",
                daemon_message(&e),
                RECHECK.as_secs()
            ));
            None
        }
    }
}

/// The next change of owner of pimd's bus name: `Some(Some(_))` when a (re)started pimd took
/// it, `Some(None)` when pimd left; pends forever without a stream.
async fn next_owner(
    owners: &mut Option<OwnerChangedStream<'static>>,
) -> Option<Option<UniqueName<'static>>> {
    match owners {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<EventStream>) -> Option<Option<EventInfo>> {
    match events {
        Some(stream) => Some(
            stream
                .next()
                .await
                .map(|signal| signal.args().map(|a| a.event).unwrap_or_default()),
        ),
        None => std::future::pending().await,
    }
}

/// Where a request stands, as `status()` tells.
#[derive(Debug, PartialEq)]
pub enum Standing {
    Open,
    Granted(GrantInfo),
    Closed,
}

/// Reads `status()` for request `request`: still open, granted (a live grant of its role that
/// started after it was filed, or the grant an event named), or closed without a grant.
pub fn standing(
    request: &RequestInfo,
    grant_id: i64,
    grants: &[GrantInfo],
    requests: &[RequestInfo],
) -> Standing {
    if requests.iter().any(|r| r.id == request.id) {
        return Standing::Open;
    }
    let granted = grants.iter().find(|g| {
        g.role == request.role
            && if grant_id != 0 {
                g.id == grant_id
            } else {
                g.started_at >= request.created_at
            }
    });
    match granted {
        Some(g) => Standing::Granted(g.clone()),
        None => Standing::Closed,
    }
}

/// The end of `--wait` when no grant came: what to tell, and the JSON `state`.
pub fn closed_message(id: i64, event: Option<&EventInfo>) -> (String, &'static str) {
    let by = |e: &EventInfo| {
        if e.actor.is_empty() {
            String::new()
        } else {
            format!(" by {}", escape(&e.actor))
        }
    };
    let why = |e: &EventInfo| {
        if e.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&e.detail))
        }
    };
    match event.map(|e| (e.kind, e)) {
        Some((EventKind::RequestDenied, e)) => (
            format!("request {id} was denied{}{}", by(e), why(e)),
            "denied",
        ),
        Some((EventKind::RequestCancelled, e)) => (
            format!("request {id} was cancelled{}{}", by(e), why(e)),
            "cancelled",
        ),
        Some((EventKind::RequestExpired, _)) => (
            format!("request {id} expired before enough approvals; file a new one with 'pim activate'"),
            "expired",
        ),
        Some((
            EventKind::RequestFiled
            | EventKind::RequestApproved
            | EventKind::GrantStarted
            | EventKind::GrantEnded
            | EventKind::GrantEnding
            | EventKind::ProcessesEnded
            | EventKind::AssignmentEnding
            | EventKind::ReviewStarted
            | EventKind::ReviewEnded
            | EventKind::EventsDropped
            | EventKind::MfaDeviceChangeByRecoveryCode
            | EventKind::AlertRaised
            | EventKind::AlertResolved
            | EventKind::AlertDismissed,
            _,
        ))
        | None => (
            format!(
                "request {id} is no longer open and no grant started (denied, cancelled or expired); 'pim audit' tells which"
            ),
            "closed",
        ),
    }
}

async fn wait_for_decision(
    proxy: &ManagerProxy<'static>,
    mut events: Option<EventStream>,
    mut owners: Option<OwnerChangedStream<'static>>,
    mut request: RequestInfo,
    json: bool,
) -> Result<Outcome, Failure> {
    let id = request.id;
    note(&format!(
        "waiting for approval of request {id} (Ctrl-C stops waiting; the request stays open)…"
    ));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last: Option<EventInfo> = None;
    let mut grant_id = 0;
    let mut unreachable = false;
    loop {
        let check = tokio::select! {
            event = next_event(&mut events) => match event {
                Some(Some(ev)) if ev.request_id == id => match ev.kind {
                    EventKind::RequestApproved => {
                        // The daemon's count, which leaves out approvers who no longer
                        // qualify; the event's own approver when it cannot be had.
                        let counted = proxy.status().await.ok().and_then(|(_, open, _)| {
                            open.into_iter().find(|r| r.id == id)
                        });
                        if let Some(now) = counted {
                            request.approved_by = now.approved_by;
                            request.approvals_required = now.approvals_required;
                        } else if !ev.actor.is_empty() && !request.approved_by.contains(&ev.actor) {
                            request.approved_by.push(ev.actor.clone());
                        }
                        if !json {
                            note(&format!(
                                "request {id}: approval{} ({}/{})",
                                if ev.actor.is_empty() { String::new() } else { format!(" from {}", escape(&ev.actor)) },
                                request.approved_by.len(),
                                request.approvals_required.max(1)
                            ));
                        }
                        false
                    }
                    EventKind::GrantStarted => {
                        grant_id = ev.grant_id;
                        true
                    }
                    EventKind::RequestDenied
                    | EventKind::RequestCancelled
                    | EventKind::RequestExpired => {
                        last = Some(ev);
                        true
                    }
                    EventKind::RequestFiled
                    | EventKind::GrantEnded
                    | EventKind::GrantEnding
                    | EventKind::ProcessesEnded
                    | EventKind::AssignmentEnding
                    | EventKind::ReviewStarted
                    | EventKind::ReviewEnded
                    | EventKind::EventsDropped
                    | EventKind::MfaDeviceChangeByRecoveryCode
                    | EventKind::AlertRaised
                    | EventKind::AlertResolved
                    | EventKind::AlertDismissed => false,
                },
                Some(_) => false,
                None => {
                    events = None;
                    note(&format!(
                        "pim: the event stream ended; asking every {}s instead",
                        RECHECK.as_secs()
                    ));
                    false
                }
            },
            owner = next_owner(&mut owners) => match owner {
                // pimd is back: it has forgotten this subscription, and a decision may have
                // come while nobody was subscribed.
                Some(Some(_)) => {
                    let _ = proxy.watch().await;
                    true
                }
                Some(None) => false,
                None => {
                    owners = None;
                    false
                }
            },
            _ = tick.tick() => true,
            _ = &mut ctrl_c => {
                note(&format!(
                    "stopped waiting; request {id} stays open: 'pim status' shows it, 'pim cancel {id}' withdraws it"
                ));
                if json {
                    let now = Clock::system().now;
                    write_out(&to_json(&output::activate_json("pending", None, Some(&request), now), true))?;
                }
                return Ok(Outcome::Pending);
            }
        };
        if !check {
            continue;
        }
        // Events only prompt a look: the daemon's own answer decides.
        let (grants, open) = match proxy.status().await {
            Ok((grants, open, _)) => (grants, open),
            Err(e) => {
                if !unreachable {
                    note(&format!("pim: {}; still waiting", daemon_message(&e)));
                }
                unreachable = true;
                continue;
            }
        };
        if unreachable {
            // The daemon may have restarted and forgotten the subscription.
            unreachable = false;
            let _ = proxy.watch().await;
        }
        let clock = Clock::system();
        match standing(&request, grant_id, &grants, &open) {
            Standing::Open => {
                // An event said it was decided, yet it is open: not from the daemon, or early.
                last = None;
                grant_id = 0;
            }
            Standing::Granted(grant) => {
                request.state = RequestState::Approved;
                emit(
                    json,
                    || output::activate_json("active", Some(&grant), Some(&request), clock.now),
                    || output::activated_text(&grant, &clock),
                )?;
                return Ok(Outcome::Done);
            }
            Standing::Closed => {
                let (message, state) = closed_message(id, last.as_ref());
                if json {
                    write_out(&to_json(&output::closed_json(state, &request), true))?;
                }
                return Err(Failure::Failed(message));
            }
        }
    }
}

/// A refusal of the kind `refusal` makes, which says what is wrong, with what to run next:
/// that depends on the command, so pim says it rather than pimd.
fn with_next_step(e: PimError, refusal: fn(String) -> PimError, next: &str) -> PimError {
    let same_kind = std::mem::discriminant(&e) == std::mem::discriminant(&refusal(String::new()));
    if same_kind {
        refusal(format!("{}; {next}", e.message()))
    } else {
        e
    }
}

/// From here on SIGTERM is caught (and ignored), not fatal: ending a grant ends the caller's
/// processes that carry its group (`on_end = "terminate"`), this `pim` among them when it runs
/// in a login of the grant, and it must live to print the answer. It exits by itself right
/// after; the SIGKILL that follows `end_grace` would find it gone.
fn outlive_the_grants_end() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}

async fn deactivate(role: &str, json: bool) -> Result<Outcome, Failure> {
    check_name("role", role)?;
    let proxy = connect().await?;
    let _term = outlive_the_grants_end();
    let grant = proxy
        .deactivate(role)
        .await
        .map_err(|e| with_next_step(e, PimError::NotFound, "'pim status' shows yours"))?;
    let now = Clock::system().now;
    emit(
        json,
        || json!({ "grant": output::grant_json(&grant, now) }),
        || output::deactivated_text(&grant),
    )?;
    Ok(Outcome::Done)
}

async fn extend(a: ExtendArgs, json: bool, console: &mut dyn Console) -> Result<Outcome, Failure> {
    check_name("role", &a.role)?;
    let more = a.duration.as_deref().and_then(|d| d.strip_prefix('+'));
    let duration = duration_arg(more.or(a.duration.as_deref()))?;
    check_text("reason", a.reason.as_deref(), MAX_REASON_BYTES)?;
    let proxy = connect().await?;
    // Ask only when there is a live grant to extend; otherwise the daemon's refusal says why.
    let role = proxy
        .list_roles()
        .await?
        .into_iter()
        .find(|r| r.name == a.role && r.active_until != 0);
    let duration = match more {
        Some(_) => time_left_after(&a.role, role.as_ref(), duration, Clock::system().now)?,
        None => duration,
    };
    let reason = ask_reason(role.as_ref(), "extending", a.reason.as_deref(), console)?;
    let code = ask_code(role.as_ref(), a.code.as_deref(), console)?;
    let activate = format!("'pim activate {}'", a.role);
    let grant = proxy
        .extend(&a.role, duration, &reason, &code)
        .await
        .map_err(|e| {
            let no_grant = format!("activate it with {activate}");
            let approval = format!("file a new request with {activate} when this grant ends");
            let e = with_next_step(e, PimError::NotFound, &no_grant);
            with_next_step(e, PimError::Conflict, &approval)
        })?;
    let clock = Clock::system();
    emit(
        json,
        || json!({ "grant": output::grant_json(&grant, clock.now) }),
        || output::extended_text(&grant, &clock),
    )?;
    Ok(Outcome::Done)
}

/// `extend -d +D`: the time left from `now` that ends the live grant `role` D later than it
/// ends now.
fn time_left_after(
    name: &str,
    role: Option<&RoleInfo>,
    more: u64,
    now: i64,
) -> Result<u64, Failure> {
    let Some(ends) = role.map(|r| r.active_until) else {
        return Err(PimError::NotFound(format!(
            "you have no live grant of role {} to extend; activate it with 'pim activate {}'",
            escape(name),
            escape(name)
        ))
        .into());
    };
    Ok(u64::try_from(ends.saturating_sub(now))
        .unwrap_or(0)
        .saturating_add(more))
}

async fn status(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let (grants, requests, ends) = proxy.status().await?;
    // A pimd older than assignments' notices has no such call: the rest of status stands.
    let assignments = proxy.my_assignments().await.unwrap_or_default();
    let clock = Clock::system();
    let carried = groups::carried();
    let missing = groups::missing(&grants, &carried, groups::gid_of);
    emit(
        json,
        || {
            let grant_json = |g: &GrantInfo| {
                let mut m = output::object(output::status_grant_json(g, &ends, clock.now));
                let has = groups::gid_of(&g.group).map(|gid| carried.contains(&gid));
                m.insert("this_process_has_group".into(), json!(has));
                Value::Object(m)
            };
            json!({
                "grants": grants.iter().map(grant_json).collect::<Vec<_>>(),
                "requests": requests.iter().map(output::request_json).collect::<Vec<_>>(),
                "assignments": assignments.iter().map(governance::assignment_json).collect::<Vec<_>>(),
            })
        },
        || {
            output::status_text(&grants, &requests, &ends, &clock)
                + &colour::paint(
                    &groups::missing_text(&missing),
                    colour::Style::Warning,
                    colour::stdout(),
                )
                + &governance::notices_text(&assignments)
        },
    )?;
    Ok(Outcome::Done)
}

// ---------------------------------------------------------------------------------------------
// Approvers

async fn requests(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let requests = proxy.list_requests().await?;
    let clock = Clock::system();
    emit(
        json,
        || json!({ "requests": requests.iter().map(output::request_json).collect::<Vec<_>>() }),
        || output::requests_text(&requests, &clock),
    )?;
    Ok(Outcome::Done)
}

fn print_request(json: bool, verb: &str, request: &RequestInfo) -> Result<Outcome, Failure> {
    emit(
        json,
        || json!({ "request": output::request_json(request) }),
        || output::decided_text(verb, request),
    )?;
    Ok(Outcome::Done)
}

async fn approve(
    a: ApproveArgs,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    check_text("comment", a.comment.as_deref(), MAX_REASON_BYTES)?;
    let proxy = connect().await?;
    let code = input::code(a.code.as_deref(), true, &input::current_user(), console)?;
    let request = proxy
        .approve(a.id, a.comment.as_deref().unwrap_or(""), &code)
        .await
        .map_err(undecidable)?;
    print_request(json, "Approved", &request)
}

/// No request by that id that the caller may decide.
fn undecidable(e: PimError) -> PimError {
    with_next_step(e, PimError::NotFound, "'pim requests' lists those you may")
}

async fn deny(a: DenyArgs, json: bool, console: &mut dyn Console) -> Result<Outcome, Failure> {
    let comment = a.comment.trim();
    if comment.is_empty() {
        return Err(Failure::Usage(
            "deny needs a comment saying why: -c COMMENT".to_string(),
        ));
    }
    check_text("comment", Some(comment), MAX_REASON_BYTES)?;
    let proxy = connect().await?;
    let code = input::code(a.code.as_deref(), true, &input::current_user(), console)?;
    let request = proxy
        .deny(a.id, comment, &code)
        .await
        .map_err(undecidable)?;
    print_request(json, "Denied", &request)
}

async fn cancel(id: i64, json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let request = proxy
        .cancel(id)
        .await
        .map_err(|e| with_next_step(e, PimError::NotFound, "'pim status' lists yours"))?;
    print_request(json, "Cancelled", &request)
}

// ---------------------------------------------------------------------------------------------
// Events and audit

async fn watch(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let mut stream = proxy.receive_event().await?;
    // A restarted pimd has forgotten its watchers: subscribe again whenever it comes back.
    let mut owners = Some(proxy.inner().receive_owner_changed().await?);
    proxy.watch().await?;
    if !json {
        note("following events (Ctrl-C stops)…");
    }
    let clock = Clock::system();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            signal = stream.next() => {
                let Some(signal) = signal else {
                    return Err(Failure::Failed(
                        "the event stream ended; check 'systemctl status pimd'".to_string(),
                    ));
                };
                let Ok(args) = signal.args() else { continue };
                let line = if json {
                    to_json(&output::event_json(&args.event), false)
                } else {
                    output::event_line(&args.event, &clock)
                };
                write_out(&line)?;
            }
            owner = next_owner(&mut owners) => match owner {
                Some(Some(_)) => proxy.watch().await?,
                Some(None) => {}
                None => owners = None,
            },
            _ = &mut ctrl_c => return Ok(Outcome::Done),
        }
    }
}

async fn audit(a: AuditArgs, json: bool) -> Result<Outcome, Failure> {
    let clock = Clock::system();
    let since = time_arg("--since", a.since.as_deref(), &clock)?;
    let until = time_arg("--until", a.until.as_deref(), &clock)?;
    if json && a.csv {
        return Err(Failure::Usage(
            "--csv and --json ask for two formats; give one".into(),
        ));
    }
    let action = match a.action.as_deref() {
        None => None,
        Some(name) => Some(name.parse::<AuditAction>().map_err(|_| {
            Failure::Usage(format!(
                "--action: unknown action {:?}; one of: {}",
                escape(name),
                AuditAction::ALL
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
    };
    if let Some(user) = &a.user {
        check_name("user", user)?;
    }
    if let Some(role) = &a.role {
        check_name("role", role)?;
    }
    let proxy = connect().await?;
    let records = proxy
        .audit(
            since,
            a.user.as_deref().unwrap_or(""),
            a.role.as_deref().unwrap_or(""),
        )
        .await?;
    // Whether pimd's reply was cut, judged on the reply (the filters below are the client's).
    let truncated = output::audit_truncated(&records, a.user.as_deref(), a.role.as_deref());
    // pimd filters by time from, user and role; the rest is filtered here.
    let mut records: Vec<_> = records
        .into_iter()
        .filter(|r| until == 0 || r.at < until)
        .filter(|r| action.is_none_or(|a| r.action == a))
        .collect();
    if let Some(limit) = a.limit {
        records.drain(..records.len().saturating_sub(limit));
    }
    if a.csv {
        write_out(&csv::render(&records))?;
    } else {
        emit(
            json,
            || json!({ "records": records.iter().map(output::audit_json).collect::<Vec<_>>() }),
            || output::audit_text(&records, &clock),
        )?;
    }
    if let Some(note_text) = truncated {
        note(&note_text);
    }
    Ok(Outcome::Done)
}

// ---------------------------------------------------------------------------------------------
// Administration

/// Checks `--from` and `--until` of `admin assign` (0 = unbounded).
pub fn assignment_window(
    from: Option<&str>,
    until: Option<&str>,
    clock: &Clock,
) -> Result<(i64, i64), Failure> {
    let from = time_arg("--from", from, clock)?;
    let until = time_arg("--until", until, clock)?;
    if until != 0 && until <= from.max(clock.now) {
        return Err(Failure::Usage(format!(
            "--until {} is not after {}; the assignment would never be in force",
            time::local_minute(until, &clock.tz),
            if from > clock.now {
                format!("--from {}", time::local_minute(from, &clock.tz))
            } else {
                "now".to_string()
            }
        )));
    }
    Ok((from, until))
}

async fn admin(
    cmd: AdminCommand,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    match cmd {
        AdminCommand::Hosts => return crate::fleet::hosts(json).await,
        AdminCommand::Host(cmd) => return crate::fleet::host(cmd, json, console).await,
        AdminCommand::Policy(cmd) => return crate::fleet::policy(cmd, json, console).await,
        AdminCommand::MfaTicket { user, reset, code } => {
            return crate::fleet::mfa_ticket(&user, reset, code.as_deref(), json, console).await
        }
        AdminCommand::Grants => {
            let proxy = connect().await?;
            let grants = proxy.admin_grants().await?;
            let clock = Clock::system();
            emit(
                json,
                || json!({ "grants": grants.iter().map(|g| output::grant_json(g, clock.now)).collect::<Vec<_>>() }),
                || output::admin_grants_text(&grants, &clock),
            )?;
        }
        AdminCommand::Assign {
            user,
            role,
            from,
            until,
            active,
            reason,
        } => {
            check_name("user", &user)?;
            check_name("role", &role)?;
            let clock = Clock::system();
            let (from, until) = assignment_window(from.as_deref(), until.as_deref(), &clock)?;
            if active {
                let reason = reason.unwrap_or_default();
                return governance::assign_active(
                    &user,
                    &role,
                    (from, until),
                    &reason,
                    json,
                    &clock,
                )
                .await;
            }
            let proxy = connect().await?;
            let warning = proxy.admin_assign(&user, &role, from, until).await?;
            warn_unfinished(&warning);
            emit(
                json,
                || output::assignment_json(&user, &role, from, until),
                || output::assigned_text(&user, &role, from, until, &clock),
            )?;
        }
        AdminCommand::Unassign { user, role } => {
            check_name("user", &user)?;
            check_name("role", &role)?;
            let proxy = connect().await?;
            // pimd ends the grant that depended on the assignment and says which; one the user
            // is still eligible for another way runs on. The assignment is gone either way, so
            // a failed look-up of that one only loses the hint. With a warning, a grant still
            // running may be one pimd has yet to end: no hint then.
            let (ended, warning) = proxy.admin_unassign(&user, &role).await?;
            let ended = Some(ended).filter(|g| g.id != 0);
            warn_unfinished(&warning);
            let running = match (&ended, warning.is_empty()) {
                (None, true) => proxy.admin_grants().await.ok().and_then(|grants| {
                    grants
                        .into_iter()
                        .find(|g| g.user == user && g.role == role)
                }),
                _ => None,
            };
            let clock = Clock::system();
            emit(
                json,
                || {
                    json!({
                        "user": user,
                        "role": role,
                        "ended_grant": ended.as_ref().map(|g| output::grant_json(g, clock.now)),
                        "running_grant": running.as_ref().map(|g| output::grant_json(g, clock.now)),
                    })
                },
                || {
                    let mut text = format!(
                        "Removed the assignment of {} to {}.\n",
                        escape(&role),
                        escape(&user)
                    );
                    if ended.is_some() {
                        text.push_str(&format!(
                            "Ended {}'s grant of {}, which depended on it.\n",
                            escape(&user),
                            escape(&role)
                        ));
                    }
                    if let Some(g) = &running {
                        text.push_str(&format!(
                            "{} still has role {} active until {}: they are still eligible for \
                             it another way; 'pim admin revoke {} {} -r REASON' ends it now.\n",
                            escape(&user),
                            escape(&role),
                            time::local_with_relative(g.ends_at, &clock),
                            escape(&user),
                            escape(&role)
                        ));
                    }
                    text
                },
            )?;
        }
        AdminCommand::Revoke {
            user,
            role,
            reason,
            code,
        } => {
            check_name("user", &user)?;
            check_name("role", &role)?;
            check_text("reason", reason.as_deref(), MAX_REASON_BYTES)?;
            let proxy = connect().await?;
            let _term = outlive_the_grants_end();
            let reason = reason.as_deref().unwrap_or("");
            // A code is for a fleet's database; a host on its own needs none.
            let grant = match code {
                Some(given) => {
                    let code = input::code(Some(&given), true, &input::current_user(), console)?;
                    proxy
                        .admin_revoke_with_code(&user, &role, reason, &code)
                        .await?
                }
                None => proxy.admin_revoke(&user, &role, reason).await?,
            };
            let now = Clock::system().now;
            emit(
                json,
                || json!({ "grant": output::grant_json(&grant, now) }),
                || {
                    format!(
                        "Revoked {}'s grant of {} (group {}).\n",
                        escape(&grant.user),
                        escape(&grant.role),
                        escape(&grant.group)
                    )
                },
            )?;
        }
        AdminCommand::Review(cmd) => return crate::reviews::admin_review(cmd, json).await,
        AdminCommand::Reinstate { user, role } => {
            return crate::reviews::reinstate(&user, &role, json).await
        }
        AdminCommand::MfaUnlock { user } => return mfa::admin_unlock(&user, json).await,
        AdminCommand::MfaReset { user } => {
            check_name("user", &user)?;
            let proxy = connect().await?;
            proxy.admin_mfa_reset(&user).await?;
            emit(
                json,
                || json!({ "user": user }),
                || {
                    format!(
                        "Dropped the MFA enrolment of {}; they enrol again with 'pim mfa enroll'.\n",
                        escape(&user)
                    )
                },
            )?;
        }
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::tests::{utc as clock, NOW};

    #[test]
    fn given_pim_completions_then_bash_parses_the_script_and_each_shell_names_the_commands() {
        use crate::cli::CompletionShell;
        let bash = completions(CompletionShell::Bash);
        let path = std::env::temp_dir().join(format!("pim-completion-{}.bash", std::process::id()));
        std::fs::write(&path, &bash).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "bash -n: {out:?}");
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = completions(shell);
            for word in ["activate", "audit", "doctor", "completions"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn given_extend_by_plus_a_duration_then_the_time_left_grows_by_it() {
        let role = RoleInfo {
            name: "admin".into(),
            active_until: 10_000 + 600,
            ..RoleInfo::default()
        };
        assert_eq!(
            time_left_after("admin", Some(&role), 1800, 10_000).unwrap(),
            2400
        );
        let err = time_left_after("admin", None, 1800, 10_000).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.message().unwrap().contains("pim activate admin"),
            "{err:?}"
        );
    }

    #[test]
    fn given_no_duration_then_zero_means_the_roles_default() {
        assert_eq!(duration_arg(None).unwrap(), 0);
    }

    #[test]
    fn given_durations_then_seconds() {
        assert_eq!(duration_arg(Some("1h30m")).unwrap(), 5400);
        assert_eq!(duration_arg(Some("45s")).unwrap(), 45);
    }

    #[test]
    fn given_a_bad_or_zero_duration_then_usage_error_naming_it() {
        for bad in ["5x", "0s", "", "1.5h"] {
            let err = duration_arg(Some(bad)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            let m = err.message().unwrap();
            assert!(m.starts_with("--duration: "), "{m}");
        }
        assert!(duration_arg(Some("5x"))
            .unwrap_err()
            .message()
            .unwrap()
            .contains("'5x'"));
    }

    #[test]
    fn given_a_bad_time_then_usage_error_naming_option_and_value() {
        let err = time_arg("--since", Some("yesterday"), &clock()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let m = err.message().unwrap();
        assert!(m.starts_with("--since: 'yesterday' is not a time"), "{m}");
        assert_eq!(time_arg("--since", None, &clock()).unwrap(), 0);
        assert_eq!(
            time_arg("--since", Some("-1h"), &clock()).unwrap(),
            NOW - 3600
        );
    }

    #[test]
    fn given_an_assignment_window_then_until_must_be_after_from_and_now() {
        assert_eq!(assignment_window(None, None, &clock()).unwrap(), (0, 0));
        assert_eq!(
            assignment_window(Some("+1h"), Some("+2h"), &clock()).unwrap(),
            (NOW + 3600, NOW + 7200)
        );
        for (from, until) in [
            (Some("+2h"), Some("+1h")),
            (None, Some("-1h")),
            (None, Some("now")),
        ] {
            assert_eq!(
                assignment_window(from, until, &clock())
                    .unwrap_err()
                    .exit_code(),
                2,
                "{from:?} {until:?}"
            );
        }
    }

    #[test]
    fn given_outcomes_then_exit_0_or_3() {
        assert_eq!(Outcome::Done.exit_code(), 0);
        assert_eq!(Outcome::Pending.exit_code(), 3);
    }

    fn request() -> RequestInfo {
        RequestInfo {
            id: 12,
            role: "admin".into(),
            created_at: NOW,
            state: RequestState::Pending,
            approvals_required: 1,
            ..Default::default()
        }
    }

    fn grant(id: i64, role: &str, started_at: i64) -> GrantInfo {
        GrantInfo {
            id,
            role: role.into(),
            started_at,
            ..Default::default()
        }
    }

    #[test]
    fn given_the_request_still_listed_then_it_is_open() {
        let r = request();
        assert_eq!(
            standing(
                &r,
                0,
                &[grant(1, "admin", NOW + 5)],
                std::slice::from_ref(&r)
            ),
            Standing::Open
        );
    }

    #[test]
    fn given_a_new_grant_of_the_role_then_granted() {
        let r = request();
        let g = grant(3, "admin", NOW + 5);
        assert_eq!(
            standing(&r, 0, std::slice::from_ref(&g), &[]),
            Standing::Granted(g.clone())
        );
        assert_eq!(
            standing(&r, 3, std::slice::from_ref(&g), &[]),
            Standing::Granted(g)
        );
    }

    #[test]
    fn given_no_matching_grant_then_closed() {
        let r = request();
        assert_eq!(
            standing(&r, 0, &[grant(3, "other", NOW + 5)], &[]),
            Standing::Closed
        );
        assert_eq!(
            standing(&r, 0, &[grant(3, "admin", NOW - 5)], &[]),
            Standing::Closed
        );
        assert_eq!(
            standing(&r, 9, &[grant(3, "admin", NOW + 5)], &[]),
            Standing::Closed
        );
    }

    #[test]
    fn given_closing_events_then_message_and_state_say_what_happened() {
        let ev = EventInfo {
            kind: EventKind::RequestDenied,
            request_id: 12,
            actor: "bob".into(),
            detail: "not during the freeze".into(),
            ..Default::default()
        };
        assert_eq!(
            closed_message(12, Some(&ev)),
            (
                "request 12 was denied by bob: not during the freeze".to_string(),
                "denied"
            )
        );
        let expired = EventInfo {
            kind: EventKind::RequestExpired,
            ..Default::default()
        };
        assert_eq!(closed_message(12, Some(&expired)).1, "expired");
        let cancelled = EventInfo {
            kind: EventKind::RequestCancelled,
            ..Default::default()
        };
        assert_eq!(closed_message(12, Some(&cancelled)).1, "cancelled");
        let (m, state) = closed_message(12, None);
        assert_eq!(state, "closed");
        assert!(m.contains("pim audit"), "{m}");
    }

    #[test]
    fn given_prompts_then_they_name_the_role_and_the_rule() {
        let r = RoleInfo {
            name: "admin".into(),
            min_justification: 10,
            ticket_pattern: "^INC[0-9]+$".into(),
            ..Default::default()
        };
        assert_eq!(
            reason_prompt(&r, "activating"),
            "Reason for activating admin (at least 10 characters): "
        );
        assert_eq!(
            ticket_prompt(&r),
            "Ticket for admin (matching ^INC[0-9]+$): "
        );
    }

    #[test]
    fn given_no_live_grant_then_the_message_names_the_next_command() {
        let refused = PimError::NotFound("you have no live grant for role docker".into());
        let next = "activate it with 'pim activate docker'";
        let m = daemon_message(&with_next_step(refused, PimError::NotFound, next));
        assert_eq!(
            m,
            "you have no live grant for role docker; activate it with 'pim activate docker'"
        );
        let other = || PimError::Conflict("role docker needs approval".into());
        assert_eq!(with_next_step(other(), PimError::NotFound, next), other());
    }
}
