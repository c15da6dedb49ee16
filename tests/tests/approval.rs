//! The approval workflow end to end: alice asks for role `db`, which needs approval; bob and
//! carol approve or deny with TOTP codes; dave is the bystander (and, once assigned, a second
//! requester). Each test has its own sandbox and real `pimd`, `pim`, `dbus-daemon`, `gpasswd`.
//!
//! TOTP budget: the daemon accepts each step once and only now-1..now+1, so a user has two
//! codes at hand (the enrolment's and one more) before `Authenticator::next_code` must sleep.
//! Every test here gives each user at most those two, so none of them waits for the clock.

use std::time::{Duration, Instant};

use pim_e2e::{Authenticator, Background, Output, Sandbox, CONFIG_PATH};
use serde_json::Value;

/// Generous limit for anything that should happen "at once" (it returns as soon as it does).
const WAIT: Duration = Duration::from_secs(60);

const REASON: &str = "restore the orders table from last night's backup";
const TICKET: &str = "CHG1234";
const GROUP: &str = "dbadmin";
const NOTIFY_SCRIPT: &str = "/etc/pim/notify.sh";
const NOTIFY_LOG: &str = "/var/log/pim-notify.log";

/// Role `db` (group dbadmin) needs `approvals` of alice, bob and carol; alice is its only
/// standing eligible user and needs no MFA to ask. Role `web` is dave's, without approval.
fn config(approvals: u32, request_ttl: &str, daemon_extra: &str) -> String {
    format!(
        r#"
[daemon]
admins = ["%pim-admins"]
{daemon_extra}

[roles.db]
group = "{GROUP}"
description = "Database administration"
eligible = ["alice"]
require_mfa = false
require_approval = true
approvers = ["alice", "bob", "carol"]
approvals_required = {approvals}
request_ttl = "{request_ttl}"
max_duration = "2h"
default_duration = "1h"

[roles.web]
group = "webadmin"
description = "Web server administration"
eligible = ["dave"]
require_mfa = false
require_approval = false
max_duration = "1h"
"#
    )
}

/// A sandbox with alice, bob, carol and dave, the groups of both roles, `config` in place and
/// pimd running.
fn site(config: &str) -> Sandbox {
    site_with(config, &[])
}

/// Like [`site`], writing `files` (path, contents, mode) before pimd starts.
fn site_with(config: &str, files: &[(&str, &str, u32)]) -> Sandbox {
    let sb = Sandbox::start();
    sb.add_group("pim-admins");
    sb.add_group(GROUP);
    sb.add_group("webadmin");
    for user in ["alice", "bob", "carol", "dave"] {
        sb.add_user(user, &[]);
    }
    sb.write_file(CONFIG_PATH, config, 0o644);
    for (path, contents, mode) in files {
        sb.write_file(path, contents, *mode);
    }
    sb.run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
        .assert_success();
    sb.start_pimd();
    sb
}

fn pim(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(args);
    sb.run(user, &argv)
}

/// `pim --json activate db -d 30m -r REASON -t TICKET` as `user`: exit status 3, state
/// pending; returns the request's id.
#[track_caller]
fn file_request(sb: &Sandbox, user: &str) -> i64 {
    let out = pim(
        sb,
        user,
        &[
            "--json", "activate", "db", "-d", "30m", "-r", REASON, "-t", TICKET,
        ],
    );
    out.assert_status(3);
    let doc = out.json();
    assert_eq!(doc["state"], "pending", "{out}");
    assert_eq!(doc["request"]["state"], "pending", "{out}");
    assert_eq!(doc["request"]["user"], user, "{out}");
    doc["request"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no request id:\n{out}"))
}

/// `pim approve ID -c COMMENT --code CODE` as `user`, with the next code of their device.
fn approve(sb: &Sandbox, user: &str, phone: &mut Authenticator, id: i64, comment: &str) -> Output {
    let code = phone.next_code(sb);
    pim(
        sb,
        user,
        &["approve", &id.to_string(), "-c", comment, "--code", &code],
    )
}

/// alice's own view: `pim --json status`.
fn status(sb: &Sandbox, user: &str) -> Value {
    pim(sb, user, &["--json", "status"]).assert_success().json()
}

/// The open request `id` in `user`'s `pim status`, if listed.
fn open_request(sb: &Sandbox, user: &str, id: i64) -> Option<Value> {
    let doc = status(sb, user);
    doc["requests"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id).cloned())
}

