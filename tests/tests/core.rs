//! The elevation core (issue 2), end to end: TOTP enrolment, activation with a reason and a
//! code, fresh logins holding the group, deactivation, expiry (also across a daemon killed
//! with SIGKILL), replayed codes, lockout, administration, memberships PIM did not add,
//! concurrency, input validation (through the client and straight over the bus), identity
//! from the bus, the audit log (and its summary of a flood of refusals), `pimd --check-config`,
//! time-bound assignments and extension.
//!
//! Every test has its own sandbox and pimd, and drives everything as real users through the
//! real `pim` client (or `busctl`/`dbus-send` where the client cannot express the attack).
//! Nothing waits a fixed time: grants are short and their end is awaited by polling.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pim_e2e::{Authenticator, Output, Sandbox, CONFIG_PATH, SANDBOX_DIR, TOTP_STEP};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// Polling deadline for things pimd does by itself (expiry, reconciliation after a restart).
const EXPIRY_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline for concurrent commands to finish.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
/// A reason every role below accepts (at least 10 characters).
const REASON: &str = "rotate the TLS certificates";

/// `/etc/pim/pim.toml`: admins are `%pim-admins`, auditors `%pim-auditors`; `mfa` holds extra
/// `[mfa]` lines and `roles` the `[roles.*]` tables (see [`role`]).
fn config(mfa: &str, roles: &[String]) -> String {
    format!(
        "[daemon]\nadmins = [\"%pim-admins\"]\nauditors = [\"%pim-auditors\"]\n\n[mfa]\n{mfa}\n\n{}",
        roles.join("\n")
    )
}

/// One `[roles.NAME]` table granting `group` to the `eligible` users, without approval; `extra`
/// holds more `key = value` lines.
fn role(name: &str, group: &str, eligible: &[&str], extra: &str) -> String {
    let eligible: Vec<String> = eligible.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[roles.{name}]\ngroup = \"{group}\"\neligible = [{}]\nrequire_approval = false\n{extra}\n",
        eligible.join(", ")
    )
}

/// A sandbox with the groups `groups` (created when missing), the users `users` (name and
/// supplementary groups), `/etc/pim/pim.toml` = `config`, and pimd running.
fn host(config: &str, groups: &[&str], users: &[(&str, &[&str])]) -> Sandbox {
    let sb = Sandbox::start();
    for group in groups.iter().chain(&["pim-admins", "pim-auditors"]) {
        sb.run(
            "root",
            &[
                "bash",
                "-c",
                r#"getent group "$1" >/dev/null || groupadd -- "$1""#,
                "bash",
                group,
            ],
        )
        .assert_success();
    }
    for (name, groups) in users {
        sb.add_user(name, groups);
    }
    sb.write_file(CONFIG_PATH, config, 0o644);
    sb.start_pimd();
    sb
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Waits until the wall clock has passed `unix` (grant ends and audit times are whole seconds).
fn wait_for_clock_past(sb: &Sandbox, unix: i64) {
    let left = (unix - now_unix()).max(0) as u64;
    sb.wait_until(
        &format!("the clock to pass @{unix}"),
        Duration::from_secs(left + 30),
        || now_unix() > unix,
    );
}

/// `pim --json activate ROLE -r REASON [-d DURATION] [--code CODE]` as `user`.
fn activate(
    sb: &Sandbox,
    user: &str,
    role: &str,
    duration: Option<&str>,
    code: Option<&str>,
) -> Output {
    let mut argv = vec!["pim", "--json", "activate", role, "-r", REASON];
    if let Some(d) = duration {
        argv.extend(["-d", d]);
    }
    if let Some(c) = code {
        argv.extend(["--code", c]);
    }
    sb.run(user, &argv)
}

/// The grant in a successful `pim --json activate` answer.
#[track_caller]
fn granted(out: &Output) -> Value {
    out.assert_success();
    let doc = out.json();
    assert_eq!(doc["state"], "active", "{out}");
    doc["grant"].clone()
}

/// An integer field of a JSON document, or a panic showing the document.
#[track_caller]
fn int(doc: &Value, key: &str) -> i64 {
    doc[key]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {doc:#}"))
}

/// `pim --json status` as `user`: the live grants.
#[track_caller]
fn grants_of(sb: &Sandbox, user: &str) -> Vec<Value> {
    let out = sb.run(user, &["pim", "--json", "status"]);
    out.assert_success();
    out.json()["grants"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no grants array:\n{out}"))
}

/// `pim --json admin grants` as root: every live grant on the host.
#[track_caller]
fn all_grants(sb: &Sandbox) -> Vec<Value> {
    let out = sb.run("root", &["pim", "--json", "admin", "grants"]);
    out.assert_success();
    out.json()["grants"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no grants array:\n{out}"))
}

/// The records whose string fields equal every `(field, value)` given.
fn matching<'a>(records: &'a [Value], fields: &[(&str, &str)]) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| fields.iter().all(|(k, v)| r[*k].as_str() == Some(*v)))
        .collect()
}

/// Panics, showing every record, unless one matches `fields`; returns the first that does.
#[track_caller]
fn assert_audited<'a>(records: &'a [Value], fields: &[(&str, &str)]) -> &'a Value {
    matching(records, fields)
        .first()
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "no audit record with {fields:?} among:\n{}",
                serde_json::to_string_pretty(records).unwrap_or_default()
            )
        })
}

/// A well-formed 6-digit code that is none of the codes the daemon would accept around now.
fn wrong_code(sb: &Sandbox, phone: &Authenticator) -> String {
    let now_step = now_unix() / TOTP_STEP;
    let near: Vec<String> = (now_step - 3..=now_step + 3)
        .map(|step| sb.totp(phone.secret(), step * TOTP_STEP))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 142_857 + 13) % 1_000_000))
        .find(|c| !near.contains(c))
        .expect("some code is wrong")
}

/// Members of `group` as `/etc/group` itself lists them (not through NSS).
#[track_caller]
fn etc_group_members(sb: &Sandbox, group: &str) -> Vec<String> {
    let text = sb.read_file("/etc/group");
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(group))
        .unwrap_or_else(|| panic!("no group {group} in /etc/group:\n{text}"));
    line.splitn(4, ':')
        .nth(3)
        .unwrap_or("")
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// Asserts that `user` holds `group` (group database and a fresh login) unless the clock has
/// already passed `ends_at`, when pimd may rightly have taken it back: a slow machine must
/// not fail the test, a fast one still checks.
#[track_caller]
fn assert_member_while_live(sb: &Sandbox, user: &str, group: &str, ends_at: i64) {
    let member = sb.is_member(user, group);
    let login = sb.groups_of(user).contains(&group.to_string());
    if now_unix() < ends_at {
        assert!(
            member && login,
            "{user} should hold {group} until @{ends_at} (listed: {member}, fresh login: \
             {login})\n{}",
            sb.pimd_log_tail(40)
        );
    }
}

/// Like `Sandbox::enroll_mfa`, through `pim --json mfa confirm`, also returning the
/// recovery codes it printed.
#[track_caller]
fn enrol_keeping_recovery_codes(sb: &Sandbox, user: &str) -> (Authenticator, Vec<String>) {
    let enroll = sb.run(user, &["pim", "--json", "mfa", "enroll"]);
    let secret = enroll.assert_success().json()["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret:\n{enroll}"))
        .to_string();
    let mut phone = Authenticator::new(&secret);
    let code = phone.next_code(sb);
    let confirm = sb.run(user, &["pim", "--json", "mfa", "confirm", &code]);
    let codes: Vec<String> = confirm.assert_success().json()["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no recovery_codes:\n{confirm}"))
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    assert!(!codes.is_empty(), "{confirm}");
    (phone, codes)
}

// ---------------------------------------------------------------------------------------------
// 1. Enrolment, activation, a fresh login, status, deactivation
// ---------------------------------------------------------------------------------------------

