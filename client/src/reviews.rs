//! Access reviews on the client side: `pim reviews`, `pim review keep|remove`, `pim admin
//! review start|show`, `pim admin reinstate`, and the roles a caller decides for (`pim roles`).

use crate::cli::{AdminReviewCommand, ReviewCommand};
use crate::commands::{check_name, check_text, connect, emit, write_out, Outcome};
use crate::csv::{row, text_cell};
use crate::error::Failure;
use crate::input::{self, Console};
use crate::output::{self, table};
use crate::time::{self, rfc3339, Clock};
use pim_common::text::{escape, MAX_REASON_BYTES};
use pim_common::types::{DecidedRole, ReviewInfo, ReviewItemInfo, RoleInfo};
use serde_json::{json, Map, Value};

/// CSV columns of `pim admin review show --csv`, one row per item.
pub const CSV_HEADER: [&str; 16] = [
    "review",
    "role",
    "started_at",
    "ends_at",
    "completed_at",
    "default",
    "user",
    "access",
    "recommendation",
    "recommendation_why",
    "decision",
    "decided_by",
    "decided_at",
    "decided_at_unix",
    "comment",
    "result",
];

fn e(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        escape(s)
    }
}

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn put_time(map: &mut Map<String, Value>, key: &str, unix: i64) {
    map.insert(
        key.to_string(),
        rfc3339(unix).map_or(Value::Null, Value::String),
    );
    map.insert(
        format!("{key}_unix"),
        if unix == 0 {
            Value::Null
        } else {
            Value::from(unix)
        },
    );
}

pub fn item_json(i: &ReviewItemInfo) -> Value {
    let mut map = Map::new();
    map.insert("user".into(), json!(i.user));
    map.insert(
        "access".into(),
        json!(i
            .access
            .split(',')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()),
    );
    map.insert("recommendation".into(), json!(i.recommendation));
    map.insert("recommendation_why".into(), json!(i.recommendation_why));
    map.insert("decision".into(), opt_str(&i.decision));
    map.insert("decided_by".into(), opt_str(&i.decided_by));
    put_time(&mut map, "decided_at", i.decided_at);
    map.insert("comment".into(), opt_str(&i.comment));
    map.insert("result".into(), opt_str(&i.result));
    Value::Object(map)
}

pub fn review_json(r: &ReviewInfo) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(r.id));
    map.insert("role".into(), json!(r.role));
    put_time(&mut map, "started_at", r.started_at);
    put_time(&mut map, "ends_at", r.ends_at);
    put_time(&mut map, "completed_at", r.completed_at);
    map.insert("reviewers".into(), json!(r.reviewers));
    map.insert("default".into(), json!(r.default_decision));
    map.insert("recurring".into(), json!(r.recurring));
    map.insert("started_by".into(), json!(r.started_by));
    map.insert(
        "items".into(),
        Value::Array(r.items.iter().map(item_json).collect()),
    );
    Value::Object(map)
}

pub fn decided_json(d: &DecidedRole) -> Value {
    json!({ "role": d.role, "group": d.group, "as": d.capacities })
}

/// `pim roles`: the roles one may activate, then those one decides for.
pub fn roles_with_decisions_text(
    roles: &[RoleInfo],
    decides: &[DecidedRole],
    clock: &Clock,
) -> String {
    if decides.is_empty() {
        return output::roles_text(roles, clock);
    }
    let mut out = if roles.is_empty() {
        "You are not eligible for any role.\n".to_string()
    } else {
        output::roles_text(roles, clock)
    };
    out.push_str("\nYou decide for:\n");
    let rows: Vec<Vec<String>> = decides
        .iter()
        .map(|d| {
            let mut next = Vec::new();
            let has = |c: &str| d.capacities.iter().any(|x| x == c);
            if has("approver") {
                next.push("pim requests");
            }
            if has("reviewer") {
                next.push("pim reviews");
            }
            if has("owner") || has("admin") {
                next.push("pim admin grants");
            }
            vec![
                e(&d.role),
                e(&d.group),
                d.capacities
                    .iter()
                    .map(|c| escape(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                next.join(", "),
            ]
        })
        .collect();
    out.push_str(&table("  ", &["ROLE", "GROUP", "AS", "SEE"], &rows));
    out
}

fn items_table(items: &[ReviewItemInfo], clock: &Clock, closed: bool) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let decision = if i.decision.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{} by {} {}",
                    escape(&i.decision),
                    e(&i.decided_by),
                    time::local_minute(i.decided_at, &clock.tz)
                )
            };
            let mut row = vec![
                e(&i.user),
                e(&i.access),
                format!("{}: {}", e(&i.recommendation), e(&i.recommendation_why)),
                decision,
                e(&i.comment),
            ];
            if closed {
                row.push(e(&i.result));
            }
            row
        })
        .collect();
    let mut headers = vec!["USER", "ACCESS", "RECOMMENDATION", "DECISION", "COMMENT"];
    if closed {
        headers.push("RESULT");
    }
    table("  ", &headers, &rows)
}

