//! The notifiers that ship with pim (packaging/notify/), end to end: pimd runs
//! `pim-notify-mail` as its `notify_command`, which hands one well-formed message per event,
//! addressed to the event's recipients (the requester, the role's approvers with a group's
//! members, the admins), to a stand-in sendmail that records what it was given.

use std::time::Duration;

use pim_e2e::{Sandbox, CONFIG_PATH};

const ADAPTER: &str = "/etc/pim/pim-notify-mail";
const SENDMAIL: &str = "/etc/pim/fake-sendmail";
const MAILBOX: &str = "/var/log/fake-mail";
const DEADLINE: Duration = Duration::from_secs(60);
const REASON: &str = "rotate the TLS certificates";

/// Records each message it is handed (its arguments, then the message) in a file of its own.
const FAKE_SENDMAIL: &str = r#"#!/bin/sh
set -e
mkdir -p /var/log/fake-mail
n=$(date +%s%N)
echo "$*" >/var/log/fake-mail/$n.args
cat >/var/log/fake-mail/$n.tmp
mv /var/log/fake-mail/$n.tmp /var/log/fake-mail/$n.eml
"#;

fn config() -> String {
    format!(
        r#"[daemon]
admins = ["%pim-admins"]
notify_command = ["{ADAPTER}", "--domain", "example.org", "--host", "web7", "--sendmail", "{SENDMAIL}"]

[roles.db]
group = "dbadmin"
eligible = ["alice"]
require_mfa = false
require_approval = true
approvers = ["bob", "%dbleads"]
"#
    )
}

/// The messages the stand-in got, in the order it got them: (arguments, message).
fn mail(sb: &Sandbox) -> Vec<(String, String)> {
    let list = sb.sh(
        "root",
        &format!("cd {MAILBOX} 2>/dev/null && ls *.eml 2>/dev/null | sort || true"),
    );
    list.stdout
        .lines()
        .map(|name| {
            let stem = name.trim_end_matches(".eml");
            (
                sb.read_file(&format!("{MAILBOX}/{stem}.args")),
                sb.read_file(&format!("{MAILBOX}/{name}")),
            )
        })
        .collect()
}

/// The value of header `name` in `message` (headers end at the first empty line).
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = message.split_once("\n\n")?;
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[test]
fn given_the_mail_adapter_then_a_request_reaches_its_recipients_as_a_well_formed_message() {
    let sb = Sandbox::start();
    for group in ["pim-admins", "dbleads", "dbadmin"] {
        sb.add_group(group);
    }
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.add_user("erin", &["dbleads"]);
    sb.add_user("frank", &["pim-admins"]);
    sb.write_file(
        ADAPTER,
        include_str!("../../packaging/notify/pim-notify-mail"),
        0o755,
    );
    sb.write_file(SENDMAIL, FAKE_SENDMAIL, 0o755);
    sb.write_file(CONFIG_PATH, &config(), 0o644);
    sb.start_pimd();

    let out = sb.run(
        "alice",
        &["pim", "--json", "activate", "db", "-d", "30m", "-r", REASON],
    );
    out.assert_status(3);
    let id = out.json()["request"]["id"].as_i64().unwrap();
    sb.wait_until("the request's mail", DEADLINE, || !mail(&sb).is_empty());
    let (args, message) = mail(&sb).remove(0);
    assert_eq!(
        args.trim(),
        "-t -oi",
        "recipients from the headers; a lone dot is no end"
    );
    // Headers: the ones a mail needs, each once, one line each.
    for name in [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
    ] {
        let count = message
            .split_once("\n\n")
            .unwrap()
            .0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}: ")))
            .count();
        assert_eq!(count, 1, "{name} in:\n{message}");
    }
    assert_eq!(header(&message, "From"), Some("pim@example.org"));
    assert_eq!(
        header(&message, "To"),
        Some("alice@example.org, bob@example.org, erin@example.org, frank@example.org"),
        "the requester, the approvers (erin through %dbleads) and the admins:\n{message}"
    );
    assert_eq!(
        header(&message, "Subject"),
        Some("[pim web7] alice asks for db"),
        "{message}"
    );
    assert_eq!(header(&message, "Auto-Submitted"), Some("auto-generated"));
    assert!(header(&message, "Message-ID").unwrap().starts_with('<'));
    let body = message.split_once("\n\n").unwrap().1;
    assert!(body.contains("kind: request-filed\n"), "{body}");
    assert!(body.contains(&format!("request_id: {id}\n")), "{body}");
    assert!(body.contains(&format!("pim show {id}")), "{body}");
    // Nothing went wrong on pimd's side.
    assert!(!sb
        .audit_records("root", &[])
        .iter()
        .any(|r| r["action"] == "notify-failed"));
}
