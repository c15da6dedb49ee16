//! Governance on the command line: `pim admin assign --active`, `pim renew`, `pim show`,
//! `pim wait`, and the assignment notices of `pim status`.

use super::*;
use crate::output::{object, put_time};
use pim_common::types::{AssignmentInfo, RequestDetail};

/// How often `pim wait` asks again while a request is pending (well within the reads a
/// minute pimd allows one user).
const WAIT_POLL: Duration = Duration::from_secs(2);

pub(super) async fn assign_active(
    user: &str,
    role: &str,
    (from, until): (i64, i64),
    reason: &str,
    json: bool,
    clock: &Clock,
) -> Result<Outcome, Failure> {
    if reason.trim().is_empty() {
        return Err(Failure::Usage(
            "an active assignment needs a reason: -r REASON".to_string(),
        ));
    }
    check_text("reason", Some(reason), MAX_REASON_BYTES)?;
    let proxy = connect().await?;
    let warning = proxy
        .admin_assign_active(user, role, from, until, reason)
        .await?;
    warn_unfinished(&warning);
    emit(
        json,
        || {
            let mut m = object(output::assignment_json(user, role, from, until));
            m.insert("active".into(), Value::Bool(true));
            m.insert("reason".into(), Value::String(reason.into()));
            Value::Object(m)
        },
        || active_assigned_text(user, role, from, until, clock),
    )?;
    Ok(Outcome::Done)
}

pub(super) async fn renew(a: RenewArgs, json: bool) -> Result<Outcome, Failure> {
    check_name("role", &a.role)?;
    if a.reason.trim().is_empty() {
        return Err(Failure::Usage(
            "a renewal needs a reason: -r REASON".to_string(),
        ));
    }
    check_text("reason", Some(&a.reason), MAX_REASON_BYTES)?;
    let clock = Clock::system();
    let until = time_arg("--until", a.until.as_deref(), &clock)?;
    let proxy = connect().await?;
    let request = proxy.renew(&a.role, until, &a.reason).await?;
    emit(
        json,
        || json!({ "request": detail_json(&request) }),
        || {
            format!(
                "Renewal request {} filed; it waits for: {}.\n'pim wait {}' waits for the \
                 decision.\n",
                request.id,
                deciders_text(&request),
                request.id
            )
        },
    )?;
    Ok(Outcome::Done)
}

pub(super) async fn show(id: i64, json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let request = proxy.show_request(id).await?;
    print_detail(&request, json)?;
    Ok(Outcome::Done)
}

/// Waits until request `id` is decided: exit 0 approved, 1 otherwise.
pub(super) async fn wait(id: i64, json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let mut noted = false;
    let request = loop {
        let request = proxy.show_request(id).await?;
        if request.state != "pending" {
            break request;
        }
        if !noted && !json {
            note(&format!(
                "waiting for request {id} to be decided by {} (Ctrl-C stops waiting)…",
                deciders_text(&request)
            ));
            noted = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(WAIT_POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                return Err(Failure::Failed(format!(
                    "stopped waiting; request {id} is still pending ('pim show {id}')"
                )));
            }
        }
    };
    print_detail(&request, json)?;
    if request.state == "approved" {
        Ok(Outcome::Done)
    } else {
        Err(Failure::Failed(format!(
            "request {id} was {}",
            escape(&request.state)
        )))
    }
}

pub fn active_assigned_text(
    user: &str,
    role: &str,
    from: i64,
    until: i64,
    clock: &Clock,
) -> String {
    let (from, until) = output::window_words(from, until, clock);
    format!(
        "{} holds role {} (active assignment, no activation needed) from {from} {until}.\n",
        escape(user),
        escape(role)
    )
}

fn print_detail(request: &RequestDetail, json: bool) -> Result<(), Failure> {
    let clock = Clock::system();
    emit(
        json,
        || json!({ "request": detail_json(request) }),
        || detail_text(request, &clock),
    )
}