fn review_heading(r: &ReviewInfo, clock: &Clock) -> String {
    let state = if r.completed_at != 0 {
        format!("ended {}", time::local_minute(r.completed_at, &clock.tz))
    } else {
        format!(
            "open until {} ({} left)",
            time::local_minute(r.ends_at, &clock.tz),
            time::span(time::remaining(r.ends_at, clock.now))
        )
    };
    format!(
        "Review {} of role {} ({}), started {} by {}, {state}; reviewers {}; undecided: {}\n",
        r.id,
        e(&r.role),
        if r.recurring { "recurring" } else { "one-off" },
        time::local_minute(r.started_at, &clock.tz),
        e(&r.started_by),
        e(&r.reviewers.join(",")),
        e(&r.default_decision)
    )
}

pub fn reviews_text(reviews: &[ReviewInfo], clock: &Clock) -> String {
    if reviews.is_empty() {
        return "No open access review has items you may decide.\n".to_string();
    }
    let mut out = String::new();
    for r in reviews {
        out.push_str(&review_heading(r, clock));
        out.push_str(&items_table(&r.items, clock, false));
    }
    out.push_str(
        "Decide with 'pim review keep|remove REVIEW USER [-c COMMENT]'; the last decision before \
         the end counts.\n",
    );
    out
}

pub fn review_csv(r: &ReviewInfo) -> String {
    let mut out = row(&CSV_HEADER.map(String::from));
    for i in &r.items {
        out.push_str(&row(&[
            r.id.to_string(),
            text_cell(&r.role),
            rfc3339(r.started_at).unwrap_or_default(),
            rfc3339(r.ends_at).unwrap_or_default(),
            rfc3339(r.completed_at).unwrap_or_default(),
            text_cell(&r.default_decision),
            text_cell(&i.user),
            text_cell(&i.access),
            text_cell(&i.recommendation),
            text_cell(&i.recommendation_why),
            text_cell(&i.decision),
            text_cell(&i.decided_by),
            rfc3339(i.decided_at).unwrap_or_default(),
            if i.decided_at == 0 {
                String::new()
            } else {
                i.decided_at.to_string()
            },
            text_cell(&i.comment),
            text_cell(&i.result),
        ]));
    }
    out
}

pub async fn reviews(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let reviews = proxy.list_reviews().await?;
    let clock = Clock::system();
    emit(
        json,
        || json!({ "reviews": reviews.iter().map(review_json).collect::<Vec<_>>() }),
        || reviews_text(&reviews, &clock),
    )?;
    Ok(Outcome::Done)
}

pub async fn decide(
    cmd: ReviewCommand,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let (decision, a) = match cmd {
        ReviewCommand::Keep(a) => ("keep", a),
        ReviewCommand::Remove(a) => ("remove", a),
    };
    check_name("user", &a.user)?;
    check_text("comment", a.comment.as_deref(), MAX_REASON_BYTES)?;
    let proxy = connect().await?;
    let code = input::code(a.code.as_deref(), true, &input::current_user(), console)?;
    let item = proxy
        .review_decide(
            a.review,
            &a.user,
            decision,
            a.comment.as_deref().unwrap_or(""),
            &code,
        )
        .await?;
    emit(
        json,
        || json!({ "review": a.review, "item": item_json(&item) }),
        || {
            format!(
                "Review {}: {} {}'s access; it applies at the review's end (another reviewer's \
                 later decision replaces yours).\n",
                a.review,
                if decision == "keep" { "keep" } else { "remove" },
                escape(&item.user)
            )
        },
    )?;
    Ok(Outcome::Done)
}

