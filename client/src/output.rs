//! Rendering: plain aligned text for people, JSON documents for scripts.
//!
//! Every piece of text that came from a user or the daemon goes through `text::escape` before
//! it reaches a terminal. In JSON, absent values (0 / "" on the wire) are `null`, and each time
//! `t` appears as `t` (RFC 3339 UTC) and `t_unix` (seconds).

use crate::time::{self, rfc3339, Clock};
use pim_common::duration;
use pim_common::text::{escape, is_unsafe};
use pim_common::types::{
    AuditRecord, EventInfo, GrantEnd, GrantInfo, MfaStatusInfo, RequestInfo, RoleInfo,
    MAX_AUDIT_RECORDS,
};
use pim_common::vocab::RequestState;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// JSON

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn opt_id(id: i64) -> Value {
    if id == 0 {
        Value::Null
    } else {
        Value::from(id)
    }
}

pub(crate) fn put_time(map: &mut Map<String, Value>, key: &str, unix: i64) {
    map.insert(
        key.to_string(),
        rfc3339(unix).map_or(Value::Null, Value::String),
    );
    map.insert(format!("{key}_unix"), opt_id(unix));
}

pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub fn role_json(r: &RoleInfo) -> Value {
    let mut m = object(json!({
        "name": r.name,
        "group": opt_str(&r.group),
        "description": opt_str(&r.description),
        "max_duration_secs": r.max_duration_secs,
        "default_duration_secs": r.default_duration_secs,
        "require_mfa": r.require_mfa,
        "require_justification": r.require_justification,
        "min_justification": r.min_justification,
        "require_ticket": r.require_ticket,
        "ticket_pattern": opt_str(&r.ticket_pattern),
        "require_approval": r.require_approval,
        "approvals_required": r.approvals_required,
    }));
    put_time(&mut m, "eligible_until", r.eligible_until);
    put_time(&mut m, "active_until", r.active_until);
    Value::Object(m)
}

pub fn grant_json(g: &GrantInfo, now: i64) -> Value {
    let mut m = object(json!({
        "id": opt_id(g.id),
        "user": opt_str(&g.user),
        "role": opt_str(&g.role),
        "group": opt_str(&g.group),
        "remaining_secs": if g.ends_at == 0 { 0 } else { time::remaining(g.ends_at, now) },
        "reason": opt_str(&g.reason),
        "ticket": opt_str(&g.ticket),
    }));
    put_time(&mut m, "started_at", g.started_at);
    put_time(&mut m, "ends_at", g.ends_at);
    Value::Object(m)
}

/// A grant as `pim status` shows it: with how many of the caller's processes carry the group
/// (`processes`, null when pimd could not tell) and what its end does to them (`on_end`,
/// with `end_grace_secs` when they are terminated).
pub fn status_grant_json(g: &GrantInfo, ends: &[GrantEnd], now: i64) -> Value {
    let mut v = grant_json(g, now);
    if let (Some(end), Value::Object(m)) = (ends.iter().find(|e| e.grant_id == g.id), &mut v) {
        let processes = (end.processes >= 0).then_some(end.processes);
        m.insert("processes".into(), json!(processes));
        m.insert("on_end".into(), json!(end.on_end));
        if end.on_end == "terminate" {
            m.insert("end_grace_secs".into(), json!(end.end_grace_secs));
        }
    }
    v
}

/// What a grant's end does to the processes that carry its group: how many there are now,
/// and whether they are ended (after what grace) or kept.
fn at_end(end: Option<&GrantEnd>) -> String {
    let Some(end) = end else {
        return "-".into();
    };
    let count = match end.processes {
        n if n < 0 => "? processes".to_string(),
        1 => "1 process".to_string(),
        n => format!("{n} processes"),
    };
    if end.on_end == "keep" {
        format!("{count} kept")
    } else {
        format!("{count} ended ({} grace)", dur(end.end_grace_secs))
    }
}

pub fn request_json(r: &RequestInfo) -> Value {
    let mut m = object(json!({
        "id": opt_id(r.id),
        "user": opt_str(&r.user),
        "role": opt_str(&r.role),
        "group": opt_str(&r.group),
        "duration_secs": r.duration_secs,
        "reason": opt_str(&r.reason),
        "ticket": opt_str(&r.ticket),
        "state": r.state.as_str(),
        "approvals_required": r.approvals_required,
        "approvals": r.approved_by.len(),
        "approved_by": r.approved_by,
    }));
    put_time(&mut m, "created_at", r.created_at);
    put_time(&mut m, "expires_at", r.expires_at);
    Value::Object(m)
}

pub fn mfa_status_json(s: &MfaStatusInfo) -> Value {
    let mut m = object(json!({
        "enrolled": s.enrolled,
        "pending": s.pending,
        "recent_failures": s.recent_failures,
        "recovery_codes_left": s.recovery_codes_left,
    }));
    put_time(&mut m, "locked_until", s.locked_until);
    put_time(&mut m, "device_change_until", s.device_change_until);
    put_time(
        &mut m,
        "recovery_codes_issued_at",
        s.recovery_codes_issued_at,
    );
    Value::Object(m)
}

pub fn audit_json(a: &AuditRecord) -> Value {
    let mut m = object(json!({
        "id": a.id,
        "actor": opt_str(&a.actor),
        "action": a.action.as_str(),
        "user": opt_str(&a.user),
        "role": opt_str(&a.role),
        "outcome": a.outcome.as_str(),
        "reason": opt_str(&a.reason),
        "ticket": opt_str(&a.ticket),
        "detail": opt_str(&a.detail),
        "prev": opt_str(&a.prev),
        "hash": opt_str(&a.hash),
    }));
    put_time(&mut m, "at", a.at);
    Value::Object(m)
}

pub fn event_json(e: &EventInfo) -> Value {
    let mut m = object(json!({
        "kind": e.kind.as_str(),
        "user": opt_str(&e.user),
        "role": opt_str(&e.role),
        "request_id": opt_id(e.request_id),
        "grant_id": opt_id(e.grant_id),
        "actor": opt_str(&e.actor),
        "detail": opt_str(&e.detail),
    }));
    put_time(&mut m, "at", e.at);
    Value::Object(m)
}

/// `activate`: `state` is `active`, `pending`, or after `--wait` also `denied`, `cancelled` or
/// `expired`; `grant` and `request` are null when there is none.
pub fn activate_json(
    state: &str,
    grant: Option<&GrantInfo>,
    request: Option<&RequestInfo>,
    now: i64,
) -> Value {
    json!({
        "state": state,
        "grant": grant.map_or(Value::Null, |g| grant_json(g, now)),
        "request": request.map_or(Value::Null, request_json),
    })
}