#[test]
fn given_an_enrolled_user_when_activating_with_reason_and_code_then_a_fresh_login_holds_the_group_until_deactivated(
) {
    let sb = host(
        &config(
            "",
            &[role(
                "admin",
                "sudo",
                &["alice"],
                "max_duration = \"2h\"\ndefault_duration = \"1h\"",
            )],
        ),
        &["sudo"],
        &[("alice", &[])],
    );

    let status = sb.run("alice", &["pim", "--json", "mfa", "status"]);
    assert_eq!(
        status.assert_success().json()["enrolled"],
        false,
        "{status}"
    );

    // Enrol: the secret and URI, then a first code computed by oathtool.
    let enroll = sb.run("alice", &["pim", "--json", "mfa", "enroll"]);
    let doc = enroll.assert_success().json();
    let secret = doc["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret:\n{enroll}"))
        .to_string();
    let uri = doc["uri"].as_str().unwrap_or_default();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")),
        "{enroll}"
    );
    let pending = sb.run("alice", &["pim", "--json", "mfa", "status"]);
    assert_eq!(
        pending.assert_success().json()["pending"],
        true,
        "{pending}"
    );

    let mut phone = Authenticator::new(&secret);
    let confirm = sb.run("alice", &["pim", "mfa", "confirm", &phone.next_code(&sb)]);
    confirm
        .assert_success()
        .assert_stdout_contains("Recovery codes");
    let printed: Vec<&str> = confirm
        .stdout
        .lines()
        .filter(|l| l.starts_with("    ") && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    assert!(printed.len() >= 5, "too few recovery codes:\n{confirm}");
    sb.run("alice", &["pim", "mfa", "enroll"])
        .assert_status(1)
        .assert_stderr_contains("already enrolled");
    let status = sb.run("alice", &["pim", "--json", "mfa", "status"]);
    let doc = status.assert_success().json();
    assert_eq!(doc["enrolled"], true, "{status}");
    assert_eq!(doc["pending"], false, "{status}");
    assert_eq!(doc["locked_until"], Value::Null, "{status}");
    assert_eq!(
        doc["recovery_codes_left"].as_u64(),
        Some(printed.len() as u64),
        "{status}"
    );

    // Activate with reason and code: the group database and a fresh login have it.
    assert!(!sb.groups_of("alice").contains(&"sudo".to_string()));
    let code = phone.next_code(&sb);
    let out = sb.run(
        "alice",
        &[
            "pim", "activate", "admin", "-d", "30m", "-r", REASON, "--code", &code,
        ],
    );
    out.assert_success()
        .assert_stdout_contains("Activated admin: you are in group sudo");
    assert!(sb.groups_of("alice").contains(&"sudo".to_string()));
    assert!(etc_group_members(&sb, "sudo").contains(&"alice".to_string()));

    // Status shows the grant with its time left.
    let grants = grants_of(&sb, "alice");
    assert_eq!(grants.len(), 1, "{grants:#?}");
    let g = &grants[0];
    assert_eq!(
        (
            g["role"].as_str(),
            g["group"].as_str(),
            g["reason"].as_str()
        ),
        (Some("admin"), Some("sudo"), Some(REASON)),
        "{g:#}"
    );
    assert_eq!(int(g, "ends_at_unix") - int(g, "started_at_unix"), 1800);
    let left = int(g, "remaining_secs");
    assert!(0 < left && left <= 1800, "{g:#}");
    sb.run("alice", &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("admin")
        .assert_stdout_contains(REASON);

    // Deactivate: gone from /etc/group and from a fresh login.
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success()
        .assert_stdout_contains("Ended your grant of admin");
    assert!(!etc_group_members(&sb, "sudo").contains(&"alice".to_string()));
    assert!(!sb.is_member("alice", "sudo"));
    assert!(!sb.groups_of("alice").contains(&"sudo".to_string()));
    assert!(grants_of(&sb, "alice").is_empty());

    let records = sb.audit_records("alice", &[]);
    for action in ["mfa-enroll", "mfa-confirm", "activate", "deactivate"] {
        assert_audited(
            &records,
            &[
                ("action", action),
                ("actor", "alice"),
                ("outcome", "success"),
            ],
        );
    }
    assert_audited(
        &records,
        &[
            ("action", "membership-remove"),
            ("user", "alice"),
            ("actor", "pimd"),
        ],
    );

    // The state (TOTP secrets included) is root's alone.
    let modes = sb.run(
        "root",
        &["find", "/var/lib/pim", "-printf", "%y %m %u %p\n"],
    );
    modes.assert_success();
    assert!(
        modes.stdout.contains("d 700 root /var/lib/pim\n"),
        "{modes}"
    );
    assert!(
        modes.stdout.contains("f 600 root /var/lib/pim/pim.db\n"),
        "{modes}"
    );
    for line in modes.stdout.lines().filter(|l| l.starts_with('f')) {
        assert!(line.starts_with("f 600 root "), "{modes}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_short_grant_then_the_membership_ends_by_itself_and_pimd_audits_the_expiry() {
    let sb = host(
        &config(
            "",
            &[role("docker", "docker", &["alice"], "require_mfa = false")],
        ),
        &["docker"],
        &[("alice", &[])],
    );

    let grant = granted(&activate(&sb, "alice", "docker", Some("3s"), None));
    let ends_at = int(&grant, "ends_at_unix");
    assert_eq!(ends_at - int(&grant, "started_at_unix"), 3, "{grant:#}");
    assert_member_while_live(&sb, "alice", "docker", ends_at);

    sb.wait_until("alice's docker grant to expire", EXPIRY_DEADLINE, || {
        !sb.is_member("alice", "docker")
    });
    assert!(!sb.groups_of("alice").contains(&"docker".to_string()));
    assert!(grants_of(&sb, "alice").is_empty());

    let records = sb.audit_records("root", &["--user", "alice"]);
    let expire = assert_audited(
        &records,
        &[
            ("action", "expire"),
            ("actor", "pimd"),
            ("role", "docker"),
            ("outcome", "success"),
        ],
    );
    assert!(
        int(expire, "at_unix") >= ends_at,
        "expired before its end @{ends_at}: {expire:#}"
    );
    assert_audited(
        &records,
        &[
            ("action", "membership-remove"),
            ("actor", "pimd"),
            ("outcome", "success"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A grant that ends while pimd is dead
// ---------------------------------------------------------------------------------------------

#[test]
fn given_pimd_killed_while_a_grant_is_live_then_a_restart_after_its_end_removes_the_membership_at_once(
) {
    let sb = host(
        &config(
            "",
            &[role("docker", "docker", &["alice"], "require_mfa = false")],
        ),
        &["docker"],
        &[("alice", &[])],
    );

    // The grant must still be live when SIGKILL lands; on a machine too slow for that, try a
    // longer one.
    let mut ends_at = None;
    for secs in [10, 40, 120] {
        let grant = granted(&activate(
            &sb,
            "alice",
            "docker",
            Some(&format!("{secs}s")),
            None,
        ));
        assert_eq!(sb.kill_pimd("KILL"), Some(128 + 9));
        let end = int(&grant, "ends_at_unix");
        if now_unix() < end {
            ends_at = Some(end);
            break;
        }
        eprintln!("the {secs}s grant ended before pimd was killed; trying a longer one");
        sb.start_pimd();
        sb.wait_until("the ended grant to be reconciled", EXPIRY_DEADLINE, || {
            !sb.is_member("alice", "docker")
        });
    }
    let ends_at = ends_at.expect("a grant outlived the kill");
    assert!(
        sb.is_member("alice", "docker"),
        "the membership vanished with pimd"
    );

    // Nobody takes it away while pimd is dead ...
    wait_for_clock_past(&sb, ends_at);
    assert!(
        sb.is_member("alice", "docker"),
        "something other than pimd removed the membership"
    );

    // ... and the restarted pimd does so at once.
    sb.start_pimd();
    sb.wait_until(
        "the restarted pimd to remove alice from docker",
        Duration::from_secs(20),
        || !sb.is_member("alice", "docker"),
    );
    assert!(!sb.groups_of("alice").contains(&"docker".to_string()));
    assert!(grants_of(&sb, "alice").is_empty());
    let records = sb.audit_records("root", &["--user", "alice", "--role", "docker"]);
    let expire = assert_audited(
        &records,
        &[
            ("action", "expire"),
            ("actor", "pimd"),
            ("outcome", "success"),
        ],
    );
    assert!(int(expire, "at_unix") > ends_at, "{expire:#}");
}

// ---------------------------------------------------------------------------------------------
// 4. Replayed codes
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_code_already_used_then_using_it_again_is_refused_and_so_is_a_spent_recovery_code() {
    let sb = host(
        &config(
            "",
            &[
                role("docker", "docker", &["alice"], ""),
                role("web", "www-data", &["alice"], ""),
            ],
        ),
        &["docker", "www-data"],
        &[("alice", &[])],
    );
    let (mut phone, recovery) = enrol_keeping_recovery_codes(&sb, "alice");

    let code = phone.next_code(&sb);
    granted(&activate(&sb, "alice", "docker", Some("10m"), Some(&code)));

    // The same code for another role ...
    let replay = activate(&sb, "alice", "web", Some("10m"), Some(&code));
    replay
        .assert_status(1)
        .assert_stderr_contains("wrong or already used code")
        .assert_stderr_contains("the next code appears in ")
        .assert_stderr_contains("attempts left before your MFA locks");
    assert_eq!(replay.stderr.matches("clock").count(), 1, "{replay}");
    assert!(!sb.is_member("alice", "www-data"));

    // ... or for the same role again after deactivating.
    sb.run("alice", &["pim", "deactivate", "docker"])
        .assert_success();
    activate(&sb, "alice", "docker", Some("10m"), Some(&code))
        .assert_status(1)
        .assert_stderr_contains("wrong or already used code");
    assert!(!sb.is_member("alice", "docker"));
    assert!(all_grants(&sb).is_empty());

    // A recovery code stands in for a TOTP code, once.
    let left = |sb: &Sandbox| {
        let out = sb.run("alice", &["pim", "--json", "mfa", "status"]);
        int(&out.assert_success().json(), "recovery_codes_left")
    };
    assert_eq!(left(&sb), recovery.len() as i64);
    granted(&activate(
        &sb,
        "alice",
        "web",
        Some("10m"),
        Some(&recovery[0]),
    ));
    assert!(sb.is_member("alice", "www-data"));
    assert_eq!(left(&sb), recovery.len() as i64 - 1);
    sb.run("alice", &["pim", "deactivate", "web"])
        .assert_success();
    let used = activate(&sb, "alice", "web", Some("10m"), Some(&recovery[0]));
    used.assert_status(1)
        .assert_stderr_contains("wrong or already used code")
        .assert_stderr_contains("not one of your unused recovery codes");
    assert!(!used.stderr.contains("next code"), "{used}");
    assert!(!sb.is_member("alice", "www-data"));

    let records = sb.audit_records("alice", &[]);
    assert_eq!(
        matching(&records, &[("action", "mfa-failure"), ("user", "alice")]).len(),
        3,
        "{records:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Lockout
// ---------------------------------------------------------------------------------------------

#[test]
fn given_max_failures_wrong_codes_then_mfa_is_locked_even_for_the_right_code() {
    let sb = host(
        &config(
            "max_failures = 3\nfailure_window = \"5m\"\nlockout = \"15m\"",
            &[role("admin", "sudo", &["alice"], "")],
        ),
        &["sudo"],
        &[("alice", &[])],
    );
    let mut phone = sb.enroll_mfa("alice");

    let wrong = wrong_code(&sb, &phone);
    for attempt in 1..=2 {
        let out = activate(&sb, "alice", "admin", Some("10m"), Some(&wrong));
        out.assert_status(1)
            .assert_stderr_contains("wrong or already used code")
            .assert_stderr_contains(
                [
                    "2 attempts left before your MFA locks",
                    "1 attempt left before your MFA locks",
                ][attempt - 1],
            );
        assert!(!out.stderr.contains("locked"), "attempt {attempt}:\n{out}");
    }
    activate(&sb, "alice", "admin", Some("10m"), Some(&wrong))
        .assert_status(1)
        .assert_stderr_contains("locked until");

    // The right code does not get through the lock.
    let right = phone.next_code(&sb);
    activate(&sb, "alice", "admin", Some("10m"), Some(&right))
        .assert_status(1)
        .assert_stderr_contains("locked until");
    assert!(!sb.is_member("alice", "sudo"));
    assert!(all_grants(&sb).is_empty());

    let status = sb.run("alice", &["pim", "--json", "mfa", "status"]);
    let doc = status.assert_success().json();
    let until = int(&doc, "locked_until_unix");
    assert!(
        until > now_unix() + 600 && until <= now_unix() + 900,
        "locked for about 15m:\n{status}"
    );
    sb.run("alice", &["pim", "mfa", "status"])
        .assert_success()
        .assert_stdout_contains("Locked out:")
        .assert_stdout_contains("until");

    let records = sb.audit_records("alice", &[]);
    assert_eq!(
        matching(&records, &[("action", "mfa-failure"), ("user", "alice")]).len(),
        3,
        "{records:#?}"
    );
    assert_audited(
        &records,
        &[
            ("action", "mfa-lockout"),
            ("user", "alice"),
            ("outcome", "refused"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Administration is for administrators
// ---------------------------------------------------------------------------------------------

const ADMIN_ACTIONS: [&str; 5] = [
    "admin-grants",
    "admin-assign",
    "admin-unassign",
    "admin-revoke",
    "admin-mfa-reset",
];

#[test]
fn given_a_non_admin_then_every_admin_call_is_refused_and_audited_while_root_and_pim_admins_succeed(
) {
    let sb = host(
        &config(
            "",
            &[
                role("docker", "docker", &["carol"], "require_mfa = false"),
                role("admin", "sudo", &[], "require_mfa = false"),
            ],
        ),
        &["docker", "sudo"],
        &[
            ("mallory", &[]),
            ("erin", &["pim-admins"]),
            ("carol", &[]),
            ("dave", &[]),
        ],
    );
    let dave_roles = || {
        let out = sb.run("dave", &["pim", "--json", "roles"]);
        out.assert_success().json()["roles"]
            .as_array()
            .unwrap_or_else(|| panic!("no roles:\n{out}"))
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let admin_calls: [&[&str]; 5] = [
        &["pim", "admin", "grants"],
        &["pim", "admin", "assign", "dave", "admin"],
        &["pim", "admin", "unassign", "dave", "admin"],
        &[
            "pim",
            "admin",
            "revoke",
            "carol",
            "docker",
            "-r",
            "not yours",
        ],
        &["pim", "admin", "mfa-reset", "carol"],
    ];

    // Something for each call to act on: a live grant, an assignment, an enrolment.
    granted(&activate(&sb, "carol", "docker", Some("1h"), None));
    sb.run("carol", &["pim", "mfa", "enroll"]).assert_success();
    sb.run("root", &["pim", "admin", "assign", "dave", "admin"])
        .assert_success();

    for argv in admin_calls {
        sb.run("mallory", argv)
            .assert_status(1)
            .assert_stderr_contains("administrator");
    }
    // Nothing moved.
    assert!(sb.is_member("carol", "docker"));
    assert_eq!(all_grants(&sb).len(), 1);
    assert_eq!(dave_roles(), ["admin"]);
    let carol_mfa = sb.run("carol", &["pim", "--json", "mfa", "status"]);
    assert_eq!(carol_mfa.assert_success().json()["pending"], true);

    let records = sb.audit_records("root", &[]);
    for action in ADMIN_ACTIONS {
        assert_audited(
            &records,
            &[
                ("action", action),
                ("actor", "mallory"),
                ("outcome", "refused"),
            ],
        );
    }
    // mallory sees her own refusals too.
    let own = sb.audit_records("mallory", &[]);
    assert_eq!(
        matching(&own, &[("actor", "mallory"), ("outcome", "refused")]).len(),
        ADMIN_ACTIONS.len(),
        "{own:#?}"
    );

    // root, and a member of %pim-admins, may do each.
    for admin in ["root", "erin"] {
        // The previous round revoked carol's grant and reset her enrolment: set them up again.
        if all_grants(&sb).is_empty() {
            granted(&activate(&sb, "carol", "docker", Some("1h"), None));
            sb.run("carol", &["pim", "mfa", "enroll"]).assert_success();
        }
        let grants = sb.run(admin, &["pim", "--json", "admin", "grants"]);
        let list = grants.assert_success().json()["grants"].clone();
        assert_eq!(
            matching(
                list.as_array().map(Vec::as_slice).unwrap_or_default(),
                &[("user", "carol"), ("role", "docker")]
            )
            .len(),
            1,
            "{grants}"
        );

        sb.run(admin, &["pim", "admin", "unassign", "dave", "admin"])
            .assert_success();
        assert!(dave_roles().is_empty());
        sb.run(admin, &["pim", "admin", "assign", "dave", "admin"])
            .assert_success();
        assert_eq!(dave_roles(), ["admin"]);

        sb.run(
            admin,
            &[
                "pim",
                "admin",
                "revoke",
                "carol",
                "docker",
                "-r",
                "incident closed",
            ],
        )
        .assert_success()
        .assert_stdout_contains("Revoked carol's grant of docker");
        assert!(!sb.is_member("carol", "docker"));
        assert!(grants_of(&sb, "carol").is_empty());

        sb.run(admin, &["pim", "admin", "mfa-reset", "carol"])
            .assert_success();
        let status = sb.run("carol", &["pim", "--json", "mfa", "status"]);
        let doc = status.assert_success().json();
        assert_eq!(
            (&doc["enrolled"], &doc["pending"]),
            (&Value::Bool(false), &Value::Bool(false)),
            "{status}"
        );

        // Reading the grants is not audited; every change is.
        let records = sb.audit_records("root", &[]);
        for action in &ADMIN_ACTIONS[1..] {
            assert_audited(
                &records,
                &[("action", action), ("actor", admin), ("outcome", "success")],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Memberships PIM did not add
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_member_outside_pim_then_activation_is_refused_and_pim_never_removes_the_membership() {
    let sb = Sandbox::start();
    for group in ["docker", "ops", "pim-admins", "pim-auditors"] {
        sb.add_group(group);
    }
    sb.add_user("bob", &[]);
    sb.add_user("carol", &[]);
    // bob was in docker before pim came along.
    sb.run("root", &["gpasswd", "-a", "bob", "docker"])
        .assert_success();
    sb.write_file(
        CONFIG_PATH,
        &config(
            "",
            &[
                role("docker", "docker", &["bob", "carol"], "require_mfa = false"),
                role("ops", "ops", &["bob"], "require_mfa = false"),
            ],
        ),
        0o644,
    );
    sb.start_pimd();
    let bob_in_docker = |when: &str| {
        assert!(
            sb.is_member("bob", "docker") && sb.groups_of("bob").contains(&"docker".to_string()),
            "bob lost his docker membership {when}\n{}",
            sb.pimd_log_tail(40)
        );
    };

    activate(&sb, "bob", "docker", Some("10m"), None)
        .assert_status(1)
        .assert_stderr_contains("already a member of group docker outside PIM");
    assert!(all_grants(&sb).is_empty());
    bob_in_docker("after a refused activation");

    sb.run("bob", &["pim", "deactivate", "docker"])
        .assert_status(1);
    sb.run("root", &["pim", "admin", "revoke", "bob", "docker"])
        .assert_status(1);
    bob_in_docker("after deactivate and revoke attempts");

    // Someone else's grant of the same group expires.
    let grant = granted(&activate(&sb, "carol", "docker", Some("3s"), None));
    assert_member_while_live(&sb, "carol", "docker", int(&grant, "ends_at_unix"));
    sb.wait_until("carol's docker grant to expire", EXPIRY_DEADLINE, || {
        !sb.is_member("carol", "docker")
    });
    bob_in_docker("after carol's docker grant expired");

    // bob's own grant of another group expires.
    let grant = granted(&activate(&sb, "bob", "ops", Some("3s"), None));
    assert_member_while_live(&sb, "bob", "ops", int(&grant, "ends_at_unix"));
    sb.wait_until("bob's ops grant to expire", EXPIRY_DEADLINE, || {
        !sb.is_member("bob", "ops")
    });
    bob_in_docker("after his ops grant expired");

    // pimd dies with carol holding docker and reconciles after the restart.
    let grant = granted(&activate(&sb, "carol", "docker", Some("5s"), None));
    assert_eq!(sb.kill_pimd("KILL"), Some(128 + 9));
    wait_for_clock_past(&sb, int(&grant, "ends_at_unix"));
    sb.start_pimd();
    sb.wait_until(
        "the restarted pimd to take carol out of docker",
        EXPIRY_DEADLINE,
        || !sb.is_member("carol", "docker"),
    );
    bob_in_docker("after a pimd restart and reconciliation");

    let records = sb.audit_records("root", &["--user", "bob"]);
    assert!(
        matching(&records, &[("action", "membership-remove")]).len() == 1
            && matching(
                &records,
                &[
                    ("action", "membership-remove"),
                    ("detail", "removed from group docker")
                ]
            )
            .is_empty(),
        "pimd removed bob from something other than ops: {records:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8, 9. Concurrency
// ---------------------------------------------------------------------------------------------

#[test]
fn given_two_concurrent_activations_of_one_role_then_exactly_one_grant() {
    let sb = host(
        &config(
            "",
            &[role("docker", "docker", &["alice"], "require_mfa = false")],
        ),
        &["docker"],
        &[("alice", &[])],
    );
    let argv = ["pim", "activate", "docker", "-d", "10m", "-r", REASON];
    let first = sb.spawn("alice", &argv);
    let second = sb.spawn("alice", &argv);
    let outs = [first.wait(COMMAND_DEADLINE), second.wait(COMMAND_DEADLINE)];
    let (ok, refused): (Vec<&Output>, Vec<&Output>) = outs.iter().partition(|o| o.success());
    assert_eq!(
        ok.len(),
        1,
        "exactly one must succeed:\n{}\n{}",
        outs[0],
        outs[1]
    );
    refused[0]
        .assert_status(1)
        .assert_stderr_contains("already active");

    let grants = all_grants(&sb);
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert_eq!(grants[0]["user"], "alice");
    assert_eq!(grants[0]["role"], "docker");
    assert_eq!(etc_group_members(&sb, "docker"), ["alice"]);
}

#[test]
fn given_one_code_in_two_concurrent_activations_then_exactly_one_succeeds() {
    let sb = host(
        &config(
            "",
            &[
                role("docker", "docker", &["alice"], ""),
                role("web", "www-data", &["alice"], ""),
            ],
        ),
        &["docker", "www-data"],
        &[("alice", &[])],
    );
    let mut phone = sb.enroll_mfa("alice");
    let code = phone.next_code(&sb);
    let run = |role: &'static str| {
        sb.spawn(
            "alice",
            &[
                "pim", "activate", role, "-d", "10m", "-r", REASON, "--code", &code,
            ],
        )
    };
    let (docker, web) = (run("docker"), run("web"));
    let outs = [docker.wait(COMMAND_DEADLINE), web.wait(COMMAND_DEADLINE)];
    let (ok, refused): (Vec<&Output>, Vec<&Output>) = outs.iter().partition(|o| o.success());
    assert_eq!(
        ok.len(),
        1,
        "exactly one must succeed:\n{}\n{}",
        outs[0],
        outs[1]
    );
    refused[0]
        .assert_status(1)
        .assert_stderr_contains("wrong or already used code");
    assert_eq!(all_grants(&sb).len(), 1);
    let members = [
        sb.is_member("alice", "docker"),
        sb.is_member("alice", "www-data"),
    ];
    assert_eq!(
        members.iter().filter(|m| **m).count(),
        1,
        "alice holds exactly one group: {members:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Input validation
// ---------------------------------------------------------------------------------------------

fn validation_host() -> Sandbox {
    host(
        &config(
            "",
            &[role(
                "docker",
                "docker",
                &["alice"],
                "require_mfa = false\nmax_duration = \"2h\"\nrequire_ticket = true\n\
                 ticket_pattern = \"^(INC|CHG)[0-9]+$\"",
            )],
        ),
        &["docker"],
        &[("alice", &[])],
    )
}

#[track_caller]
fn assert_nothing_granted(sb: &Sandbox) {
    assert!(all_grants(sb).is_empty(), "{:#?}", all_grants(sb));
    assert!(!sb.is_member("alice", "docker"));
}

#[test]
fn given_bad_input_on_the_command_line_then_clear_errors_with_exit_2_or_1_and_nothing_granted() {
    let sb = validation_host();
    // The limit is in bytes: 512 two-byte characters fit, one more byte does not.
    let long_reason = format!("{}x", "ü".repeat(512));
    let activate = |role: &str, duration: &str, reason: &str, ticket: &str| {
        sb.run(
            "alice",
            &[
                "pim", "activate", role, "-d", duration, "-r", reason, "-t", ticket,
            ],
        )
    };

    // The client's own checks: usage errors (2), the daemon is never asked.
    for (out, says) in [
        (
            activate("docker", "1h", "a\nb is a reason", "INC1"),
            "reason contains the control character",
        ),
        (
            activate("docker", "1h", &long_reason, "INC1"),
            "reason is 1025 bytes long; at most 1024",
        ),
        (
            activate("dock/er", "1h", REASON, "INC1"),
            "role 'dock/er' is not a valid name",
        ),
        (
            activate("dock er", "1h", REASON, "INC1"),
            "role 'dock er' is not a valid name",
        ),
        (activate("docker", "5x", REASON, "INC1"), "--duration"),
        (
            activate("docker", "1h", REASON, "INC\x1b[2J1"),
            "ticket contains the control character",
        ),
    ] {
        out.assert_status(2).assert_stderr_contains(says);
        assert!(out.stderr.starts_with("pim: "), "{out}");
        assert!(!out.stderr.contains('\x1b'), "raw escape echoed:\n{out}");
    }
    assert!(
        matching(&sb.audit_records("root", &[]), &[("action", "activate")]).is_empty(),
        "a usage error reached the daemon"
    );

    // The role's policy: refused by the daemon (1).
    for (out, says) in [
        (
            activate("docker", "1h", REASON, "JIRA-7"),
            "ticket 'JIRA-7' does not match role docker's pattern ^(INC|CHG)[0-9]+$",
        ),
        (
            activate("docker", "3h", REASON, "INC1"),
            "3h is longer than role docker's maximum of 2h",
        ),
        (
            activate("docker", "1h", "too short", "INC1"),
            "at least 10 characters",
        ),
        (
            sb.run("alice", &["pim", "activate", "docker", "-r", REASON]),
            "requires a ticket",
        ),
    ] {
        out.assert_status(1).assert_stderr_contains(says);
    }
    assert_nothing_granted(&sb);
    assert_eq!(
        matching(
            &sb.audit_records("root", &[]),
            &[("action", "activate"), ("outcome", "refused")]
        )
        .len(),
        // The too long duration and the too short reason are refused by pim before any
        // prompt (issue 15), from the role's limits; the ticket refusals reach pimd.
        2
    );

    // And with everything right, it works (a reason of exactly 1 KiB included).
    activate("docker", "1h", &"ü".repeat(512), "CHG42").assert_success();
    assert!(sb.is_member("alice", "docker"));
}

#[test]
fn given_bad_input_sent_straight_over_the_bus_then_the_daemon_refuses_each_and_nothing_is_granted()
{
    let sb = validation_host();
    let long_reason = "x".repeat(1025);
    let long_ticket = format!("INC{}", "1".repeat(126));
    let call = |role: &str, secs: &str, reason: &str, ticket: &str| {
        sb.call_pimd(
            "alice",
            "Activate",
            "stsss",
            &[role, secs, reason, ticket, ""],
        )
    };
    let cases = [
        (
            call("docker", "3600", "a\nb is a reason", "INC1"),
            "the reason contains the control character",
        ),
        (
            call("docker", "3600", &long_reason, "INC1"),
            "the reason is 1025 bytes long",
        ),
        (
            call("dock/er", "3600", REASON, "INC1"),
            "role 'dock/er' is not a valid name",
        ),
        (
            call("dock er", "3600", REASON, "INC1"),
            "role 'dock er' is not a valid name",
        ),
        (
            call("docker", "3600", REASON, "JIRA-7"),
            "does not match role docker's pattern",
        ),
        (
            call("docker", "3600", REASON, &long_ticket),
            "the ticket is 129 bytes long",
        ),
        (
            call("docker", "10800", REASON, "INC1"),
            "longer than role docker's maximum of 2h",
        ),
        (
            call("docker", &u64::MAX.to_string(), REASON, "INC1"),
            "longer than role docker's maximum of 2h",
        ),
        (
            call("docker", "3600", "a\u{1b}[31m reason", "INC1"),
            "control character",
        ),
    ];
    let count = cases.len();
    for (out, says) in cases {
        out.assert_status(1).assert_stderr_contains(says);
    }
    assert_nothing_granted(&sb);
    let refused = matching(
        &sb.audit_records("root", &[]),
        &[("action", "activate"), ("outcome", "refused")],
    )
    .len();
    assert_eq!(refused, count, "every refusal is audited");
    // Audit text never holds the raw control characters.
    let text = sb.run("root", &["pim", "audit"]);
    assert!(!text.assert_success().stdout.contains('\u{1b}'), "{text}");

    // The same call with good arguments is granted: the refusals were about the input.
    call("docker", "3600", REASON, "INC7")
        .assert_success()
        .assert_stdout_contains("\"active\"");
    assert!(sb.is_member("alice", "docker"));
}

// ---------------------------------------------------------------------------------------------
// 11. Identity comes from the bus
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_user_calling_check_access_then_permission_denied_while_root_gets_an_answer() {
    let sb = host(
        &config(
            "",
            &[role("admin", "sudo", &["alice"], "require_mfa = false")],
        ),
        &["sudo"],
        &[("alice", &[]), ("bob", &[])],
    );
    let check = |caller: &str| sb.call_pimd(caller, "CheckAccess", "sas", &["alice", "1", "sudo"]);

    for caller in ["alice", "bob"] {
        check(caller)
            .assert_status(1)
            .assert_stderr_contains("only root may ask");
        // The D-Bus error name, as dbus-send shows it.
        sb.run(
            caller,
            &[
                "dbus-send",
                "--system",
                "--print-reply",
                "--dest=org.pim.Manager1",
                "/org/pim/Manager1",
                "org.pim.Manager1.CheckAccess",
                "string:alice",
                "array:string:sudo",
            ],
        )
        .assert_failure()
        .assert_stderr_contains("org.pim.Manager1.Error.PermissionDenied");
    }
    check("root")
        .assert_success()
        .assert_stdout_contains("bs false");

    granted(&activate(&sb, "alice", "admin", Some("10m"), None));
    check("root")
        .assert_success()
        .assert_stdout_contains("bs true");
    check("alice").assert_status(1);

    // bob cannot act as alice: his calls are about bob, whatever he sends.
    sb.call_pimd("bob", "Deactivate", "s", &["admin"])
        .assert_status(1)
        .assert_stderr_contains("no live grant");
    assert!(grants_of(&sb, "bob").is_empty());
    assert_eq!(grants_of(&sb, "alice").len(), 1);
    assert!(sb.is_member("alice", "sudo"));

    let records = sb.audit_records("root", &[]);
    for caller in ["alice", "bob"] {
        assert_audited(
            &records,
            &[
                ("action", "access-check"),
                ("actor", caller),
                ("outcome", "refused"),
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 12. Who sees which audit records
// ---------------------------------------------------------------------------------------------

#[test]
fn given_several_users_activity_then_users_see_their_own_audit_and_auditors_all_with_filters() {
    let sb = host(
        &config(
            "",
            &[
                role("docker", "docker", &["alice", "bob"], "require_mfa = false"),
                role("web", "www-data", &["bob"], "require_mfa = false"),
            ],
        ),
        &["docker", "www-data"],
        &[("alice", &[]), ("bob", &[]), ("audrey", &["pim-auditors"])],
    );
    granted(&activate(&sb, "alice", "docker", Some("1h"), None));
    granted(&activate(&sb, "bob", "docker", Some("1h"), None));
    granted(&activate(&sb, "bob", "web", Some("1h"), None));

    // A plain user: only records about or by themselves.
    let alices = sb.audit_records("alice", &[]);
    assert!(!alices.is_empty());
    assert!(
        alices
            .iter()
            .all(|r| r["user"] == "alice" || r["actor"] == "alice"),
        "{alices:#?}"
    );
    assert_audited(&alices, &[("action", "activate"), ("user", "alice")]);
    sb.run("alice", &["pim", "audit", "--user", "bob"])
        .assert_status(1)
        .assert_stderr_contains("only admins and auditors");

    // An auditor: everybody's.
    let all = sb.audit_records("audrey", &[]);
    for (user, role) in [("alice", "docker"), ("bob", "docker"), ("bob", "web")] {
        assert_audited(
            &all,
            &[
                ("action", "activate"),
                ("user", user),
                ("role", role),
                ("outcome", "success"),
            ],
        );
    }
    // --user and --role filter.
    let bobs = sb.audit_records("audrey", &["--user", "bob"]);
    assert!(
        bobs.len() >= 2 && bobs.iter().all(|r| r["user"] == "bob"),
        "{bobs:#?}"
    );
    let dockers = sb.audit_records("audrey", &["--role", "docker"]);
    assert!(
        dockers.iter().all(|r| r["role"] == "docker")
            && matching(&dockers, &[("user", "alice")]).len() == 1
            && matching(&dockers, &[("user", "bob")]).len() == 1,
        "{dockers:#?}"
    );
    let both = sb.audit_records("audrey", &["--user", "bob", "--role", "web"]);
    assert_eq!(both.len(), 1, "{both:#?}");

    // --since: only what happened from then on.
    let last = all.iter().map(|r| int(r, "at_unix")).max().unwrap_or(0);
    wait_for_clock_past(&sb, last);
    sb.run("bob", &["pim", "deactivate", "web"])
        .assert_success();
    let since = format!("@{}", last + 1);
    let recent = sb.audit_records("audrey", &["--since", &since]);
    assert!(
        !recent.is_empty() && recent.iter().all(|r| int(r, "at_unix") > last),
        "{recent:#?}"
    );
    assert_audited(&recent, &[("action", "deactivate"), ("user", "bob")]);
    assert!(matching(&recent, &[("action", "activate")]).is_empty());
    assert_eq!(
        sb.audit_records("audrey", &["--since", "-1h"]).len(),
        all.len() + recent.len()
    );

    // CSV: a header, then one row per record.
    let csv = sb.run("audrey", &["pim", "audit", "--csv"]);
    csv.assert_success();
    let lines: Vec<&str> = csv.stdout.split_terminator("\r\n").collect();
    assert_eq!(
        lines.first().copied(),
        Some("id,at,at_unix,actor,action,user,role,outcome,reason,ticket,detail,prev,hash"),
        "{csv}"
    );
    assert_eq!(lines.len() - 1, all.len() + recent.len(), "{csv}");
    assert!(
        lines[1..].iter().all(|l| l
            .split(',')
            .next()
            .is_some_and(|id| id.parse::<u64>().is_ok())),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",bob,activate,bob,web,success,")),
        "{csv}"
    );
    // The plain user's CSV holds only their rows.
    let alices = sb.audit_records("alice", &[]);
    let alices_csv = sb.run("alice", &["pim", "audit", "--csv"]);
    assert_eq!(
        alices_csv
            .assert_success()
            .stdout
            .split_terminator("\r\n")
            .count(),
        alices.len() + 1,
        "{alices_csv}"
    );
    assert!(
        alices_csv
            .stdout
            .split_terminator("\r\n")
            .skip(1)
            .all(|row| {
                let cells: Vec<&str> = row.split(',').collect();
                cells.get(3) == Some(&"alice") || cells.get(5) == Some(&"alice")
            }),
        "{alices_csv}"
    );
}

// ---------------------------------------------------------------------------------------------
// 13. pimd --check-config
// ---------------------------------------------------------------------------------------------

const BAD_CONFIG: &str = r#"[daemon]
admins = ["%pim-admins"]
colour = "blue"

[roles.admin]
group = "sudo"
eligible = ["alice"]
max_duration = "25h"
require_approval = true
"#;

#[test]
fn given_a_bad_config_then_check_config_names_each_key_and_line_and_pimd_refuses_to_start() {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    sb.add_group("pim-admins");
    sb.write_file(CONFIG_PATH, BAD_CONFIG, 0o644);

    let expected = [
        format!("{CONFIG_PATH}:3: daemon.colour: unknown key"),
        format!("{CONFIG_PATH}:8: roles.admin.max_duration: "),
        format!("{CONFIG_PATH}:9: roles.admin.require_approval: "),
    ];
    for argv in [
        &["pimd", "--check-config"][..],
        &["pimd", "--check-config", "--config", CONFIG_PATH],
    ] {
        let out = sb.run("root", argv);
        out.assert_failure();
        for line in &expected {
            out.assert_stderr_contains(line);
        }
        out.assert_stderr_contains("24h")
            .assert_stderr_contains("no approvers");
        // A check is asked for by a person: answered at once.
        assert!(!out.stderr.contains("waiting"), "{}", out.stderr);
    }

    // A start, as D-Bus activation makes for any local user's call: it waits before it exits,
    // so that a loop of calls is not a loop of starts (it exits 78, which stops restarts).
    let start = sb.run("root", &["pimd", "--config", CONFIG_PATH]);
    start
        .assert_status(78)
        .assert_stderr_contains("not starting")
        .assert_stderr_contains(
            "waiting 10 s before exiting, so that the calls waiting for pimd share this failed start",
        )
        .assert_stderr_contains("fixed meanwhile, /etc/pim/pim.toml is used");
    for line in &expected {
        start.assert_stderr_contains(line);
    }
    assert!(!sb.bus_name_owned("org.pim.Manager1"));

    // Fixed while a start waits (an administrator fixes the file and runs systemctl start,
    // which joins that start): that start takes the file and serves.
    let waiting = sb.spawn("root", &["pimd", "--config", CONFIG_PATH]);
    sb.wait_until("the start to wait", COMMAND_DEADLINE, || {
        waiting.stderr_so_far().contains("fixed meanwhile")
    });
    sb.write_file(
        CONFIG_PATH,
        &BAD_CONFIG
            .replace("colour = \"blue\"\n", "")
            .replace("25h", "2h")
            .replace("require_approval = true", "require_approval = false"),
        0o644,
    );
    sb.wait_until("the waiting start to serve", COMMAND_DEADLINE, || {
        sb.bus_name_owned("org.pim.Manager1")
    });
    let served = waiting.kill();
    assert!(
        served
            .stderr
            .contains("pimd: /etc/pim/pim.toml is fixed; starting"),
        "{}",
        served.stderr
    );
    sb.wait_until("that pimd to be gone", COMMAND_DEADLINE, || {
        !sb.bus_name_owned("org.pim.Manager1")
    });

    // Fixed, it checks clean and starts.
    sb.run("root", &["pimd", "--check-config"]).assert_success();
    sb.start_pimd();

    // Any other start that cannot serve (here: a database that cannot be made) waits likewise.
    let config = sb.read_file(CONFIG_PATH);
    let elsewhere = "/etc/pim/other.toml";
    sb.write_file(
        elsewhere,
        &config.replace("[daemon]\n", "[daemon]\ndatabase = \"/proc/pim/pim.db\"\n"),
        0o644,
    );
    let failed = sb.run("root", &["pimd", "--config", elsewhere]);
    failed
        .assert_status(1)
        .assert_stderr_contains("pimd: not starting: ")
        .assert_stderr_contains("waiting 10 s before exiting");
    assert!(sb.pimd_running());
}

// ---------------------------------------------------------------------------------------------
// 14. Time-bound assignments
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_time_bound_assignment_then_eligibility_follows_its_window() {
    let sb = host(
        &config(
            "",
            &[role(
                "admin",
                "sudo",
                &[],
                "require_mfa = false\nmax_duration = \"2h\"",
            )],
        ),
        &["sudo"],
        &[("dave", &[])],
    );
    let roles = || {
        let out = sb.run("dave", &["pim", "--json", "roles"]);
        out.assert_success().json()["roles"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no roles:\n{out}"))
    };
    assert!(roles().is_empty());

    let before = now_unix();
    let assign = sb.run(
        "root",
        &[
            "pim", "--json", "admin", "assign", "dave", "admin", "--until", "+1h",
        ],
    );
    let until = int(&assign.assert_success().json(), "until_unix");
    assert!(
        (before + 3600..=now_unix() + 3600).contains(&until),
        "{assign}"
    );
    let listed = roles();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["name"], "admin");
    assert_eq!(int(&listed[0], "eligible_until_unix"), until);
    sb.run("dave", &["pim", "roles"])
        .assert_success()
        .assert_stdout_contains("eligible until");

    // Unassigning ends eligibility, and the grant that depended on it: the admin is told.
    granted(&activate(&sb, "dave", "admin", Some("10m"), None));
    sb.run("root", &["pim", "admin", "unassign", "dave", "admin"])
        .assert_success()
        .assert_stdout_contains("Ended dave's grant of admin, which depended on it.");
    assert!(!sb.is_member("dave", "sudo"));
    assert!(roles().is_empty());
    activate(&sb, "dave", "admin", Some("10m"), None)
        .assert_status(1)
        .assert_stderr_contains("not eligible");
    sb.run("root", &["pim", "admin", "unassign", "dave", "admin"])
        .assert_status(1);

    // Not yet in force.
    sb.run(
        "root",
        &["pim", "admin", "assign", "dave", "admin", "--from", "+1h"],
    )
    .assert_success();
    assert!(roles().is_empty());
    activate(&sb, "dave", "admin", Some("10m"), None)
        .assert_status(1)
        .assert_stderr_contains("not eligible");
    assert!(!sb.is_member("dave", "sudo"));

    // A window already over is a usage error.
    sb.run(
        "root",
        &["pim", "admin", "assign", "dave", "admin", "--until", "-1h"],
    )
    .assert_status(2)
    .assert_stderr_contains("--until");

    // A grant never outlasts the assignment.
    let assign = sb.run(
        "root",
        &[
            "pim", "--json", "admin", "assign", "dave", "admin", "--until", "+5m",
        ],
    );
    let until = int(&assign.assert_success().json(), "until_unix");
    let grant = granted(&activate(&sb, "dave", "admin", Some("1h"), None));
    assert_eq!(int(&grant, "ends_at_unix"), until, "{grant:#}");
    assert!(sb.is_member("dave", "sudo"));
}

// ---------------------------------------------------------------------------------------------
// 15. Extension
// ---------------------------------------------------------------------------------------------

#[test]
fn given_a_live_grant_then_extend_moves_its_end_but_not_beyond_the_role_maximum() {
    let sb = host(
        &config(
            "",
            &[role(
                "admin",
                "sudo",
                &["alice"],
                "max_duration = \"3h\"\ndefault_duration = \"1h\"",
            )],
        ),
        &["sudo"],
        &[("alice", &[])],
    );
    let mut phone = sb.enroll_mfa("alice");
    let extend = |duration: &str, code: &str| {
        sb.run(
            "alice",
            &[
                "pim",
                "--json",
                "extend",
                "admin",
                "-d",
                duration,
                "-r",
                "the migration needs longer",
                "--code",
                code,
            ],
        )
    };

    let code = phone.next_code(&sb);
    extend("2h", &code)
        .assert_status(1)
        .assert_stderr_contains("no live grant");

    let grant = granted(&activate(&sb, "alice", "admin", Some("30m"), Some(&code)));
    let first_end = int(&grant, "ends_at_unix");

    let code = phone.next_code(&sb);
    extend("4h", &code)
        .assert_status(1)
        .assert_stderr_contains("longer than role admin's maximum of 3h");
    assert_eq!(int(&grants_of(&sb, "alice")[0], "ends_at_unix"), first_end);

    // The refusal did not spend the code.
    let before = now_unix();
    let out = extend("2h", &code);
    let new_end = int(&out.assert_success().json()["grant"], "ends_at_unix");
    assert!(new_end > first_end, "{out}");
    assert!(
        (before + 7200..=now_unix() + 7200).contains(&new_end),
        "{out}"
    );
    let grants = grants_of(&sb, "alice");
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert_eq!(int(&grants[0], "ends_at_unix"), new_end);
    assert!(int(&grants[0], "remaining_secs") > 3600, "{grants:#?}");
    assert!(sb.is_member("alice", "sudo"));

    assert_audited(
        &sb.audit_records("alice", &[]),
        &[
            ("action", "extend"),
            ("user", "alice"),
            ("outcome", "success"),
            ("reason", "the migration needs longer"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Two roles, one group
// ---------------------------------------------------------------------------------------------

#[test]
fn given_two_roles_granting_one_group_then_the_membership_lasts_until_the_last_grant_ends() {
    let sb = host(
        &config(
            "",
            &[
                role("docker", "docker", &["alice"], "require_mfa = false"),
                role("docker-oncall", "docker", &["alice"], "require_mfa = false"),
            ],
        ),
        &["docker"],
        &[("alice", &[])],
    );
    granted(&activate(&sb, "alice", "docker", Some("1h"), None));
    // The second role's group is already hers, but through PIM: that is no obstacle.
    let short = granted(&activate(&sb, "alice", "docker-oncall", Some("3s"), None));
    assert_eq!(etc_group_members(&sb, "docker"), ["alice"]);

    // The short grant expires; the long one still needs the membership.
    sb.wait_until("the docker-oncall grant to expire", EXPIRY_DEADLINE, || {
        grants_of(&sb, "alice").len() == 1
    });
    assert!(now_unix() >= int(&short, "ends_at_unix"));
    assert!(sb.is_member("alice", "docker"));
    assert_eq!(grants_of(&sb, "alice")[0]["role"], "docker");

    // Again the other way round: revoking the long one keeps a live short one's membership.
    granted(&activate(&sb, "alice", "docker-oncall", Some("1h"), None));
    sb.run("root", &["pim", "admin", "revoke", "alice", "docker"])
        .assert_success();
    assert!(sb.is_member("alice", "docker"));
    sb.run("alice", &["pim", "deactivate", "docker-oncall"])
        .assert_success();
    assert!(!sb.is_member("alice", "docker"));
    assert!(!sb.groups_of("alice").contains(&"docker".to_string()));
    assert!(all_grants(&sb).is_empty());
}

#[test]
fn given_a_reload_then_pimd_takes_a_valid_new_configuration_and_for_a_broken_one_keeps_the_old_fails_the_reload_and_doctor_says_so(
) {
    let first = config(
        "",
        &[role("web", "www-data", &["alice"], "require_mfa = false")],
    );
    let sb = host(&first, &[], &[("alice", &[])]);
    let roles = |sb: &Sandbox| -> Vec<String> {
        let out = sb.run("alice", &["pim", "--json", "roles"]);
        out.assert_success();
        out.json()["roles"]
            .as_array()
            .expect("roles array")
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(roles(&sb), ["web"]);

    let second = config(
        "",
        &[
            role("web", "www-data", &["alice"], "require_mfa = false"),
            role("backup", "backup", &["alice"], "require_mfa = false"),
        ],
    );
    sb.write_file(CONFIG_PATH, &second, 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until(
        "pimd to take the new configuration",
        COMMAND_DEADLINE,
        || roles(&sb) == ["backup", "web"],
    );
    assert!(sb.pimd_running(), "SIGHUP must not stop pimd");
    assert_audited(
        &sb.audit_records("root", &[]),
        &[("action", "config-reload")],
    );

    // A broken file: `pimd --reload` (systemd's ExecReload) fails with the error, pimd logs it
    // and keeps the running configuration, and doctor says so until a reload succeeds.
    let reload = |sb: &Sandbox| {
        sb.run(
            "root",
            &[
                "bash",
                "-c",
                &format!("pimd --reload \"$(cat {SANDBOX_DIR}/pimd.pid)\""),
            ],
        )
    };
    let doctor_reload = |sb: &Sandbox| -> Value {
        let doctor = sb.run("root", &["pim", "--json", "doctor"]);
        let report = doctor.json();
        let checks = report["checks"].as_array().expect("checks").clone();
        let found: Vec<Value> = checks
            .into_iter()
            .filter(|c| c["check"] == "reload")
            .collect();
        assert_eq!(found.len(), 1, "{doctor}");
        found[0].clone()
    };
    assert_eq!(doctor_reload(&sb)["status"], "ok");
    sb.write_file(CONFIG_PATH, "[roles.web]\nmax_duration = \"48h\"\n", 0o644);
    let refused = reload(&sb);
    refused
        .assert_failure()
        .assert_stderr_contains("reload failed")
        .assert_stderr_contains(&format!("{CONFIG_PATH}:2: roles.web.max_duration: 48h"));
    assert!(sb.pimd_log().contains("keeping the running configuration"));
    assert!(sb.pimd_running());
    assert_eq!(roles(&sb), ["backup", "web"]);
    let finding = doctor_reload(&sb);
    assert_eq!(finding["status"], "fail", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{CONFIG_PATH}:2: roles.web.max_duration")),
        "{finding}"
    );

    sb.write_file(CONFIG_PATH, &first, 0o644);
    reload(&sb).assert_success();
    assert_eq!(roles(&sb), ["web"]);
    assert_eq!(doctor_reload(&sb)["status"], "ok");

    // A PID that is not pimd's (a wrong $MAINPID, one reused): nothing is signalled (SIGHUP
    // would have ended this sleep). `$!` names the forked shell until it has exec'd sleep.
    let wrong = sb.sh(
        "root",
        "sleep 600 >/dev/null 2>&1 & pid=$!; \
         until [ \"$(cat /proc/$pid/comm 2>/dev/null)\" = sleep ]; do :; done; \
         pimd --reload $pid; rc=$?; kill -0 $pid && echo still running; kill $pid; exit $rc",
    );
    wrong
        .assert_failure()
        .assert_stderr_contains("sleep, not pimd; not signalling it")
        .assert_stdout_contains("still running");
}

#[test]
fn given_the_bus_daemon_goes_away_then_pimd_keeps_running_and_comes_back_on_a_new_bus() {
    // Issue 12: the PAM path does not depend on the bus, so pimd no longer ends with it (it
    // used to, for systemd to start one on the new bus): it keeps answering the PAM module
    // and connects again once a bus is there.
    let sb = host(
        &config(
            "",
            &[role("web", "www-data", &["alice"], "require_mfa = false")],
        ),
        &[],
        &[("alice", &[])],
    );
    // The sandbox's own dbus-daemon (its PID namespace holds only the sandbox's processes).
    sb.sh("root", "kill -TERM \"$(pgrep -x dbus-daemon)\"")
        .assert_success();
    sb.wait_until("pimd to say it lost the bus", COMMAND_DEADLINE, || {
        sb.pimd_log()
            .contains("pimd: lost the connection to the system bus")
    });
    assert!(sb.pimd_running(), "{}", sb.pimd_log());
    sb.start_new_bus();
    sb.wait_until("pimd back on the new bus", COMMAND_DEADLINE, || {
        sb.bus_name_owned(pim_e2e::BUS_NAME)
    });
    sb.run("alice", &["pim", "status"]).assert_success();
    assert!(sb.pimd_running());
    let log = sb.pimd_log();
    assert!(!log.contains("pimd: stopping;"), "{log}");
}

#[test]
fn given_a_user_looping_on_a_refused_activation_then_every_call_is_refused_and_the_excess_is_summarised_when_pimd_stops(
) {
    let sb = host(
        &config("", &[role("admin", "sudo", &["alice"], "")]),
        &["sudo"],
        &[("alice", &[]), ("mallory", &[])],
    );
    const ATTEMPTS: usize = 25;
    for _ in 0..ATTEMPTS {
        activate(&sb, "mallory", "admin", None, None)
            .assert_status(1)
            .assert_stderr_contains("not eligible");
    }
    let refused = |records: &[Value]| {
        matching(
            records,
            &[
                ("action", "activate"),
                ("actor", "mallory"),
                ("outcome", "refused"),
            ],
        )
        .len()
    };
    // 20 a minute one by one (pimd's allowance per person); the rest only counted so far.
    let records = sb.audit_records("root", &[]);
    assert_eq!(refused(&records), 20, "{records:#?}");
    assert!(matching(&records, &[("action", "refusals-unrecorded")]).is_empty());

    // A clean stop writes the count down.
    assert_eq!(sb.kill_pimd("TERM"), Some(0));
    sb.start_pimd();
    let records = sb.audit_records("root", &[]);
    let summary = assert_audited(
        &records,
        &[
            ("action", "refusals-unrecorded"),
            ("actor", "mallory"),
            ("user", "mallory"),
            ("outcome", "refused"),
        ],
    );
    let detail = summary["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{} more refusal(s) between ", ATTEMPTS - 20))
            && detail.ends_with(&format!(": activate {}", ATTEMPTS - 20)),
        "{summary:#}"
    );
    assert_eq!(refused(&records), 20);
    // mallory reads it as her own.
    let own = sb.audit_records("mallory", &[]);
    assert_audited(&own, &[("action", "refusals-unrecorded")]);
}

// ---------------------------------------------------------------------------------------------
// 16. When eligibility ends, so do the grants that depended on it
// ---------------------------------------------------------------------------------------------

/// The module line of these tests: sudo is gated on group `sudo`.
const SUDO_PAM_ARGS: &str = "groups=sudo services=sudo,sudo-i";

/// The eligibility-end records of `user`'s grants of `role`.
fn eligibility_ends<'a>(records: &'a [Value], user: &str, role: &str) -> Vec<&'a Value> {
    matching(
        records,
        &[
            ("action", "eligibility-end"),
            ("user", user),
            ("role", role),
            ("outcome", "success"),
        ],
    )
}

/// Asserts that `user` holds no grant, no `sudo` in the group database nor in a fresh login,
/// and that sudo refuses both a fresh login and a shell that logged in during the grant.
#[track_caller]
fn assert_sudo_gone(sb: &Sandbox, user: &str) {
    assert!(grants_of(sb, user).is_empty());
    assert!(!sb.is_member(user, "sudo"));
    assert!(!sb.groups_of(user).contains(&"sudo".to_string()));
    sb.run(user, &["sudo", "-n", "true"]).assert_failure();
    sb.run_with_groups(user, &["sudo"], &["sudo", "-n", "true"])
        .assert_failure()
        .assert_stderr_contains("pim: ");
}

#[test]
fn given_a_grant_that_stood_on_an_assignment_when_unassigned_then_it_ends_and_sudo_is_refused() {
    let sb = host(
        &config(
            "",
            &[role("admin", "sudo", &["alice"], "require_mfa = false")],
        ),
        &["sudo"],
        &[("alice", &[]), ("dave", &[])],
    );
    sb.setup_sudo(Some(SUDO_PAM_ARGS));
    for user in ["alice", "dave"] {
        sb.run("root", &["pim", "admin", "assign", user, "admin"])
            .assert_success();
        granted(&activate(&sb, user, "admin", Some("1h"), None));
        sb.run(user, &["sudo", "-n", "true"]).assert_success();
    }

    // dave was eligible through the assignment alone: his grant ends with it.
    sb.run("root", &["pim", "admin", "unassign", "dave", "admin"])
        .assert_success()
        .assert_stdout_contains("Ended dave's grant of admin, which depended on it.");
    assert_sudo_gone(&sb, "dave");

    // alice is also in the role's eligible list: her grant stays, and the admin is told why.
    let out = sb.run(
        "root",
        &["pim", "--json", "admin", "unassign", "alice", "admin"],
    );
    let doc = out.assert_success().json();
    assert!(doc["ended_grant"].is_null(), "{out}");
    assert_eq!(doc["running_grant"]["user"], "alice", "{out}");
    assert_eq!(grants_of(&sb, "alice").len(), 1);
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();

    let records = sb.audit_records("root", &[]);
    let ends = eligibility_ends(&records, "dave", "admin");
    assert_eq!(ends.len(), 1, "{records:#?}");
    assert_eq!(ends[0]["actor"], "root", "{:#}", ends[0]);
    assert_eq!(
        ends[0]["reason"], "eligibility ended: unassigned by root",
        "{:#}",
        ends[0]
    );
    assert!(eligibility_ends(&records, "alice", "admin").is_empty());
    assert_audited(
        &records,
        &[
            ("action", "membership-remove"),
            ("user", "dave"),
            ("outcome", "success"),
        ],
    );
}

#[test]
fn given_an_assignment_cut_to_seconds_then_the_grant_ends_at_its_end_even_with_pimd_down_then() {
    // on_end = "keep": dave's `pim status` polls run across the grant's end, and one started
    // while /etc/group still listed him would carry sudo's gid and be ended with the grant;
    // this test is about when the grant ends, not about its processes (ending.rs is).
    let sb = host(
        &config(
            "",
            &[role(
                "admin",
                "sudo",
                &[],
                "require_mfa = false\non_end = \"keep\"",
            )],
        ),
        &["sudo"],
        &[("dave", &[])],
    );
    sb.setup_sudo(Some(SUDO_PAM_ARGS));
    // An hour's grant on an open-ended assignment, which is then cut to end `until`.
    let grant_then_cut = |until: &str| -> i64 {
        sb.run("root", &["pim", "admin", "assign", "dave", "admin"])
            .assert_success();
        granted(&activate(&sb, "dave", "admin", Some("1h"), None));
        let out = sb.run(
            "root",
            &[
                "pim", "--json", "admin", "assign", "dave", "admin", "--until", until,
            ],
        );
        int(&out.assert_success().json(), "until_unix")
    };

    // pimd running: the grant goes when the assignment ends, not an hour later.
    let until = grant_then_cut("+4s");
    assert_member_while_live(&sb, "dave", "sudo", until);
    sb.wait_until(
        "dave's grant to end with his assignment",
        EXPIRY_DEADLINE,
        || grants_of(&sb, "dave").is_empty(),
    );
    assert!(now_unix() >= until);
    assert_sudo_gone(&sb, "dave");

    // pimd dead when the assignment ends: the restarted pimd ends the grant at once. (The
    // grant must still be live when SIGKILL lands; on a machine too slow, a longer one.)
    let mut cut_at = None;
    for secs in [10, 40, 120] {
        let until = grant_then_cut(&format!("+{secs}s"));
        assert_eq!(sb.kill_pimd("KILL"), Some(128 + 9));
        if now_unix() < until {
            cut_at = Some(until);
            break;
        }
        sb.start_pimd();
        sb.wait_until("the ended grant to be reconciled", EXPIRY_DEADLINE, || {
            grants_of(&sb, "dave").is_empty()
        });
    }
    let until = cut_at.expect("an assignment outlived the kill");
    wait_for_clock_past(&sb, until);
    assert!(sb.is_member("dave", "sudo"), "nobody but pimd removes it");
    // pimd reconciles before it takes its bus name: by the time anyone (sudo's PAM check
    // included) can reach it, the grant has ended.
    sb.start_pimd();
    assert!(!sb.is_member("dave", "sudo"));
    assert_sudo_gone(&sb, "dave");

    let records = sb.audit_records("root", &[]);
    let ends = eligibility_ends(&records, "dave", "admin");
    assert!(ends.len() >= 2, "{records:#?}");
    for end in ends {
        assert_eq!(end["actor"], "pimd", "{end:#}");
        let reason = end["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("eligibility ended: the assignment of dave to role admin ended "),
            "{end:#}"
        );
    }
}

#[test]
fn given_a_reload_that_takes_eligibility_away_then_those_grants_end_and_the_still_eligible_keep_theirs(
) {
    // alice is eligible for admin by name and through %ops, erin by name only, carol through
    // %ops only; web is alice's. on_end = "keep": the `pim status` polls run across the
    // grants' ends, and one started while the user still held sudo would be ended with the
    // grant (exit 143); this test is about which grants end, not their processes (ending.rs).
    const KEEP: &str = "require_mfa = false\non_end = \"keep\"";
    let first = config(
        "",
        &[
            role("admin", "sudo", &["alice", "erin", "%ops"], KEEP),
            role("web", "www-data", &["alice"], KEEP),
        ],
    );
    let sb = host(
        &first,
        &["sudo", "www-data", "ops"],
        &[("alice", &["ops"]), ("erin", &[]), ("carol", &["ops"])],
    );
    sb.setup_sudo(Some(SUDO_PAM_ARGS));
    for user in ["alice", "erin", "carol"] {
        granted(&activate(&sb, user, "admin", Some("1h"), None));
    }
    granted(&activate(&sb, "alice", "web", Some("1h"), None));

    // The names go from admin's list and role web goes: erin's grant and alice's web end;
    // alice keeps admin through %ops, and so does carol.
    let second = config("", &[role("admin", "sudo", &["%ops"], KEEP)]);
    sb.write_file(CONFIG_PATH, &second, 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until("the reload to end erin's grant", COMMAND_DEADLINE, || {
        grants_of(&sb, "erin").is_empty()
    });
    assert_sudo_gone(&sb, "erin");
    let alice: Vec<Value> = grants_of(&sb, "alice");
    assert_eq!(alice.len(), 1, "{alice:#?}");
    assert_eq!(alice[0]["role"], "admin");
    assert!(!sb.is_member("alice", "www-data"));
    for user in ["alice", "carol"] {
        sb.run(user, &["sudo", "-n", "true"]).assert_success();
    }

    // carol leaves %ops: at the next reload (or reconciliation) her grant ends too.
    sb.run("root", &["gpasswd", "-d", "carol", "ops"])
        .assert_success();
    sb.kill_pimd("HUP");
    sb.wait_until("the reload to end carol's grant", COMMAND_DEADLINE, || {
        grants_of(&sb, "carol").is_empty()
    });
    assert_sudo_gone(&sb, "carol");
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();

    let records = sb.audit_records("root", &[]);
    let reason_of = |user: &str, role: &str| -> String {
        let ends = eligibility_ends(&records, user, role);
        assert_eq!(ends.len(), 1, "{user} {role}: {records:#?}");
        assert_eq!(ends[0]["actor"], "pimd", "{:#}", ends[0]);
        ends[0]["reason"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        reason_of("erin", "admin"),
        "eligibility ended: erin is no longer eligible for role admin"
    );
    assert_eq!(
        reason_of("alice", "web"),
        "eligibility ended: role web is no longer in the configuration"
    );
    assert_eq!(
        reason_of("carol", "admin"),
        "eligibility ended: carol is no longer eligible for role admin"
    );
    assert!(eligibility_ends(&records, "alice", "admin").is_empty());
}

#[test]
fn given_a_reload_that_gives_a_role_another_group_then_the_grant_of_the_old_group_ends_and_sudo_refuses_it(
) {
    let with_group = |group: &str| {
        config(
            "",
            &[role("admin", group, &["alice"], "require_mfa = false")],
        )
    };
    let sb = host(
        &with_group("sudo"),
        &["sudo", "ops-admins"],
        &[("alice", &[])],
    );
    sb.setup_sudo(Some(SUDO_PAM_ARGS));
    let grant = granted(&activate(&sb, "alice", "admin", Some("1h"), None));
    assert_eq!(grant["group"], "sudo", "{grant:#}");
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();

    // alice is still eligible for admin, but admin no longer grants sudo.
    sb.write_file(CONFIG_PATH, &with_group("ops-admins"), 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until("the reload to end alice's grant", COMMAND_DEADLINE, || {
        grants_of(&sb, "alice").is_empty()
    });
    assert_sudo_gone(&sb, "alice");
    let records = sb.audit_records("root", &[]);
    let ends = eligibility_ends(&records, "alice", "admin");
    assert_eq!(ends.len(), 1, "{records:#?}");
    assert_eq!(
        ends[0]["reason"], "eligibility ended: role admin now grants group ops-admins, not sudo",
        "{:#}",
        ends[0]
    );

    // Activating again grants the new group.
    let again = granted(&activate(&sb, "alice", "admin", Some("1h"), None));
    assert_eq!(again["group"], "ops-admins", "{again:#}");
    assert!(sb.is_member("alice", "ops-admins"));
}

#[test]
fn given_a_user_made_permanent_by_reload_then_the_end_of_their_grant_leaves_them_in_the_group() {
    let with_permanent = |permanent: &str| {
        config(
            "",
            &[role(
                "admin",
                "sudo",
                &["alice"],
                &format!("require_mfa = false\npermanent = [{permanent}]"),
            )],
        )
    };
    let sb = host(&with_permanent(""), &["sudo"], &[("alice", &[])]);
    sb.setup_sudo(Some(SUDO_PAM_ARGS));
    granted(&activate(&sb, "alice", "admin", Some("1h"), None));

    sb.write_file(CONFIG_PATH, &with_permanent("\"alice\""), 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until(
        "pimd to take the new configuration",
        COMMAND_DEADLINE,
        || {
            !matching(
                &sb.audit_records("root", &[]),
                &[("action", "config-reload"), ("outcome", "success")],
            )
            .is_empty()
        },
    );
    // Her grant runs on; when it ends, the membership is hers and stays.
    assert_eq!(grants_of(&sb, "alice").len(), 1);
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    assert!(grants_of(&sb, "alice").is_empty());
    assert_eq!(etc_group_members(&sb, "sudo"), ["alice"]);
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();

    let records = sb.audit_records("root", &["--user", "alice"]);
    assert_audited(
        &records,
        &[
            ("action", "membership-keep"),
            ("actor", "pimd"),
            ("role", "admin"),
            ("outcome", "success"),
        ],
    );
    assert!(matching(&records, &[("action", "membership-remove")]).is_empty());
}

/// A sandbox where role admin (group sudo, gated by pam_pim.so) has no standing eligibility
/// and dave holds it for an hour on an open-ended assignment.
fn dave_holding_admin_on_an_assignment() -> Sandbox {
    let sb = host(
        &config("", &[role("admin", "sudo", &[], "require_mfa = false")]),
        &["sudo"],
        &[("dave", &[])],
    );
    sb.setup_sudo(Some(SUDO_PAM_ARGS));
    sb.run("root", &["pim", "admin", "assign", "dave", "admin"])
        .assert_success();
    granted(&activate(&sb, "dave", "admin", Some("1h"), None));
    sb
}

#[test]
fn given_an_assignment_end_in_the_past_then_the_client_refuses_it_and_over_the_bus_the_grant_ends_at_once(
) {
    let sb = dave_holding_admin_on_an_assignment();

    sb.run(
        "root",
        &["pim", "admin", "assign", "dave", "admin", "--until", "-1h"],
    )
    .assert_status(2)
    .assert_stderr_contains("the assignment would never be in force");
    assert_eq!(grants_of(&sb, "dave").len(), 1);

    // Straight over the bus pimd takes it: the assignment is over, and the grant with it.
    let an_hour_ago = (now_unix() - 3600).to_string();
    sb.call_pimd(
        "root",
        "AdminAssign",
        "ssxx",
        &["dave", "admin", "0", &an_hour_ago],
    )
    .assert_success();
    assert_sudo_gone(&sb, "dave");
    let records = sb.audit_records("root", &[]);
    let ends = eligibility_ends(&records, "dave", "admin");
    assert_eq!(ends.len(), 1, "{records:#?}");
    let reason = ends[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("eligibility ended: the assignment of dave to role admin ended "),
        "{:#}",
        ends[0]
    );
}

#[test]
fn given_gpasswd_failing_at_unassign_then_the_unassignment_succeeds_with_a_warning_and_pimd_finishes_later(
) {
    let sb = dave_holding_admin_on_an_assignment();

    // /etc/group locked by a live process (the sandbox's init): gpasswd -d cannot edit it.
    sb.write_file("/etc/group.lock", "1", 0o600);
    sb.run("root", &["pim", "admin", "unassign", "dave", "admin"])
        .assert_success()
        .assert_stdout_contains("Ended dave's grant of admin, which depended on it.")
        .assert_stderr_contains("pim: warning: ending dave's grant of admin did not complete: ")
        .assert_stderr_contains("gpasswd -d dave sudo failed");
    // dave is still in sudo, so a process of dave's started before pimd has ended those of the
    // grant is one of them: wait for that ending before running anything as dave.
    sb.wait_until("pimd to end dave's processes", COMMAND_DEADLINE, || {
        sb.audit_records("root", &[])
            .iter()
            .any(|r| r["action"] == "processes-end" && r["user"] == "dave")
    });
    assert!(grants_of(&sb, "dave").is_empty());
    assert!(
        sb.is_member("dave", "sudo"),
        "the removal waits for the lock"
    );
    sb.run_with_groups("dave", &["sudo"], &["sudo", "-n", "true"])
        .assert_failure()
        .assert_stderr_contains("pim: ");
    // The assignment is gone, which is what a second unassign says.
    sb.run("root", &["pim", "admin", "unassign", "dave", "admin"])
        .assert_failure()
        .assert_stderr_contains("dave has no assignment for role admin");

    // Once gpasswd can edit /etc/group, reconciliation (here: at a reload) finishes.
    sb.sh("root", "rm -f /etc/group.lock").assert_success();
    sb.kill_pimd("HUP");
    sb.wait_until("pimd to take dave out of sudo", COMMAND_DEADLINE, || {
        !sb.is_member("dave", "sudo")
    });
    assert_sudo_gone(&sb, "dave");
}

#[test]
fn given_pimd_serving_then_a_second_pimd_takes_nothing_and_changes_nothing() {
    // zbus's default name flags let a later owner replace an earlier one: a second pimd
    // started by hand took the name and left two writers (and reconciled before asking).
    let sb = host(
        &config(
            "",
            &[role("admin", "sudo", &["alice"], "require_mfa = false")],
        ),
        &["sudo"],
        &[("alice", &[])],
    );
    let owner = || {
        sb.call_bus_driver("root", "GetNameOwner", "s", &[pim_e2e::BUS_NAME])
            .assert_success()
            .stdout
            .clone()
    };
    let first = owner();
    let second = sb.run("root", &["pimd", "--config", CONFIG_PATH]);
    second
        .assert_failure()
        .assert_stderr_contains("another pimd is running");
    assert!(sb.pimd_running());
    assert_eq!(owner(), first, "the name stays with the first pimd");
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    assert!(sb.is_member("alice", "sudo"));
}

#[test]
fn given_pimd_serving_and_its_lock_file_replaced_then_a_second_pimd_is_still_refused() {
    // The first pimd's lock is on a file no longer at the path (tmpfiles cleaning /run, an
    // administrator's rm): a second pimd would lock the new file and serve beside it.
    let sb = host(
        &config(
            "",
            &[role("admin", "sudo", &["alice"], "require_mfa = false")],
        ),
        &["sudo"],
        &[("alice", &[])],
    );
    let socket_before = sb
        .sh("root", "stat -c %i /run/pim/pam.socket")
        .assert_success()
        .stdout
        .clone();
    sb.sh(
        "root",
        "rm /run/pim/pimd.lock && install -m 0600 /dev/null /run/pim/pimd.lock",
    )
    .assert_success();
    sb.run("root", &["pimd", "--config", CONFIG_PATH])
        .assert_failure()
        .assert_stderr_contains("another pimd is running");
    assert!(sb.pimd_running());
    let socket_after = sb
        .sh("root", "stat -c %i /run/pim/pam.socket")
        .assert_success()
        .stdout
        .clone();
    assert_eq!(socket_after, socket_before, "the first pimd's socket stays");
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    assert!(sb.is_member("alice", "sudo"));
}

// ---------------------------------------------------------------------------------------------
// Prompt order: what the role's data and the enrolment refuse is said before a code is read
// ---------------------------------------------------------------------------------------------

#[test]
fn given_no_enrolment_a_long_duration_or_a_short_reason_then_refused_before_the_code_is_read() {
    let sb = host(
        &config(
            "",
            &[role(
                "admin",
                "sudo",
                &["alice", "bob"],
                "require_mfa = true\nmax_duration = \"2h\"\nrequire_justification = true\n\
                 min_justification = 20",
            )],
        ),
        &["sudo"],
        &[("alice", &[]), ("bob", &[])],
    );
    sb.enroll_mfa("bob");
    // `--code -` reads the code from stdin, which is empty: reaching it would fail on that.
    let ask = |user: &str, extra: &[&str]| {
        let mut argv = vec!["pim", "activate", "admin", "--code", "-"];
        argv.extend(extra);
        sb.run_with_stdin(user, &argv, "")
    };
    let long_reason = "rotate the TLS certificates of the web tier";
    ask("alice", &["-r", long_reason])
        .assert_status(1)
        .assert_stderr_contains("you have no TOTP enrolment; run 'pim mfa enroll' first");
    ask("bob", &["-r", long_reason, "-d", "3h"])
        .assert_status(1)
        .assert_stderr_contains("3h is longer than role admin's maximum of 2h");
    ask("bob", &["-r", "tls"])
        .assert_status(1)
        .assert_stderr_contains("requires a reason of at least 20 characters (yours has 3)");
    assert!(!sb.is_member("bob", "sudo"));
}

// ---------------------------------------------------------------------------------------------
// pim audit's filters and formats
// ---------------------------------------------------------------------------------------------

#[test]
fn given_audit_filters_then_limit_until_and_action_select_and_bad_ones_are_usage_errors() {
    let sb = host(
        &config(
            "",
            &[role("docker", "docker", &["alice"], "require_mfa = false")],
        ),
        &["docker"],
        &[("alice", &[])],
    );
    for _ in 0..2 {
        granted(&activate(&sb, "alice", "docker", Some("10m"), None));
        sb.run("alice", &["pim", "deactivate", "docker"])
            .assert_success();
    }
    let activations = sb.audit_records("root", &["--action", "activate"]);
    assert_eq!(activations.len(), 2, "{activations:#?}");
    assert!(activations.iter().all(|r| r["action"] == "activate"));
    let last = sb.audit_records("root", &["--action", "activate", "--limit", "1"]);
    assert_eq!(last, activations[1..].to_vec());
    assert!(sb
        .audit_records("root", &["--until", "2000-01-01"])
        .is_empty());
    sb.run("root", &["pim", "audit", "--action", "bogus"])
        .assert_status(2)
        .assert_stderr_contains("--action: unknown action \"bogus\"; one of: ");
    sb.run("root", &["pim", "--json", "audit", "--csv"])
        .assert_status(2)
        .assert_stderr_contains("--csv and --json");
    let text = sb.run("root", &["pim", "audit", "--limit", "3"]);
    assert!(text.assert_success().stdout.starts_with("TIME ("), "{text}");
}