pub async fn admin_review(cmd: AdminReviewCommand, json: bool) -> Result<Outcome, Failure> {
    match cmd {
        AdminReviewCommand::Start {
            role,
            duration,
            reviewers,
        } => {
            check_name("role", &role)?;
            let secs = crate::commands::duration_arg(duration.as_deref())?;
            let reviewers: Vec<String> = reviewers
                .into_iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect();
            let proxy = connect().await?;
            let review = proxy.admin_review_start(&role, secs, reviewers).await?;
            let clock = Clock::system();
            emit(
                json,
                || json!({ "review": review_json(&review) }),
                || {
                    format!(
                        "{}\nStarted review {} of role {} with {} item(s); it ends {}.\n",
                        review.id,
                        review.id,
                        e(&review.role),
                        review.items.len(),
                        time::local_minute(review.ends_at, &clock.tz)
                    )
                },
            )?;
        }
        AdminReviewCommand::Show { review, csv } => {
            let proxy = connect().await?;
            let r = proxy.admin_review_show(review).await?;
            let clock = Clock::system();
            if csv {
                write_out(&review_csv(&r))?;
            } else {
                emit(
                    json,
                    || json!({ "review": review_json(&r) }),
                    || {
                        let mut out = review_heading(&r, &clock);
                        out.push_str(&items_table(&r.items, &clock, r.completed_at != 0));
                        out
                    },
                )?;
            }
        }
    }
    Ok(Outcome::Done)
}

pub async fn reinstate(user: &str, role: &str, json: bool) -> Result<Outcome, Failure> {
    check_name("user", user)?;
    check_name("role", role)?;
    let proxy = connect().await?;
    proxy.admin_reinstate(user, role).await?;
    emit(
        json,
        || json!({ "user": user, "role": role }),
        || {
            format!(
                "Reinstated {}'s standing eligibility for role {}.\n",
                escape(user),
                escape(role)
            )
        },
    )?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(user: &str, decision: &str) -> ReviewItemInfo {
        ReviewItemInfo {
            user: user.into(),
            access: "standing,assignment".into(),
            recommendation: "remove".into(),
            recommendation_why: "never activated".into(),
            decision: decision.into(),
            decided_by: if decision.is_empty() { "" } else { "carol" }.into(),
            decided_at: if decision.is_empty() {
                0
            } else {
                1_700_000_000
            },
            comment: "=cmd".into(),
            result: String::new(),
        }
    }

    #[test]
    fn given_a_review_then_json_has_nulls_for_the_undecided_and_a_list_of_access() {
        let v = item_json(&item("bob", ""));
        assert_eq!(v["decision"], Value::Null);
        assert_eq!(v["decided_at_unix"], Value::Null);
        assert_eq!(v["access"], json!(["standing", "assignment"]));
    }

    #[test]
    fn given_a_review_then_csv_has_one_row_per_item_and_defuses_formulas() {
        let r = ReviewInfo {
            id: 3,
            role: "db".into(),
            items: vec![item("bob", "keep"), item("dave", "")],
            ..ReviewInfo::default()
        };
        let csv = review_csv(&r);
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("3,db,"));
        assert!(lines[1].contains(",'=cmd,"), "{}", lines[1]);
    }

    #[test]
    fn given_an_approver_eligible_for_nothing_then_roles_says_what_they_decide_for() {
        let decides = vec![DecidedRole {
            role: "db".into(),
            group: "dba".into(),
            capacities: vec!["approver".into()],
        }];
        let text = roles_with_decisions_text(&[], &decides, &crate::time::tests::utc());
        assert!(text.contains("You decide for:"), "{text}");
        assert!(text.contains("approver"), "{text}");
        assert!(text.contains("pim requests"), "{text}");
    }
}