/// The end of `activate --wait` when the request closed without a grant: its `state`, and the
/// request's, is `state` (`denied`, `cancelled`, `expired`, or `closed` when the client cannot
/// tell which).
pub fn closed_json(state: &str, request: &RequestInfo) -> Value {
    let mut request = request_json(request);
    request["state"] = Value::from(state);
    json!({
        "state": state,
        "grant": Value::Null,
        "request": request,
    })
}

/// Serializes a document. serde_json leaves DEL, the C1 controls and invisible format or
/// separator characters (bidi overrides, U+2028...) raw; they are escaped too, so that no JSON
/// we print can drive a terminal or hide what a record says.
pub fn to_json(value: &Value, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // Only possible inside strings: structural JSON whitespace is \n and ' ' here, and
        // serde_json already escaped every control below U+0020 in strings.
        if c != '\n' && is_unsafe(c) {
            // JSON's \u takes UTF-16 units: a pair of surrogates above U+FFFF.
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------------------
// Text

/// Escaped, or "-" when absent.
fn e(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        escape(s)
    }
}

/// Columns separated by two spaces, left-aligned, no trailing blanks.
pub fn table(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = indent.to_string();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn dur(secs: u64) -> String {
    if secs == 0 {
        "-".to_string()
    } else {
        duration::format(secs)
    }
}

/// What activating a role takes: `mfa, reason (10+ chars), ticket, 2 approvals`.
pub fn requirements(r: &RoleInfo) -> String {
    let mut parts = Vec::new();
    if r.require_mfa {
        parts.push("mfa".to_string());
    }
    if r.require_justification {
        if r.min_justification > 0 {
            parts.push(format!("reason ({}+ chars)", r.min_justification));
        } else {
            parts.push("reason".to_string());
        }
    }
    if r.require_ticket {
        if r.ticket_pattern.is_empty() {
            parts.push("ticket".to_string());
        } else {
            parts.push(format!("ticket ({})", escape(&r.ticket_pattern)));
        }
    }
    if r.require_approval {
        parts.push(plural(
            u64::from(r.approvals_required.max(1)),
            "approval",
            "approvals",
        ));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

pub fn roles_text(roles: &[RoleInfo], clock: &Clock) -> String {
    if roles.is_empty() {
        return "You are not eligible for any role.\n".to_string();
    }
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            let mut state = Vec::new();
            if r.active_until != 0 {
                state.push(format!(
                    "active, {} left",
                    time::span(time::remaining(r.active_until, clock.now))
                ));
            }
            if r.eligible_until != 0 {
                state.push(format!(
                    "eligible until {}",
                    time::local_minute(r.eligible_until, &clock.tz)
                ));
            }
            vec![
                e(&r.name),
                e(&r.group),
                dur(r.default_duration_secs),
                dur(r.max_duration_secs),
                requirements(r),
                if state.is_empty() {
                    "-".to_string()
                } else {
                    state.join("; ")
                },
                e(&r.description),
            ]
        })
        .collect();
    table(
        "",
        &[
            "ROLE",
            "GROUP",
            "DEFAULT",
            "MAX",
            "REQUIRES",
            "STATUS",
            "DESCRIPTION",
        ],
        &rows,
    )
}

/// After a grant started (right away, or after approval).
pub fn activated_text(g: &GrantInfo, clock: &Clock) -> String {
    let group = e(&g.group);
    format!(
        "Activated {role}: you are in group {group} until {until}.\n\
         Sessions that are already open do not see the new group: start a new login shell,\n\
         or run 'newgrp {group}' (or 'sg {group} -c COMMAND') in this one.\n",
        role = e(&g.role),
        until = time::local_with_relative(g.ends_at, clock),
    )
}

/// After a request was filed for a role that needs approval.
pub fn pending_text(r: &RequestInfo, clock: &Clock) -> String {
    let needed = u64::from(r.approvals_required.max(1));
    let mut out = format!(
        "Request {id} filed: {role} for {dur} needs {approvals} from the approvers of {role}.\n",
        id = r.id,
        role = e(&r.role),
        dur = dur(r.duration_secs),
        approvals = plural(needed, "approval", "approvals"),
    );
    if r.expires_at != 0 {
        out.push_str(&format!(
            "It expires {} unless decided.\n",
            time::local_with_relative(r.expires_at, clock)
        ));
    }
    out.push_str(&format!(
        "Follow it with 'pim status'; withdraw it with 'pim cancel {}'.\n",
        r.id
    ));
    out
}

fn approvals(r: &RequestInfo) -> String {
    format!("{}/{}", r.approved_by.len(), r.approvals_required.max(1))
}

fn grant_rows(grants: &[GrantInfo], clock: &Clock, with_user: bool) -> Vec<Vec<String>> {
    grants
        .iter()
        .map(|g| {
            let mut row = Vec::new();
            if with_user {
                row.push(g.id.to_string());
                row.push(e(&g.user));
            }
            row.push(e(&g.role));
            row.push(e(&g.group));
            if with_user {
                row.push(if g.started_at == 0 {
                    "-".to_string()
                } else {
                    time::local_minute(g.started_at, &clock.tz)
                });
            }
            if g.ends_at >= pim_common::types::NO_END {
                // An active assignment without an end.
                row.push("no end".to_string());
                row.push("-".to_string());
            } else {
                row.push(if g.ends_at == 0 {
                    "-".to_string()
                } else {
                    time::local_minute(g.ends_at, &clock.tz)
                });
                row.push(time::span(time::remaining(g.ends_at, clock.now)));
            }
            row.push(e(&g.ticket));
            row.push(e(&g.reason));
            row
        })
        .collect()
}

pub fn status_text(
    grants: &[GrantInfo],
    requests: &[RequestInfo],
    ends: &[GrantEnd],
    clock: &Clock,
) -> String {
    let mut out = String::new();
    if grants.is_empty() {
        out.push_str("No live grants.\n");
    } else {
        out.push_str("Grants:\n");
        let mut rows = grant_rows(grants, clock, false);
        for (row, g) in rows.iter_mut().zip(grants) {
            row.insert(4, at_end(ends.iter().find(|e| e.grant_id == g.id)));
        }
        out.push_str(&table(
            "  ",
            &[
                "ROLE", "GROUP", "UNTIL", "LEFT", "AT END", "TICKET", "REASON",
            ],
            &rows,
        ));
    }
    if requests.is_empty() {
        out.push_str("No open requests.\n");
    } else {
        out.push_str("Open requests:\n");
        let rows: Vec<Vec<String>> = requests
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    e(&r.role),
                    dur(r.duration_secs),
                    approvals(r),
                    time::local_with_relative(r.expires_at, clock),
                    e(&r.ticket),
                    e(&r.reason),
                ]
            })
            .collect();
        out.push_str(&table(
            "  ",
            &[
                "ID",
                "ROLE",
                "FOR",
                "APPROVALS",
                "EXPIRES",
                "TICKET",
                "REASON",
            ],
            &rows,
        ));
    }
    out
}