/// The audit records of `action` by `actor` whose fields contain everything in `fields`
/// (`detail` matched as a substring, the others exactly).
fn records<'a>(
    all: &'a [Value],
    action: &str,
    actor: &str,
    fields: &[(&str, &str)],
) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| r["action"] == action && r["actor"] == actor)
        .filter(|r| {
            fields.iter().all(|(key, want)| {
                let have = r[*key].as_str().unwrap_or("");
                if *key == "detail" {
                    have.contains(want)
                } else {
                    have == *want
                }
            })
        })
        .collect()
}

/// Exactly one matching record; panics with the whole log otherwise.
#[track_caller]
fn one_record<'a>(
    all: &'a [Value],
    action: &str,
    actor: &str,
    fields: &[(&str, &str)],
) -> &'a Value {
    let found = records(all, action, actor, fields);
    if found.len() != 1 {
        panic!(
            "expected one audit record {action} by {actor} with {fields:?}, found {}:\n{}",
            found.len(),
            serde_json::to_string_pretty(&all).unwrap_or_default()
        );
    }
    found[0]
}

/// Waits until the background command has printed `needle` on stderr (its output may still
/// arrive for a moment after it ended).
#[track_caller]
fn wait_for_stderr(bg: &mut Background<'_>, needle: &str) {
    let start = Instant::now();
    let mut ended: Option<Instant> = None;
    while !bg.stderr_so_far().contains(needle) {
        if ended.is_none() && !bg.is_running() {
            ended = Some(Instant::now());
        }
        let gone = ended.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
        if start.elapsed() > WAIT || gone {
            panic!(
                "no {needle:?} on stderr (running: {}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
                bg.is_running(),
                bg.stdout_so_far(),
                bg.stderr_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pim activate db ... --wait` as `user` in the background, once it is waiting; returns it
/// with the request's id (from the note "waiting for approval of request N").
fn wait_in_background<'a>(sb: &'a Sandbox, user: &str, extra: &[&str]) -> (Background<'a>, i64) {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(extra);
    argv.extend_from_slice(&["activate", "db", "-d", "30m", "-r", REASON, "--wait"]);
    let mut bg = sb.spawn(user, &argv);
    wait_for_stderr(&mut bg, "waiting for approval of request ");
    let err = bg.stderr_so_far();
    let id = err
        .split("waiting for approval of request ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no request id in the waiting note:\n{err}"));
    (bg, id)
}

#[test]
fn given_two_approvals_required_when_bob_then_carol_approve_then_the_grant_starts_after_carol() {
    let sb = site(&config(2, "1h", ""));
    let mut alice = sb.enroll_mfa("alice");
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");

    // Filing: exit status 3 and the request's id.
    let id = file_request(&sb, "alice");
    assert!(!sb.is_member("alice", GROUP));

    // The requester sees it in her status with its approvals so far.
    let mine = open_request(&sb, "alice", id).expect("alice's status lists her request");
    assert_eq!(mine["approvals"], 0, "{mine}");
    assert_eq!(mine["approvals_required"], 2, "{mine}");
    pim(&sb, "alice", &["status"])
        .assert_success()
        .assert_stdout_contains("Open requests:")
        .assert_stdout_contains("0/2")
        .assert_stdout_contains(REASON);

    // An approver's list: requester, role, duration, reason, ticket and when it was filed.
    let listed = pim(&sb, "bob", &["requests"]);
    listed.assert_success();
    for needle in ["alice", "db", "30m", REASON, TICKET, "0/2", &id.to_string()] {
        listed.assert_stdout_contains(needle);
    }
    let doc = pim(&sb, "bob", &["--json", "requests"])
        .assert_success()
        .json();
    let request = &doc["requests"][0];
    assert_eq!(request["id"], id, "{doc}");
    assert_eq!(request["user"], "alice", "{doc}");
    assert_eq!(request["role"], "db", "{doc}");
    assert_eq!(request["duration_secs"], 1800, "{doc}");
    assert_eq!(request["reason"], REASON, "{doc}");
    assert_eq!(request["ticket"], TICKET, "{doc}");
    assert!(
        request["created_at_unix"].as_i64().unwrap_or(0) > 0,
        "{doc}"
    );
    // Not for the requester herself (though she approves db), nor for a bystander.
    for user in ["alice", "dave"] {
        pim(&sb, user, &["requests"])
            .assert_success()
            .assert_stdout_contains("No open requests wait for your decision.");
    }

    // alice is an approver of db, yet may not approve her own request, even with a good code.
    let own = approve(&sb, "alice", &mut alice, id, "looks fine to me");
    own.assert_status(1)
        .assert_stderr_contains("cannot decide your own request");

    // bob's approval is the first of two: no membership yet.
    approve(&sb, "bob", &mut bob, id, "checked with the DBA on call")
        .assert_success()
        .assert_stdout_contains("1/2 so far; it needs 1 more");
    assert!(!sb.is_member("alice", GROUP));
    assert!(!sb.groups_of("alice").contains(&GROUP.to_string()));
    let mine = open_request(&sb, "alice", id).expect("still open after one approval");
    assert_eq!(mine["approvals"], 1, "{mine}");
    assert_eq!(mine["approved_by"], serde_json::json!(["bob"]), "{mine}");
    pim(&sb, "alice", &["status"])
        .assert_success()
        .assert_stdout_contains("1/2");

    // bob again: refused, still one approval. (The refusal comes before the code is looked
    // at, so a dummy code proves it without spending one of bob's.)
    let again = pim(
        &sb,
        "bob",
        &[
            "approve",
            &id.to_string(),
            "-c",
            "once more",
            "--code",
            "000000",
        ],
    );
    again
        .assert_status(1)
        .assert_stderr_contains("already approved request");
    let mine = open_request(&sb, "alice", id).expect("still open after bob's second try");
    assert_eq!(mine["approvals"], 1, "{mine}");

    // carol's approval is the second: the grant starts, a fresh login carries the group.
    approve(&sb, "carol", &mut carol, id, "agreed, go ahead")
        .assert_success()
        .assert_stdout_contains("2/2; the request is approved");
    assert!(sb.is_member("alice", GROUP));
    assert!(sb.groups_of("alice").contains(&GROUP.to_string()));
    let doc = status(&sb, "alice");
    assert_eq!(doc["requests"], serde_json::json!([]), "{doc}");
    let grant = &doc["grants"][0];
    assert_eq!(grant["role"], "db", "{doc}");
    assert_eq!(grant["ticket"], TICKET, "{doc}");
    let started = grant["started_at_unix"].as_i64().expect("started_at_unix");
    let ends = grant["ends_at_unix"].as_i64().expect("ends_at_unix");
    assert_eq!(ends - started, 1800, "the requested 30m: {doc}");

    // The audit tells the whole story, with who and the comments; the grant counts from the
    // last approval.
    let all = sb.audit_records("root", &[]);
    let filed = one_record(
        &all,
        "request",
        "alice",
        &[
            ("user", "alice"),
            ("role", "db"),
            ("reason", REASON),
            ("ticket", TICKET),
        ],
    );
    assert_eq!(filed["outcome"], "success", "{filed}");
    let own = one_record(&all, "approve", "alice", &[("outcome", "refused")]);
    assert!(
        own["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("request {id}")),
        "{own}"
    );
    let by_bob = one_record(
        &all,
        "approve",
        "bob",
        &[
            ("outcome", "success"),
            ("user", "alice"),
            ("reason", "checked with the DBA on call"),
            ("detail", "approval 1 of 2"),
        ],
    );
    one_record(
        &all,
        "approve",
        "bob",
        &[("outcome", "refused"), ("detail", "already approved")],
    );
    let by_carol = one_record(
        &all,
        "approve",
        "carol",
        &[
            ("outcome", "success"),
            ("reason", "agreed, go ahead"),
            ("detail", "approval 2 of 2"),
        ],
    );
    let start = one_record(
        &all,
        "grant-start",
        "carol",
        &[("user", "alice"), ("role", "db")],
    );
    let at = |r: &Value| r["at_unix"].as_i64().unwrap_or(0);
    assert_eq!(at(start), started, "{start}");
    assert!(
        at(by_bob) <= at(by_carol) && at(by_carol) <= started,
        "{all:#?}"
    );
}

#[test]
fn given_activate_wait_when_both_approvers_approve_then_it_exits_0_with_the_grant() {
    let sb = site(&config(2, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");

    let (mut waiting, id) = wait_in_background(&sb, "alice", &[]);
    waiting.wait_for_stdout(&format!("Request {id} filed"), WAIT);

    approve(&sb, "bob", &mut bob, id, "fine by me").assert_success();
    wait_for_stderr(
        &mut waiting,
        &format!("request {id}: approval from bob (1/2)"),
    );
    assert!(
        waiting.is_running(),
        "one approval of two must not end the wait"
    );
    assert!(!sb.is_member("alice", GROUP));

    approve(&sb, "carol", &mut carol, id, "fine by me too").assert_success();
    let out = waiting.wait(WAIT);
    out.assert_success()
        .assert_stdout_contains("Activated db: you are in group dbadmin");
    assert!(sb.is_member("alice", GROUP));
}

#[test]
fn given_a_denial_then_the_request_ends_wait_exits_1_and_later_approvals_are_refused() {
    let sb = site(&config(1, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");
    let (waiting, id) = wait_in_background(&sb, "alice", &[]);
    let id_text = id.to_string();

    // A denial needs a comment: usage errors, before any code is asked for.
    pim(&sb, "bob", &["deny", &id_text, "--code", "000000"]).assert_status(2);
    pim(
        &sb,
        "bob",
        &["deny", &id_text, "-c", " ", "--code", "000000"],
    )
    .assert_status(2)
    .assert_stderr_contains("-c COMMENT");

    let comment = "not during the release freeze";
    let code = bob.next_code(&sb);
    pim(
        &sb,
        "bob",
        &["deny", &id_text, "-c", comment, "--code", &code],
    )
    .assert_success()
    .assert_stdout_contains(&format!("Denied request {id} (alice, db for 30m)"));

    let out = waiting.wait(WAIT);
    out.assert_status(1)
        .assert_stderr_contains(&format!("request {id} was denied by bob: {comment}"));

    let late = approve(&sb, "carol", &mut carol, id, "too late");
    late.assert_status(1)
        .assert_stderr_contains(&format!("request {id} is already denied"));
    assert!(!sb.is_member("alice", GROUP));
    let doc = status(&sb, "alice");
    assert_eq!(doc["requests"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["grants"], serde_json::json!([]), "{doc}");

    let all = sb.audit_records("root", &[]);
    one_record(
        &all,
        "deny",
        "bob",
        &[
            ("outcome", "success"),
            ("user", "alice"),
            ("role", "db"),
            ("reason", comment),
            ("detail", &format!("request {id} denied")),
        ],
    );
    one_record(
        &all,
        "approve",
        "carol",
        &[
            ("outcome", "refused"),
            ("reason", "too late"),
            ("detail", "already denied"),
        ],
    );
    assert!(
        records(&all, "grant-start", "carol", &[]).is_empty(),
        "{all:#?}"
    );
}

#[test]
fn given_a_short_request_ttl_then_the_undecided_request_expires_and_cannot_be_approved() {
    let sb = site(&config(1, "3s", ""));
    let mut bob = sb.enroll_mfa("bob");

    // --json --wait: one document at the end, saying how it ended.
    let (waiting, id) = wait_in_background(&sb, "alice", &["--json"]);
    let out = waiting.wait(WAIT);
    out.assert_status(1)
        .assert_stderr_contains(&format!("request {id} expired before enough approvals"));
    let doc = out.json();
    assert_eq!(doc["state"], "expired", "{out}");
    assert_eq!(doc["request"]["id"], id, "{out}");
    assert_eq!(doc["request"]["state"], "expired", "{out}");

    let all = sb.audit_records("root", &[]);
    one_record(
        &all,
        "request-expire",
        "pimd",
        &[
            ("user", "alice"),
            ("role", "db"),
            ("detail", &format!("request {id} expired undecided")),
        ],
    );

    approve(&sb, "bob", &mut bob, id, "sorry, I was away")
        .assert_status(1)
        .assert_stderr_contains(&format!("request {id} is already expired"));
    assert!(open_request(&sb, "alice", id).is_none());
    pim(&sb, "bob", &["requests"])
        .assert_success()
        .assert_stdout_contains("No open requests wait for your decision.");
    assert!(!sb.is_member("alice", GROUP));
}

#[test]
fn given_an_open_request_then_only_the_requester_can_cancel_it() {
    let sb = site(&config(1, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let (waiting, id) = wait_in_background(&sb, "alice", &[]);
    let id_text = id.to_string();

    // Neither an approver nor a bystander can withdraw alice's request.
    for user in ["bob", "dave"] {
        pim(&sb, user, &["cancel", &id_text])
            .assert_status(1)
            .assert_stderr_contains(&format!("you have no request {id}"));
    }
    assert!(open_request(&sb, "alice", id).is_some());

    pim(&sb, "alice", &["cancel", &id_text])
        .assert_success()
        .assert_stdout_contains(&format!("Cancelled request {id} (alice, db for 30m)"));
    waiting
        .wait(WAIT)
        .assert_status(1)
        .assert_stderr_contains(&format!("request {id} was cancelled by alice"));
    assert!(open_request(&sb, "alice", id).is_none());

    approve(&sb, "bob", &mut bob, id, "ok")
        .assert_status(1)
        .assert_stderr_contains(&format!("request {id} is already cancelled"));
    assert!(!sb.is_member("alice", GROUP));

    let all = sb.audit_records("root", &[]);
    one_record(
        &all,
        "cancel",
        "alice",
        &[
            ("outcome", "success"),
            ("role", "db"),
            ("detail", &format!("request {id} cancelled")),
        ],
    );
    for user in ["bob", "dave"] {
        one_record(&all, "cancel", user, &[("outcome", "refused")]);
    }
}

#[test]
fn given_watchers_then_approvers_see_a_request_at_once_and_unrelated_users_do_not() {
    let sb = site(&config(1, "1h", ""));
    let mut bob_watch = sb.spawn("bob", &["pim", "watch"]);
    let mut dave_watch = sb.spawn("dave", &["pim", "watch"]);
    for watch in [&mut bob_watch, &mut dave_watch] {
        wait_for_stderr(watch, "following events");
    }

    let id = file_request(&sb, "alice");
    bob_watch.wait_for_stdout(
        &format!("request-filed  alice  db  request {id}  by alice: {REASON}"),
        WAIT,
    );

    // dave's own activation reaches his watch after alice's request would have: the daemon
    // signals in order, so had alice's been sent to him, it would be there by now.
    pim(
        &sb,
        "dave",
        &["activate", "web", "-r", "rotate the TLS certificates"],
    )
    .assert_success();
    dave_watch.wait_for_stdout("grant-started  dave  web", WAIT);
    let seen = dave_watch.stdout_so_far();
    assert!(
        !seen.contains("alice") && !seen.contains("request-filed"),
        "dave saw:\n{seen}"
    );

    // The other way round: bob approves db, not web, so dave's grant is not his business.
    pim(&sb, "alice", &["cancel", &id.to_string()]).assert_success();
    bob_watch.wait_for_stdout(&format!("request-cancelled  alice  db  request {id}"), WAIT);
    let seen = bob_watch.stdout_so_far();
    assert!(!seen.contains("dave"), "bob saw:\n{seen}");

    bob_watch.kill();
    dave_watch.kill();
}

/// The notify script: appends each event (its stdin) as one line to NOTIFY_LOG. pimd runs
/// one per event, concurrently, hence the lock.
const APPENDING_NOTIFY: &str = r#"#!/bin/sh
exec 9>>/var/log/pim-notify.log
flock 9
cat >&9
echo >&9
"#;

#[test]
fn given_a_notify_command_then_it_receives_each_event_as_json_on_stdin() {
    let sb = site_with(
        &config(1, "1h", &format!("notify_command = [\"{NOTIFY_SCRIPT}\"]")),
        &[(NOTIFY_SCRIPT, APPENDING_NOTIFY, 0o755)],
    );
    let mut bob = sb.enroll_mfa("bob");

    let id = file_request(&sb, "alice");
    let events = |sb: &Sandbox| -> Vec<Value> {
        let text = sb.run("root", &["cat", "--", NOTIFY_LOG]).stdout;
        // Complete lines only: a script may be writing the last one right now.
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not one JSON document a line ({e}): {l:?}"))
            })
            .collect()
    };
    let kind = |all: &[Value], kind: &str| all.iter().find(|e| e["kind"] == kind).cloned();
    sb.wait_until("notify_command to get request-filed", WAIT, || {
        kind(&events(&sb), "request-filed").is_some()
    });
    let filed = kind(&events(&sb), "request-filed").unwrap();
    assert_eq!(filed["user"], "alice", "{filed}");
    assert_eq!(filed["role"], "db", "{filed}");
    assert_eq!(filed["request_id"], id, "{filed}");
    assert_eq!(filed["actor"], "alice", "{filed}");
    assert_eq!(filed["detail"], REASON, "{filed}");
    // Whom it is for, by name (the event's fields above are as they always were).
    assert_eq!(
        filed["recipients"],
        serde_json::json!([
            {"name": "alice", "as": ["requester", "approver"]},
            {"name": "bob", "as": ["approver"]},
            {"name": "carol", "as": ["approver"]},
        ]),
        "{filed}"
    );

    approve(&sb, "bob", &mut bob, id, "go").assert_success();
    sb.wait_until("notify_command to get grant-started", WAIT, || {
        kind(&events(&sb), "grant-started").is_some()
    });
    let all = events(&sb);
    let approved = kind(&all, "request-approved").expect("request-approved notified");
    assert_eq!(approved["actor"], "bob", "{approved}");
    assert_eq!(approved["request_id"], id, "{approved}");
    let started = kind(&all, "grant-started").unwrap();
    assert_eq!(started["user"], "alice", "{started}");
    assert!(started["grant_id"].as_i64().unwrap_or(0) > 0, "{started}");
    assert!(records(&sb.audit_records("root", &[]), "notify-failed", "pimd", &[]).is_empty());
}

/// Fails on the request, hangs on everything after it.
const BROKEN_NOTIFY: &str = r#"#!/bin/sh
event=$(cat)
case $event in
*'"request-filed"'*) exit 1 ;;
esac
exec sleep 600
"#;

#[test]
fn given_a_failing_or_hanging_notify_command_then_decisions_stand_and_it_is_audited() {
    let sb = site_with(
        &config(
            1,
            "1h",
            &format!("notify_command = [\"{NOTIFY_SCRIPT}\"]\nnotify_timeout = \"1s\""),
        ),
        &[(NOTIFY_SCRIPT, BROKEN_NOTIFY, 0o755)],
    );
    let mut bob = sb.enroll_mfa("bob");

    let id = file_request(&sb, "alice");
    approve(&sb, "bob", &mut bob, id, "go ahead")
        .assert_success()
        .assert_stdout_contains("1/1; the request is approved");
    assert!(sb.is_member("alice", GROUP));
    assert_eq!(status(&sb, "alice")["grants"][0]["role"], "db");

    let failed = format!("event request-filed for request {id}: {NOTIFY_SCRIPT} exited with");
    let hung = format!("{NOTIFY_SCRIPT} did not finish within 1s and was killed");
    sb.wait_until("both notify failures in the audit", WAIT, || {
        let all = sb.audit_records("root", &[]);
        !records(&all, "notify-failed", "pimd", &[("detail", &failed)]).is_empty()
            && !records(&all, "notify-failed", "pimd", &[("detail", &hung)]).is_empty()
    });
    let all = sb.audit_records("root", &[]);
    let exit = one_record(&all, "notify-failed", "pimd", &[("detail", &failed)]);
    assert_eq!(exit["user"], "alice", "{exit}");
    assert_eq!(exit["outcome"], "error", "{exit}");
    // The decision stands as it was made.
    one_record(
        &all,
        "grant-start",
        "bob",
        &[("user", "alice"), ("role", "db")],
    );
    assert!(sb.is_member("alice", GROUP));
}

#[test]
fn given_pimd_killed_between_two_approvals_then_the_first_approval_survives() {
    let sb = site(&config(2, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");
    let mut watch = sb.spawn("bob", &["pim", "watch"]);
    wait_for_stderr(&mut watch, "following events");
    let (mut waiting, id) = wait_in_background(&sb, "alice", &[]);
    approve(&sb, "bob", &mut bob, id, "first of two").assert_success();
    wait_for_stderr(
        &mut waiting,
        &format!("request {id}: approval from bob (1/2)"),
    );

    assert_eq!(sb.kill_pimd("KILL"), Some(128 + 9));
    sb.start_pimd();

    let mine = open_request(&sb, "alice", id).expect("the request survives the restart");
    assert_eq!(mine["approved_by"], serde_json::json!(["bob"]), "{mine}");
    let doc = pim(&sb, "carol", &["--json", "requests"])
        .assert_success()
        .json();
    assert_eq!(doc["requests"][0]["id"], id, "{doc}");
    assert_eq!(doc["requests"][0]["approvals"], 1, "{doc}");
    assert!(!sb.is_member("alice", GROUP));

    approve(&sb, "carol", &mut carol, id, "second of two")
        .assert_success()
        .assert_stdout_contains("2/2; the request is approved");
    assert!(sb.groups_of("alice").contains(&GROUP.to_string()));

    // The waiting requester and bob's watch followed the restarted pimd: they got carol's
    // approval as an event (not by polling), so they subscribed again.
    let out = waiting.wait(WAIT);
    out.assert_success()
        .assert_stderr_contains(&format!("request {id}: approval from carol (2/2)"))
        .assert_stdout_contains("Activated db");
    watch.wait_for_stdout(
        &format!("grant-started  alice  db  request {id}  grant 1  by carol"),
        WAIT,
    );
    watch.kill();
}

#[test]
fn given_the_requester_loses_eligibility_before_the_last_approval_then_no_grant_starts() {
    let sb = site(&config(2, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");

    pim(&sb, "root", &["admin", "assign", "dave", "db"]).assert_success();
    let (waiting, id) = wait_in_background(&sb, "dave", &["--json"]);
    approve(&sb, "bob", &mut bob, id, "fine").assert_success();
    pim(&sb, "root", &["admin", "unassign", "dave", "db"]).assert_success();

    // The last approval is recorded, but the request becomes no grant; carol is told so.
    approve(&sb, "carol", &mut carol, id, "fine too")
        .assert_success()
        .assert_stdout_contains("2/2, but no grant could start")
        .assert_stdout_contains("the request is now denied");
    let out = waiting.wait(WAIT);
    out.assert_status(1).assert_stderr_contains(&format!(
        "request {id} was denied by pimd: dave is no longer eligible for role db"
    ));
    assert_eq!(out.json()["request"]["state"], "denied", "{out}");

    assert!(!sb.is_member("dave", GROUP));
    assert!(!sb.groups_of("dave").contains(&GROUP.to_string()));
    let doc = status(&sb, "dave");
    assert_eq!(doc["grants"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["requests"], serde_json::json!([]), "{doc}");

    let all = sb.audit_records("root", &[]);
    one_record(
        &all,
        "approve",
        "carol",
        &[
            ("outcome", "success"),
            ("user", "dave"),
            ("reason", "fine too"),
        ],
    );
    one_record(
        &all,
        "request-void",
        "pimd",
        &[
            ("user", "dave"),
            ("role", "db"),
            ("outcome", "refused"),
            ("detail", "dave is no longer eligible for role db"),
        ],
    );
    assert!(
        records(&all, "grant-start", "carol", &[]).is_empty(),
        "{all:#?}"
    );
}

/// Writes `config` and sends pimd SIGHUP; returns once pimd says it took it.
fn reload(sb: &Sandbox, config: &str) {
    let reloads = |sb: &Sandbox| sb.pimd_log().matches("configuration reloaded").count();
    let before = reloads(sb);
    sb.write_file(CONFIG_PATH, config, 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until("pimd to reload its configuration", WAIT, || {
        reloads(sb) > before
    });
}

#[test]
fn given_an_approver_dropped_by_reload_then_their_approval_no_longer_counts() {
    let sb = site(&config(2, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");
    let mut dave = sb.enroll_mfa("dave");
    let (mut waiting, id) = wait_in_background(&sb, "alice", &[]);
    approve(&sb, "bob", &mut bob, id, "fine by me")
        .assert_success()
        .assert_stdout_contains("1/2 so far");
    wait_for_stderr(
        &mut waiting,
        &format!("request {id}: approval from bob (1/2)"),
    );

    // bob is no longer an approver of db; dave is.
    let approvers = "approvers = [\"alice\", \"bob\", \"carol\"]";
    let first = config(2, "1h", "");
    assert!(first.contains(approvers), "{first}");
    reload(
        &sb,
        &first.replace(approvers, "approvers = [\"alice\", \"carol\", \"dave\"]"),
    );
    let mine = open_request(&sb, "alice", id).expect("still open after the reload");
    assert_eq!(mine["approvals"], 0, "bob's approval went with him: {mine}");

    // carol's approval is the first that counts, dave's the second.
    approve(&sb, "carol", &mut carol, id, "agreed")
        .assert_success()
        .assert_stdout_contains("1/2 so far; it needs 1 more");
    wait_for_stderr(
        &mut waiting,
        &format!("request {id}: approval from carol (1/2)"),
    );
    assert!(!sb.is_member("alice", GROUP));
    assert!(!sb.groups_of("alice").contains(&GROUP.to_string()));
    approve(&sb, "dave", &mut dave, id, "agreed too")
        .assert_success()
        .assert_stdout_contains("2/2; the request is approved");
    assert!(sb.groups_of("alice").contains(&GROUP.to_string()));
    waiting
        .wait(WAIT)
        .assert_success()
        .assert_stdout_contains("Activated db");

    let all = sb.audit_records("root", &[]);
    one_record(
        &all,
        "approve",
        "carol",
        &[
            ("outcome", "success"),
            (
                "detail",
                "approval 1 of 2 (1 earlier approval(s) by approvers who no longer qualify not counted)",
            ),
        ],
    );
    one_record(
        &all,
        "grant-start",
        "dave",
        &[("user", "alice"), ("role", "db")],
    );
}

#[test]
fn given_an_approver_who_approved_then_denying_is_refused_and_the_approval_stands() {
    let sb = site(&config(2, "1h", ""));
    let mut bob = sb.enroll_mfa("bob");
    let mut carol = sb.enroll_mfa("carol");
    let id = file_request(&sb, "alice");
    approve(&sb, "bob", &mut bob, id, "fine by me").assert_success();

    // bob cannot turn his approval into a denial, through the client or the bus. (Refused
    // before any code is looked at, so a dummy code spends none of bob's.)
    pim(
        &sb,
        "bob",
        &[
            "deny",
            &id.to_string(),
            "-c",
            "on second thoughts",
            "--code",
            "000000",
        ],
    )
    .assert_status(1)
    .assert_stderr_contains("already approved request")
    .assert_stderr_contains("cannot deny it");
    sb.call_pimd(
        "bob",
        "Deny",
        "xss",
        &[&id.to_string(), "on second thoughts", "000000"],
    )
    .assert_status(1)
    .assert_stderr_contains("cannot deny it");
    let mine = open_request(&sb, "alice", id).expect("still open");
    assert_eq!(mine["state"], "pending", "{mine}");
    assert_eq!(mine["approved_by"], serde_json::json!(["bob"]), "{mine}");

    approve(&sb, "carol", &mut carol, id, "agreed")
        .assert_success()
        .assert_stdout_contains("2/2; the request is approved");
    assert!(sb.groups_of("alice").contains(&GROUP.to_string()));
    let all = sb.audit_records("root", &[]);
    assert_eq!(
        records(&all, "deny", "bob", &[("outcome", "refused")]).len(),
        2,
        "{all:#?}"
    );
    assert!(records(&all, "deny", "bob", &[("outcome", "success")]).is_empty());
}

#[test]
fn given_a_user_probing_request_ids_then_someone_elses_request_and_a_missing_one_answer_alike() {
    let sb = site(&config(2, "1h", ""));
    let id = file_request(&sb, "alice");
    let missing = id + 1000;

    // dave decides no role's requests. Through the client, approve and deny alike:
    for verb in ["approve", "deny"] {
        let probe = |n: i64| {
            pim(
                &sb,
                "dave",
                &[verb, &n.to_string(), "-c", "probing", "--code", "123456"],
            )
        };
        let (theirs, none) = (probe(id), probe(missing));
        theirs.assert_status(1);
        assert_eq!(
            (theirs.status, &theirs.stdout, &theirs.stderr),
            (none.status, &none.stdout, &none.stderr),
            "{theirs}\n{none}"
        );
        for secret in ["alice", "db"] {
            assert!(!theirs.stderr.contains(secret), "{theirs}");
        }
    }
    // Straight over the bus: the same D-Bus error name and message, byte for byte.
    for method in ["Approve", "Deny"] {
        let probe = |n: i64| {
            sb.run(
                "dave",
                &[
                    "dbus-send",
                    "--system",
                    "--print-reply",
                    "--dest=org.pim.Manager1",
                    "/org/pim/Manager1",
                    &format!("org.pim.Manager1.{method}"),
                    &format!("int64:{n}"),
                    "string:probing",
                    "string:123456",
                ],
            )
        };
        let (theirs, none) = (probe(id), probe(missing));
        theirs
            .assert_failure()
            .assert_stderr_contains("org.pim.Manager1.Error.NotFound");
        assert_eq!(
            (&theirs.stdout, &theirs.stderr),
            (&none.stdout, &none.stderr),
            "{theirs}\n{none}"
        );
    }

    // dave reads his own audit records: they name no requester and no role either.
    let own = sb.audit_records("dave", &[]);
    let refused = records(&own, "approve", "dave", &[("outcome", "refused")]);
    assert_eq!(refused.len(), 4, "{own:#?}");
    let denied = records(&own, "deny", "dave", &[("outcome", "refused")]);
    assert_eq!(denied.len(), 4, "{own:#?}");
    for r in refused.iter().chain(&denied) {
        assert!(r["user"].is_null() && r["role"].is_null(), "{r:#}");
    }
    let mine = open_request(&sb, "alice", id).expect("untouched");
    assert_eq!(mine["approvals"], 0, "{mine}");
}