fn deciders_text(r: &RequestDetail) -> String {
    if r.deciders.is_empty() {
        "nobody configured".to_string()
    } else {
        r.deciders
            .iter()
            .map(|d| escape(d))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn detail_text(r: &RequestDetail, clock: &Clock) -> String {
    let mut out = format!(
        "Request {} ({}) by {} for role {} (group {}): {}\n",
        r.id,
        escape(&r.kind),
        escape(&r.user),
        escape(&r.role),
        escape(&r.group),
        escape(&r.state)
    );
    if r.kind == "renewal" {
        let until = match r.renew_until {
            0 => "no end".to_string(),
            t => time::local_with_relative(t, clock),
        };
        out.push_str(&format!("  until:     {until}\n"));
    } else {
        out.push_str(&format!(
            "  for:       {}\n",
            duration::format(r.duration_secs)
        ));
    }
    out.push_str(&format!("  reason:    {}\n", escape(&r.reason)));
    if !r.ticket.is_empty() {
        out.push_str(&format!("  ticket:    {}\n", escape(&r.ticket)));
    }
    out.push_str(&format!(
        "  filed:     {}\n  expires:   {}\n",
        time::local_with_relative(r.created_at, clock),
        time::local_with_relative(r.expires_at, clock)
    ));
    let approved: Vec<String> = r.approved_by.iter().map(|a| escape(a)).collect();
    out.push_str(&format!(
        "  approvals: {} of {}{}\n",
        r.approved_by.len(),
        r.approvals_required,
        if approved.is_empty() {
            String::new()
        } else {
            format!(" ({})", approved.join(", "))
        }
    ));
    out.push_str(&format!("  deciders:  {}\n", deciders_text(r)));
    out
}

pub fn detail_json(r: &RequestDetail) -> Value {
    let mut m = object(json!({
        "id": r.id,
        "kind": r.kind,
        "user": r.user,
        "role": r.role,
        "group": r.group,
        "state": r.state,
        "duration_secs": r.duration_secs,
        "reason": r.reason,
        "ticket": r.ticket,
        "approvals_required": r.approvals_required,
        "approved_by": r.approved_by,
        "deciders": r.deciders,
    }));
    put_time(&mut m, "created", r.created_at);
    put_time(&mut m, "expires", r.expires_at);
    put_time(&mut m, "renew_until", r.renew_until);
    Value::Object(m)
}

/// The lines `pim status` adds for assignments near (or just past) their end.
pub fn notices_text(assignments: &[AssignmentInfo]) -> String {
    assignments
        .iter()
        .filter(|a| !a.notice.is_empty())
        .map(|a| format!("Notice: {}\n", escape(&a.notice)))
        .collect()
}

pub fn assignment_json(a: &AssignmentInfo) -> Value {
    let mut m = object(json!({
        "role": a.role,
        "kind": if a.active { "active" } else { "eligible" },
        "reason": a.reason,
        "notice": if a.notice.is_empty() { Value::Null } else { Value::String(a.notice.clone()) },
    }));
    put_time(&mut m, "from", a.not_before);
    put_time(&mut m, "until", a.not_after);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::tests::{utc as clock, NOW};

    fn detail() -> RequestDetail {
        RequestDetail {
            id: 7,
            kind: "renewal".into(),
            user: "dave".into(),
            role: "docker".into(),
            group: "docker".into(),
            state: "pending".into(),
            renew_until: NOW + 86400,
            reason: "still on the team".into(),
            created_at: NOW,
            expires_at: NOW + 7 * 86400,
            approvals_required: 1,
            deciders: vec!["gina".into(), "%pim-admins".into(), "root".into()],
            ..RequestDetail::default()
        }
    }

    #[test]
    fn given_a_renewal_then_show_lists_its_end_and_deciders_in_text_and_json() {
        let text = detail_text(&detail(), &clock());
        assert!(
            text.starts_with("Request 7 (renewal) by dave for role docker"),
            "{text}"
        );
        assert!(
            text.contains("deciders:  gina, %pim-admins, root"),
            "{text}"
        );
        assert!(text.contains("approvals: 0 of 1"), "{text}");
        let v = detail_json(&detail());
        assert_eq!(v["kind"], "renewal");
        assert_eq!(v["deciders"][0], "gina");
        assert_eq!(v["renew_until_unix"], NOW + 86400);
    }

    #[test]
    fn given_assignments_then_status_notices_only_those_with_a_notice() {
        let quiet = AssignmentInfo {
            role: "db".into(),
            ..AssignmentInfo::default()
        };
        let near = AssignmentInfo {
            role: "docker".into(),
            notice: "your eligible assignment to role docker ends in 13 days".into(),
            ..AssignmentInfo::default()
        };
        assert_eq!(
            notices_text(&[quiet, near]),
            "Notice: your eligible assignment to role docker ends in 13 days\n"
        );
    }
}