pub fn admin_grants_text(grants: &[GrantInfo], clock: &Clock) -> String {
    if grants.is_empty() {
        return "No live grants on this host.\n".to_string();
    }
    table(
        "",
        &[
            "ID", "USER", "ROLE", "GROUP", "SINCE", "UNTIL", "LEFT", "TICKET", "REASON",
        ],
        &grant_rows(grants, clock, true),
    )
}

pub fn requests_text(requests: &[RequestInfo], clock: &Clock) -> String {
    if requests.is_empty() {
        return "No open requests wait for your decision.\n".to_string();
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                e(&r.user),
                e(&r.role),
                dur(r.duration_secs),
                if r.created_at == 0 {
                    "-".to_string()
                } else {
                    time::span(time::remaining(clock.now, r.created_at))
                },
                approvals(r),
                time::local_with_relative(r.expires_at, clock),
                e(&r.ticket),
                e(&r.reason),
            ]
        })
        .collect();
    let mut out = table(
        "",
        &[
            "ID",
            "USER",
            "ROLE",
            "FOR",
            "AGE",
            "APPROVALS",
            "EXPIRES",
            "TICKET",
            "REASON",
        ],
        &rows,
    );
    out.push_str("Decide with 'pim approve ID' or 'pim deny ID -c COMMENT'.\n");
    out
}

pub fn deactivated_text(g: &GrantInfo) -> String {
    format!(
        "Ended your grant of {} (group {}).\n",
        e(&g.role),
        e(&g.group)
    )
}

pub fn extended_text(g: &GrantInfo, clock: &Clock) -> String {
    format!(
        "Extended {} (group {}): now until {}.\n",
        e(&g.role),
        e(&g.group),
        time::local_with_relative(g.ends_at, clock)
    )
}

/// `approve`, `deny`, `cancel`: what the request looks like now.
pub fn decided_text(verb: &str, r: &RequestInfo) -> String {
    // A renewal request asks for no duration (its new end is in 'pim show').
    let what = if r.duration_secs == 0 {
        "renewal".to_string()
    } else {
        format!("for {}", dur(r.duration_secs))
    };
    let head = format!(
        "{verb} request {} ({}, {} {what})",
        r.id,
        e(&r.user),
        e(&r.role),
    );
    match r.state {
        RequestState::Pending => {
            let have = r.approved_by.len() as u64;
            let need = u64::from(r.approvals_required.max(1));
            format!(
                "{head}: {} so far; it needs {} more.\n",
                approvals(r),
                need.saturating_sub(have)
            )
        }
        RequestState::Approved => format!("{head}: {}; the request is approved.\n", approvals(r)),
        // The last approval came, but the daemon could not turn it into a grant.
        RequestState::Denied if verb == "Approved" => format!(
            "{head}: {}, but no grant could start (the requester may no longer be eligible or \
             already holds the group); the request is now denied.\n",
            approvals(r)
        ),
        RequestState::Denied | RequestState::Cancelled => format!("{head}.\n"),
        RequestState::Expired => format!("{head}; it is now {}.\n", r.state),
    }
}

/// The enrolment text; `colour` draws the QR code in explicit black on white (for a terminal),
/// otherwise plain (dark modules as ink, for a file or paper). The QR code comes last, so that
/// on an 80x24 terminal it stays on screen above the next prompt.
pub fn enroll_text(uri: &str, secret: &str, colour: bool) -> String {
    let qr = qr_code(uri, colour);
    let mut out = String::from(if qr.is_some() {
        "Scan the QR code below with your authenticator app, or enter the secret by hand: "
    } else {
        "Enter this secret in your authenticator app: "
    });
    out.push_str(&format!(
        "{}\notpauth URI: {}\nThen run 'pim mfa confirm' and type the code the app shows.\n",
        escape(secret),
        escape(uri)
    ));
    if let Some(qr) = qr {
        out.push('\n');
        out.push_str(&qr);
    }
    out
}

/// The most rows the QR code may take, so that it and the prompt after it fit an 80x24 terminal.
pub const QR_MAX_ROWS: usize = 23;

/// Black foreground on a white background, whatever the terminal's own colours (the way
/// google-authenticator-libpam draws its code), and the reset after each row.
const QR_INK_ON_PAPER: &str = "\x1b[30;47m";
const QR_RESET: &str = "\x1b[0m";

/// The URI as a QR code in Unicode half blocks (two modules a character row), error correction
/// L (the smallest code) and a quiet zone of two modules (one if two would not fit
/// [`QR_MAX_ROWS`]). With `colour` every row carries its own colours, so the code reads the same
/// on light and dark terminals; without, dark modules are drawn as ink (for a light page).
pub fn qr_code(uri: &str, colour: bool) -> Option<String> {
    use qrcode::{Color, EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let rows = |quiet: usize| (width + 2 * quiet).div_ceil(2);
    let quiet = if rows(2) <= QR_MAX_ROWS { 2 } else { 1 };
    let side = (width + 2 * quiet) as isize;
    let dark = |x: isize, y: isize| {
        let (x, y) = (x - quiet as isize, y - quiet as isize);
        (0..width as isize).contains(&x)
            && (0..width as isize).contains(&y)
            && colors[y as usize * width + x as usize] == Color::Dark
    };
    let mut text = String::new();
    let mut y = 0;
    while y < side {
        if colour {
            text.push_str(QR_INK_ON_PAPER);
        }
        for x in 0..side {
            text.push(match (dark(x, y), y + 1 < side && dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if colour {
            text.push_str(QR_RESET);
        }
        text.push('\n');
        y += 2;
    }
    Some(text)
}

pub fn recovery_codes_text(codes: &[String]) -> String {
    let mut out = String::from("MFA enrolment confirmed.\n");
    if codes.is_empty() {
        return out;
    }
    out.push_str("\nRecovery codes");
    out + &recovery_code_list(codes)
}

/// `pim mfa recovery-codes`: the new codes.
pub fn new_recovery_codes_text(codes: &[String]) -> String {
    String::from("New recovery codes; the ones you had before no longer work.\n\nRecovery codes")
        + &recovery_code_list(codes)
}

/// The rest of a "Recovery codes" heading, the codes and how to keep them.
fn recovery_code_list(codes: &[String]) -> String {
    let mut out =
        String::from(" (each works once, in place of a TOTP code, if you lose your device):\n\n");
    for code in codes {
        out.push_str(&format!("    {}\n", escape(code)));
    }
    out.push_str(
        "\nStore them somewhere safe, away from this device (a password manager, or on paper).\n\
         They are not shown again.\n",
    );
    out
}

/// Before the new secret of a change of device.
pub fn new_device_text() -> String {
    "Moving your MFA enrolment to a new device: your current device keeps working until the new \
     one is confirmed.\n"
        .into()
}

/// `pim mfa confirm` of a change of device.
pub fn device_confirmed_text() -> String {
    "New device confirmed: codes of the old one no longer work. Your recovery codes are \
     unchanged ('pim mfa recovery-codes' replaces them).\n"
        .into()
}

pub fn mfa_status_text(s: &MfaStatusInfo, clock: &Clock) -> String {
    let enrolled = if s.enrolled && s.device_change_until > 0 {
        format!(
            "yes (a new device waits for its first code until {}: run 'pim mfa confirm')",
            time::local_with_relative(s.device_change_until, clock)
        )
    } else if s.enrolled && s.pending {
        "yes (a new device waits for its first code: run 'pim mfa confirm')".to_string()
    } else if s.enrolled {
        "yes".to_string()
    } else if s.pending {
        "no (enrolment started: finish it with 'pim mfa confirm')".to_string()
    } else {
        "no (enrol with 'pim mfa enroll')".to_string()
    };
    let locked = if s.locked_until == 0 || s.locked_until <= clock.now {
        "no".to_string()
    } else {
        format!("until {}", time::local_with_relative(s.locked_until, clock))
    };
    table(
        "",
        &["Enrolled:", &enrolled],
        &[
            vec!["Locked out:".to_string(), locked],
            vec![
                "Recent failures:".to_string(),
                s.recent_failures.to_string(),
            ],
            vec![
                "Recovery codes left:".to_string(),
                s.recovery_codes_left.to_string(),
            ],
            vec![
                "Recovery codes from:".to_string(),
                if s.recovery_codes_left == 0 && s.recovery_codes_issued_at == 0 {
                    "none issued".to_string()
                } else if s.recovery_codes_issued_at == 0 {
                    "unknown (issued before pim recorded it)".to_string()
                } else {
                    time::local_with_relative(s.recovery_codes_issued_at, clock)
                },
            ],
        ],
    )
}

/// The widest line of `pim audit`'s table.
pub const AUDIT_WIDTH: usize = 100;
/// The widest a name cell (actor, user, role) gets before it is cut with `…`.
const AUDIT_NAME_WIDTH: usize = 12;
/// The most lines a record's ticket, reason and detail take below its row (`--json` and
/// `--csv` give them whole).
const AUDIT_NOTE_LINES: usize = 4;

/// `text` cut to `width` characters, the last one `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` wrapped at spaces into lines of at most `width` characters (a longer word is split),
/// at most `max_lines` of them, the last ending in `…` when some was left out.
fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let room = if used == 0 { width } else { width - used - 1 };
            if word.len() <= room {
                if used > 0 {
                    line.push(' ');
                }
                line.extend(&word);
                break;
            }
            if used == 0 {
                let rest = word.split_off(width);
                lines.push(word.into_iter().collect());
                word = rest;
            } else {
                lines.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.pop().unwrap_or_default();
        lines.push(cut(&format!("{last} …"), width));
    }
    lines
}

/// The audit table, within [`AUDIT_WIDTH`] columns: one row a record (times in the zone the
/// header names, long names cut), its ticket, reason and detail wrapped below it.
pub fn audit_text(records: &[AuditRecord], clock: &Clock) -> String {
    if records.is_empty() {
        return "No audit records match.\n".to_string();
    }
    let name = |s: &str| cut(&e(s), AUDIT_NAME_WIDTH);
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|a| {
            vec![
                if a.at == 0 {
                    "-".to_string()
                } else {
                    time::local_second(a.at, &clock.tz)
                },
                name(&a.actor),
                a.action.to_string(),
                name(&a.user),
                name(&a.role),
                a.outcome.to_string(),
            ]
        })
        .collect();
    let zone = records
        .iter()
        .rev()
        .find(|a| a.at != 0)
        .map(|a| time::zone_abbreviation(a.at, &clock.tz))
        .unwrap_or_else(|| "UTC".to_string());
    let time_header = format!("TIME ({zone})");
    let table = table(
        "",
        &[&time_header, "ACTOR", "ACTION", "USER", "ROLE", "OUTCOME"],
        &rows,
    );
    let mut lines = table.lines();
    let mut out = format!("{}\n", lines.next().unwrap_or_default());
    const INDENT: &str = "    ";
    for (a, row) in records.iter().zip(lines) {
        out.push_str(row);
        out.push('\n');
        for (label, text) in [
            ("ticket", &a.ticket),
            ("reason", &a.reason),
            ("detail", &a.detail),
        ] {
            if text.is_empty() || text == "-" {
                continue;
            }
            let head = format!("{INDENT}{label}: ");
            let width = AUDIT_WIDTH - head.chars().count();
            for (i, line) in wrap(&e(text), width, AUDIT_NOTE_LINES).iter().enumerate() {
                if i == 0 {
                    out.push_str(&head);
                } else {
                    out.extend(std::iter::repeat_n(' ', head.chars().count()));
                }
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// What to tell the reader when pimd sent as many records as it sends in one reply: there
/// may be more, and how to ask for the next ones (the last one's second again: `--since` is
/// inclusive, so none is missed).
pub fn audit_truncated(
    records: &[AuditRecord],
    user: Option<&str>,
    role: Option<&str>,
) -> Option<String> {
    if records.len() < MAX_AUDIT_RECORDS as usize {
        return None;
    }
    let last = records.last()?;
    let mut next = format!("pim audit --since @{}", last.at);
    if let Some(user) = user {
        next.push_str(&format!(" --user {}", escape(user)));
    }
    if let Some(role) = role {
        next.push_str(&format!(" --role {}", escape(role)));
    }
    Some(format!(
        "pim: only the first {MAX_AUDIT_RECORDS} matching records are shown (pimd sends at most \
         that many a call); for the next ones: {next}"
    ))
}

/// One event, one line: `2026-11-21 14:00:05  request-approved  alice  admin  request 12  by bob: ok`.
pub fn event_line(ev: &EventInfo, clock: &Clock) -> String {
    let mut parts = vec![
        if ev.at == 0 {
            "-".to_string()
        } else {
            time::local_second(ev.at, &clock.tz)
        },
        ev.kind.to_string(),
        e(&ev.user),
        e(&ev.role),
    ];
    if ev.request_id != 0 {
        parts.push(format!("request {}", ev.request_id));
    }
    if ev.grant_id != 0 {
        parts.push(format!("grant {}", ev.grant_id));
    }
    if !ev.actor.is_empty() {
        parts.push(format!("by {}", escape(&ev.actor)));
    }
    let mut line = parts.join("  ");
    if !ev.detail.is_empty() {
        line.push_str(": ");
        line.push_str(&escape(&ev.detail));
    }
    line.push('\n');
    line
}

/// An assignment's window in words: "now" or its start, and "with no end" or "until END".
pub fn window_words(from: i64, until: i64, clock: &Clock) -> (String, String) {
    let from = if from == 0 {
        "now".to_string()
    } else {
        time::local_minute(from, &clock.tz)
    };
    let until = if until == 0 {
        "with no end".to_string()
    } else {
        format!("until {}", time::local_minute(until, &clock.tz))
    };
    (from, until)
}

pub fn assigned_text(user: &str, role: &str, from: i64, until: i64, clock: &Clock) -> String {
    let (from, until) = window_words(from, until, clock);
    format!(
        "{} is eligible for {} from {from} {until}.\n",
        escape(user),
        escape(role)
    )
}

pub fn assignment_json(user: &str, role: &str, from: i64, until: i64) -> Value {
    let mut m = object(json!({ "user": user, "role": role }));
    put_time(&mut m, "from", from);
    put_time(&mut m, "until", until);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::tests::{utc as clock, NOW};
    use pim_common::vocab::{AuditAction, EventKind, Outcome};

    fn role() -> RoleInfo {
        RoleInfo {
            name: "admin".into(),
            group: "sudo".into(),
            description: "Full administration through sudo".into(),
            max_duration_secs: 7200,
            default_duration_secs: 3600,
            require_mfa: true,
            require_justification: true,
            min_justification: 10,
            require_ticket: false,
            ticket_pattern: String::new(),
            require_approval: true,
            approvals_required: 1,
            eligible_until: 0,
            active_until: NOW + 3599,
        }
    }

    fn grant() -> GrantInfo {
        GrantInfo {
            id: 4,
            user: "alice".into(),
            role: "admin".into(),
            group: "sudo".into(),
            started_at: NOW - 60,
            ends_at: NOW + 3540,
            reason: "deploy hotfix".into(),
            ticket: String::new(),
        }
    }

    fn request() -> RequestInfo {
        RequestInfo {
            id: 12,
            user: "alice".into(),
            role: "admin".into(),
            group: "sudo".into(),
            duration_secs: 3600,
            reason: "deploy hotfix".into(),
            ticket: "INC42".into(),
            created_at: NOW,
            expires_at: NOW + 86400,
            state: RequestState::Pending,
            approvals_required: 2,
            approved_by: vec!["bob".into()],
        }
    }

    #[test]
    fn given_a_role_then_json_has_nulls_for_absent_values() {
        let v = role_json(&role());
        assert_eq!(v["name"], "admin");
        assert_eq!(v["ticket_pattern"], Value::Null);
        assert_eq!(v["eligible_until"], Value::Null);
        assert_eq!(v["eligible_until_unix"], Value::Null);
        assert_eq!(v["active_until"], "2026-11-21T14:59:59Z");
        assert_eq!(v["active_until_unix"], NOW + 3599);
        assert_eq!(v["max_duration_secs"], 7200);
        assert_eq!(v["require_mfa"], true);
    }

    #[test]
    fn given_a_grant_then_json_has_times_twice_and_time_left() {
        let v = grant_json(&grant(), NOW);
        assert_eq!(v["id"], 4);
        assert_eq!(v["started_at"], "2026-11-21T13:59:00Z");
        assert_eq!(v["ends_at_unix"], NOW + 3540);
        assert_eq!(v["remaining_secs"], 3540);
        assert_eq!(v["ticket"], Value::Null);
        assert_eq!(v["reason"], "deploy hotfix");
    }

    #[test]
    fn given_an_empty_grant_then_every_optional_field_is_null() {
        let v = grant_json(&GrantInfo::default(), NOW);
        for key in [
            "id",
            "user",
            "role",
            "group",
            "started_at",
            "ends_at_unix",
            "reason",
        ] {
            assert_eq!(v[key], Value::Null, "{key}");
        }
        assert_eq!(v["remaining_secs"], 0);
    }

    #[test]
    fn given_a_request_then_json_counts_approvals() {
        let v = request_json(&request());
        assert_eq!(v["id"], 12);
        assert_eq!(v["state"], "pending");
        assert_eq!(v["approvals"], 1);
        assert_eq!(v["approvals_required"], 2);
        assert_eq!(v["approved_by"], json!(["bob"]));
        assert_eq!(v["expires_at"], "2026-11-22T14:00:00Z");
        assert_eq!(v["created_at_unix"], NOW);
    }

    #[test]
    fn given_activation_replies_then_json_has_null_for_the_missing_half() {
        let active = activate_json("active", Some(&grant()), None, NOW);
        assert_eq!(active["state"], "active");
        assert_eq!(active["request"], Value::Null);
        assert_eq!(active["grant"]["role"], "admin");
        let pending = activate_json("pending", None, Some(&request()), NOW);
        assert_eq!(pending["grant"], Value::Null);
        assert_eq!(pending["request"]["id"], 12);
    }

    #[test]
    fn given_mfa_status_then_json_lock_is_null_when_not_locked() {
        let s = MfaStatusInfo {
            enrolled: true,
            pending: false,
            locked_until: 0,
            recent_failures: 1,
            recovery_codes_left: 9,
            device_change_until: 0,
            recovery_codes_issued_at: NOW,
        };
        let v = mfa_status_json(&s);
        assert_eq!(v["locked_until"], Value::Null);
        assert_eq!(v["locked_until_unix"], Value::Null);
        assert_eq!(v["device_change_until"], Value::Null);
        assert_eq!(v["recovery_codes_issued_at_unix"], NOW);
        assert_eq!(v["recovery_codes_left"], 9);
        assert_eq!(v["enrolled"], true);
    }

    #[test]
    fn given_audit_and_event_records_then_json_maps_absent_to_null() {
        let a = AuditRecord {
            id: 1,
            at: NOW,
            actor: "pimd".into(),
            action: AuditAction::Expire,
            user: "alice".into(),
            role: "admin".into(),
            outcome: Outcome::Success,
            ..Default::default()
        };
        let v = audit_json(&a);
        assert_eq!(v["at"], "2026-11-21T14:00:00Z");
        assert_eq!(v["reason"], Value::Null);
        assert_eq!(v["detail"], Value::Null);
        let ev = EventInfo {
            kind: EventKind::RequestFiled,
            at: NOW,
            user: "alice".into(),
            role: "admin".into(),
            request_id: 12,
            grant_id: 0,
            actor: "alice".into(),
            detail: String::new(),
        };
        let v = event_json(&ev);
        assert_eq!(v["request_id"], 12);
        assert_eq!(v["grant_id"], Value::Null);
        assert_eq!(v["detail"], Value::Null);
        assert_eq!(v["at_unix"], NOW);
    }

    #[test]
    fn given_c1_controls_in_strings_then_json_escapes_them_and_stays_valid() {
        let v = json!({ "reason": "a\u{9b}31mb\u{7f}\n\x1b \u{202e}é\u{2028}\u{e0041}" });
        for pretty in [true, false] {
            let text = to_json(&v, pretty);
            assert!(
                !text.trim_end().contains([
                    '\u{9b}',
                    '\u{7f}',
                    '\x1b',
                    '\u{202e}',
                    '\u{2028}',
                    '\u{e0041}'
                ]),
                "{text}"
            );
            assert!(
                text.contains("\\u202e") && text.contains("\\udb40\\udc41"),
                "{text}"
            );
            assert!(text.contains('é'), "{text}");
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, v);
            assert!(text.ends_with('\n'));
        }
        assert_eq!(to_json(&json!([1]), false).lines().count(), 1);
    }

    #[test]
    fn given_rows_then_table_aligns_columns_without_trailing_blanks() {
        let t = table(
            "",
            &["ID", "NAME", "X"],
            &[
                vec!["1".into(), "alice".into(), "".into()],
                vec!["100".into(), "b".into(), "z".into()],
            ],
        );
        assert_eq!(t, "ID   NAME   X\n1    alice\n100  b      z\n");
    }

    #[test]
    fn given_roles_then_text_lists_requirements_and_state() {
        let text = roles_text(&[role()], &clock());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ROLE   GROUP  DEFAULT  MAX  REQUIRES"),
            "{text}"
        );
        assert!(
            lines[1].contains("mfa, reason (10+ chars), 1 approval"),
            "{text}"
        );
        // 3599 s left: the nearest minute (issue 15, point 14), as activate said "in 1h".
        assert!(lines[1].contains("active, 1h left"), "{text}");
        assert!(lines[1].contains("1h       2h"), "{text}");
        assert_eq!(
            roles_text(&[], &clock()),
            "You are not eligible for any role.\n"
        );
    }

    #[test]
    fn given_a_role_with_nothing_required_then_requirements_is_a_dash() {
        let r = RoleInfo {
            name: "x".into(),
            ..Default::default()
        };
        assert_eq!(requirements(&r), "-");
    }

    #[test]
    fn given_a_ticket_pattern_then_requirements_show_it() {
        let r = RoleInfo {
            require_ticket: true,
            ticket_pattern: "^INC[0-9]+$".into(),
            require_approval: true,
            approvals_required: 2,
            ..Default::default()
        };
        assert_eq!(requirements(&r), "ticket (^INC[0-9]+$), 2 approvals");
    }

    #[test]
    fn given_an_activated_grant_then_text_says_until_when_and_about_new_shells() {
        let t = activated_text(&grant(), &clock());
        assert!(
            t.contains(
                "Activated admin: you are in group sudo until 2026-11-21 14:59 UTC (in 59m)"
            ),
            "{t}"
        );
        assert!(t.contains("new login shell"), "{t}");
        assert!(t.contains("newgrp sudo"), "{t}");
        assert!(t.contains("sg sudo"), "{t}");
    }

    #[test]
    fn given_a_pending_request_then_text_gives_id_and_next_steps() {
        let t = pending_text(&request(), &clock());
        assert!(
            t.starts_with("Request 12 filed: admin for 1h needs 2 approvals"),
            "{t}"
        );
        assert!(t.contains("pim status"), "{t}");
        assert!(t.contains("pim cancel 12"), "{t}");
        assert!(t.contains("(in 1d)"), "{t}");
    }

    #[test]
    fn given_what_grants_ends_do_then_status_shows_the_processes_and_their_fate() {
        let end = |processes, on_end: &str| GrantEnd {
            grant_id: 4,
            processes,
            on_end: on_end.into(),
            end_grace_secs: 10,
        };
        let t = status_text(&[grant()], &[], &[end(2, "terminate")], &clock());
        assert!(t.contains("AT END"), "{t}");
        assert!(t.contains("59m   2 processes ended (10s grace)"), "{t}");
        let t = status_text(&[grant()], &[], &[end(-1, "keep")], &clock());
        assert!(t.contains("? processes kept"), "{t}");
        let v = status_grant_json(&grant(), &[end(1, "terminate")], NOW);
        assert_eq!(
            (&v["processes"], &v["on_end"], &v["end_grace_secs"]),
            (&json!(1), &json!("terminate"), &json!(10))
        );
        let v = status_grant_json(&grant(), &[end(-1, "keep")], NOW);
        assert_eq!(v["processes"], Value::Null);
        assert_eq!(v["end_grace_secs"], Value::Null);
    }

    #[test]
    fn given_grants_and_requests_then_status_shows_both_with_approvals() {
        let t = status_text(&[grant()], &[request()], &[], &clock());
        assert!(t.starts_with("Grants:\n  ROLE   GROUP  UNTIL"), "{t}");
        assert!(t.contains("2026-11-21 14:59 UTC  59m"), "{t}");
        assert!(t.contains("Open requests:"), "{t}");
        assert!(t.contains("12  admin  1h   1/2"), "{t}");
        let empty = status_text(&[], &[], &[], &clock());
        assert_eq!(empty, "No live grants.\nNo open requests.\n");
    }

    #[test]
    fn given_control_characters_from_the_daemon_then_text_escapes_them() {
        let mut g = grant();
        g.reason = "evil\x1b]0;title\x07\nnext".into();
        g.role = "ad\rmin".into();
        for t in [
            status_text(&[g.clone()], &[], &[], &clock()),
            admin_grants_text(&[g.clone()], &clock()),
            activated_text(&g, &clock()),
        ] {
            assert!(!t.contains(['\x1b', '\x07', '\r']), "{t:?}");
            assert!(t.contains("evil\\x1b]0;title\\x07\\x0anext") || t.contains("ad\\x0dmin"));
        }
        let ev = EventInfo {
            kind: EventKind::RequestDenied,
            detail: "no\x1b[2J".into(),
            actor: "b\nob".into(),
            ..Default::default()
        };
        let line = event_line(&ev, &clock());
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.contains('\x1b'));
    }

    #[test]
    fn given_a_full_audit_reply_then_the_note_says_how_to_ask_for_the_next_records() {
        let records: Vec<AuditRecord> = (0..MAX_AUDIT_RECORDS)
            .map(|n| AuditRecord {
                at: 1_800_000_000 + i64::from(n),
                ..Default::default()
            })
            .collect();
        let short = &records[..records.len() - 1];
        assert_eq!(audit_truncated(short, None, None), None);
        let note = audit_truncated(&records, Some("alice"), None).expect("a note");
        assert!(
            note.contains("only the first 1000 matching records are shown"),
            "{note}"
        );
        assert!(
            note.ends_with("pim audit --since @1800000999 --user alice"),
            "{note}"
        );
    }

    #[test]
    fn given_an_event_then_one_line_with_the_present_fields() {
        let ev = EventInfo {
            kind: EventKind::RequestApproved,
            at: NOW + 5,
            user: "alice".into(),
            role: "admin".into(),
            request_id: 12,
            grant_id: 0,
            actor: "bob".into(),
            detail: "ok".into(),
        };
        assert_eq!(
            event_line(&ev, &clock()),
            "2026-11-21 14:00:05  request-approved  alice  admin  request 12  by bob: ok\n"
        );
    }

    #[test]
    fn given_decisions_then_text_reflects_the_new_state() {
        let r = request();
        assert!(decided_text("Approved", &r).contains("1/2 so far; it needs 1 more"));
        let mut done = r.clone();
        done.state = RequestState::Approved;
        done.approved_by.push("carol".into());
        assert!(decided_text("Approved", &done).contains("2/2; the request is approved"));
        let mut denied = r;
        denied.state = RequestState::Denied;
        assert_eq!(
            decided_text("Denied", &denied),
            "Denied request 12 (alice, admin for 1h).\n"
        );
        // The last approval of a request that could not become a grant says so.
        let voided = decided_text("Approved", &denied);
        assert!(voided.contains("but no grant could start"), "{voided}");
        assert!(voided.contains("the request is now denied"), "{voided}");
    }

    #[test]
    fn given_open_requests_then_approvers_see_who_what_and_how_old() {
        let mut r = request();
        r.created_at = NOW - 5400;
        let t = requests_text(&[r], &clock());
        assert!(
            t.starts_with("ID  USER   ROLE   FOR  AGE    APPROVALS"),
            "{t}"
        );
        assert!(t.contains("12  alice  admin  1h   1h30m  1/2"), "{t}");
        assert!(t.contains("INC42") && t.contains("deploy hotfix"), "{t}");
    }

    #[test]
    fn given_mfa_status_then_text_says_what_to_do() {
        let s = MfaStatusInfo {
            enrolled: false,
            pending: true,
            locked_until: NOW + 600,
            recent_failures: 5,
            recovery_codes_left: 0,
            device_change_until: 0,
            recovery_codes_issued_at: 0,
        };
        let t = mfa_status_text(&s, &clock());
        assert!(t.contains("Recovery codes from:  none issued"), "{t}");
        assert!(t.contains("'pim mfa confirm'"), "{t}");
        assert!(t.contains("until 2026-11-21 14:10 UTC (in 10m)"), "{t}");
        assert!(t.contains("Recent failures:      5"), "{t}");
        let rotating = MfaStatusInfo {
            enrolled: true,
            ..s
        };
        let t = mfa_status_text(&rotating, &clock());
        assert!(t.contains("yes (a new device waits"), "{t}");
        let expiring = MfaStatusInfo {
            device_change_until: NOW + 600,
            recovery_codes_issued_at: NOW - 3600,
            ..rotating
        };
        let t = mfa_status_text(&expiring, &clock());
        assert!(
            t.contains("waits for its first code until 2026-11-21 14:10 UTC (in 10m)"),
            "{t}"
        );
        assert!(
            t.contains("Recovery codes from:  2026-11-21 13:00 UTC (1h ago)"),
            "{t}"
        );
    }

    #[test]
    fn given_new_recovery_codes_then_text_lists_them_and_says_the_old_are_void() {
        let codes = ["k7m2p-9xq4r".to_string(), "a1b2c-d3e4f".to_string()];
        let t = new_recovery_codes_text(&codes);
        assert!(t.contains("no longer work"), "{t}");
        assert!(t.contains("    k7m2p-9xq4r\n    a1b2c-d3e4f\n"), "{t}");
        assert!(t.contains("not shown again"), "{t}");
        let first = recovery_codes_text(&codes);
        assert!(
            first.starts_with("MFA enrolment confirmed.\n\nRecovery codes (each works once"),
            "{first}"
        );
    }

    #[test]
    fn given_an_enrolment_then_text_has_qr_secret_uri_and_next_step() {
        let uri = "otpauth://totp/pim:alice@host?secret=JBSWY3DPEHPK3PXP&issuer=pim";
        let t = enroll_text(uri, "JBSWY3DPEHPK3PXP", false);
        assert!(t.contains('▀') || t.contains('▄') || t.contains('█'), "{t}");
        assert!(t.contains("JBSWY3DPEHPK3PXP"));
        assert!(t.contains(uri));
        // The prompt, not a code on the command line.
        assert!(t.contains("run 'pim mfa confirm' and type the code"), "{t}");
    }

    /// Rasterises terminal text the way a terminal shows it: `light_terminal` says whether the
    /// terminal's own background is light (its foreground then dark); SGR 30 and 47 set black
    /// ink and a white background, 0 resets to the terminal's own. Each character cell is
    /// `scale` pixels wide and two modules of `scale` pixels high, on an 80-column screen.
    fn rasterise(text: &str, light_terminal: bool, scale: usize) -> (usize, usize, Vec<bool>) {
        let (def_fg_dark, def_bg_dark) = (light_terminal, !light_terminal);
        let lines: Vec<&str> = text.lines().collect();
        let (cols, rows) = (80, lines.len() + 4);
        let (w, h) = (cols * scale, rows * 2 * scale);
        let mut px = vec![def_bg_dark; w * h];
        for (row, line) in lines.iter().enumerate() {
            let (mut fg_dark, mut bg_dark) = (def_fg_dark, def_bg_dark);
            let mut col = 0;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    assert_eq!(chars.next(), Some('['));
                    let mut params = String::new();
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                        params.push(c);
                    }
                    for p in params.split(';') {
                        match p {
                            "0" | "" => (fg_dark, bg_dark) = (def_fg_dark, def_bg_dark),
                            "30" => fg_dark = true,
                            "47" => bg_dark = false,
                            other => panic!("unexpected SGR {other}"),
                        }
                    }
                    continue;
                }
                let (top, bottom) = match c {
                    '█' => (fg_dark, fg_dark),
                    '▀' => (fg_dark, bg_dark),
                    '▄' => (bg_dark, fg_dark),
                    _ => (bg_dark, bg_dark),
                };
                for (half, dark) in [(0, top), (1, bottom)] {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let y = ((row + 2) * 2 + half) * scale + dy;
                            px[y * w + (col + 2) * scale + dx] = dark;
                        }
                    }
                }
                col += 1;
            }
        }
        (w, h, px)
    }

    /// Decodes a bitmap with zbar's `zbarimg` (Debian's zbar-tools, installed by scripts/deps).
    fn zbar_decode(name: &str, (w, h, px): (usize, usize, Vec<bool>)) -> String {
        let path = std::env::temp_dir().join(format!("pim-qr-{}-{name}.pbm", std::process::id()));
        let mut pbm = format!("P1\n{w} {h}\n").into_bytes();
        for row in px.chunks(w) {
            for &dark in row {
                pbm.push(if dark { b'1' } else { b'0' });
            }
            pbm.push(b'\n');
        }
        std::fs::write(&path, pbm).unwrap();
        let out = std::process::Command::new("zbarimg")
            .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
            .arg(&path)
            .output()
            .expect("zbarimg (zbar-tools) is needed for this test: run scripts/deps");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "zbarimg could not read the {name} rendering: {out:?}"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }

    #[test]
    fn given_an_enrolment_qr_then_it_decodes_on_light_and_dark_terminals_within_24_rows() {
        // As pimd makes it (daemon/src/mfa.rs), for a host name of 16 characters.
        let uri = "otpauth://totp/pim:alice%40web01.example.org?\
                   secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=pim\
                   &algorithm=SHA1&digits=6&period=30";
        let qr = qr_code(uri, true).unwrap();
        assert!(
            qr.lines().count() <= QR_MAX_ROWS,
            "{} rows",
            qr.lines().count()
        );
        let shown = enroll_text(uri, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", true);
        assert!(shown.ends_with(&qr), "the QR code comes last: {shown}");
        for (name, light) in [("light", true), ("dark", false)] {
            assert_eq!(
                zbar_decode(name, rasterise(&qr, light, 4)),
                uri,
                "{name} terminal"
            );
        }
        // Without colour (a file, paper): dark modules are ink, which reads on a light page.
        let plain = qr_code(uri, false).unwrap();
        assert!(!plain.contains('\x1b'));
        assert_eq!(zbar_decode("plain", rasterise(&plain, true, 4)), uri);
    }

    #[test]
    fn given_recovery_codes_then_each_listed_with_advice() {
        let t = recovery_codes_text(&["aaaa-bbbb".into(), "cccc-dddd".into()]);
        assert!(t.contains("    aaaa-bbbb\n    cccc-dddd\n"), "{t}");
        assert!(t.contains("somewhere safe"));
        assert!(t.contains("not shown again"));
    }

    #[test]
    fn given_audit_records_then_text_table_has_local_seconds() {
        let a = AuditRecord {
            id: 1,
            at: NOW + 7,
            actor: "alice".into(),
            action: AuditAction::Activate,
            outcome: Outcome::Refused,
            detail: "wrong code".into(),
            ..Default::default()
        };
        let t = audit_text(&[a], &clock());
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("2026-11-21 14:00:07  alice  activate  -"),
            "{t}"
        );
        assert_eq!(audit_text(&[], &clock()), "No audit records match.\n");
    }

    #[test]
    fn given_a_record_with_a_1_kib_reason_then_the_audit_table_fits_100_columns_with_its_zone() {
        let word = "certificate-rotation ";
        let a = AuditRecord {
            id: 1,
            at: NOW,
            actor: "a-very-long-actor-name".into(),
            action: AuditAction::AdminMfaReset,
            user: "a-very-long-user-name".into(),
            role: "a-very-long-role-name".into(),
            outcome: Outcome::Success,
            ticket: "INC-".repeat(40),
            reason: word.repeat(1024 / word.len() + 1)[..1024].to_string(),
            detail: "x".repeat(300),
            ..Default::default()
        };
        let t = audit_text(&[a.clone(), a], &clock());
        for line in t.lines() {
            assert!(
                line.chars().count() <= AUDIT_WIDTH,
                "{} > 100: {line}",
                line.chars().count()
            );
        }
        assert!(t.starts_with("TIME (UTC)"), "{t}");
        assert!(
            t.contains("    reason: certificate-rotation certificate-rotation"),
            "{t}"
        );
        assert!(t.contains('…'), "{t}");
    }

    #[test]
    fn given_an_assignment_then_text_and_json_show_the_window() {
        let t = assigned_text("bob", "db", 0, NOW + 86400, &clock());
        assert_eq!(
            t,
            "bob is eligible for db from now until 2026-11-22 14:00 UTC.\n"
        );
        let v = assignment_json("bob", "db", 0, 0);
        assert_eq!(v["from"], Value::Null);
        assert_eq!(v["until_unix"], Value::Null);
    }
}
