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

/// `notify_command` is `notify` (a TOML list).
fn config(notify: &str) -> String {
    format!(
        r#"[daemon]
admins = ["%pim-admins"]
notify_command = {notify}

[roles.db]
group = "dbadmin"
eligible = ["alice"]
require_mfa = false
require_approval = true
approvers = ["bob", "%dbleads"]
"#
    )
}

/// A sandbox with alice (who asks for db), bob (its approver), erin (an approver through
/// %dbleads) and frank (an admin through %pim-admins), and `files` (path, contents, mode).
fn site(files: &[(&str, &str, u32)]) -> Sandbox {
    let sb = Sandbox::start();
    for group in ["pim-admins", "dbleads", "dbadmin"] {
        sb.add_group(group);
    }
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.add_user("erin", &["dbleads"]);
    sb.add_user("frank", &["pim-admins"]);
    for (path, contents, mode) in files {
        sb.write_file(path, contents, *mode);
    }
    sb
}

/// alice asks for db (exit 3: waiting for approval); the request's id.
fn request(sb: &Sandbox) -> i64 {
    let out = sb.run(
        "alice",
        &["pim", "--json", "activate", "db", "-d", "30m", "-r", REASON],
    );
    out.assert_status(3);
    out.json()["request"]["id"].as_i64().unwrap()
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
    let sb = site(&[
        (
            ADAPTER,
            include_str!("../../packaging/notify/pim-notify-mail"),
            0o755,
        ),
        (SENDMAIL, FAKE_SENDMAIL, 0o755),
    ]);
    let notify = format!(
        "[\"{ADAPTER}\", \"--domain\", \"example.org\", \"--host\", \"web7\", \"--sendmail\", \
         \"{SENDMAIL}\"]"
    );
    sb.write_file(CONFIG_PATH, &config(&notify), 0o644);
    sb.start_pimd();
    let id = request(&sb);
    // Every event is mailed: the weak-role alert role db raises at start comes first.
    let request_mail = || {
        mail(&sb)
            .into_iter()
            .find(|(_, message)| message.contains("\nkind: request-filed\n"))
    };
    sb.wait_until("the request's mail", DEADLINE, || request_mail().is_some());
    let (args, message) = request_mail().unwrap();
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

const WEBHOOK: &str = "/etc/pim/pim-notify-webhook";
const HOOKS: &str = "/var/log/fake-hook";

/// A stand-in endpoint on 127.0.0.1:8089: each POST's headers and body, in a file of its own.
const FAKE_ENDPOINT: &str = r#"
import http.server, json, os, time
os.makedirs("/var/log/fake-hook", exist_ok=True)
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen = {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        name = "/var/log/fake-hook/%d" % time.time_ns()
        with open(name + ".tmp", "w") as f:
            json.dump(seen, f)
        os.rename(name + ".tmp", name + ".json")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", 8089), Hook).serve_forever()
"#;

#[test]
fn given_the_webhook_adapter_then_a_request_is_posted_as_json_with_its_text_and_token() {
    let sb = site(&[
        (
            WEBHOOK,
            include_str!("../../packaging/notify/pim-notify-webhook"),
            0o755,
        ),
        (
            "/etc/pim/hook-headers",
            "Authorization: Bearer s3cret\n",
            0o600,
        ),
    ]);
    sb.run("root", &["ip", "link", "set", "lo", "up"])
        .assert_success();
    let mut endpoint = sb.spawn("root", &["python3", "-c", FAKE_ENDPOINT]);
    endpoint.wait_for_stdout("listening", DEADLINE);
    let notify = format!(
        "[\"{WEBHOOK}\", \"http://127.0.0.1:8089/hook\", \"--header-file\", \
         \"/etc/pim/hook-headers\", \"--host\", \"web7\"]"
    );
    sb.write_file(CONFIG_PATH, &config(&notify), 0o644);
    sb.start_pimd();
    let id = request(&sb);
    // Every event is posted: the weak-role alert role db raises at start comes first.
    let request_post = || {
        let posts = sb.sh("root", &format!("ls {HOOKS}/*.json 2>/dev/null | sort"));
        posts.stdout.lines().find_map(|path| {
            let seen: serde_json::Value = serde_json::from_str(&sb.read_file(path)).ok()?;
            (seen["body"]["kind"] == "request-filed").then_some(seen)
        })
    };
    sb.wait_until("the request's POST", DEADLINE, || request_post().is_some());
    let seen = request_post().unwrap();
    assert_eq!(seen["path"], "/hook");
    assert_eq!(seen["headers"]["Authorization"], "Bearer s3cret", "{seen}");
    assert_eq!(
        seen["headers"]["Content-Type"], "application/json",
        "{seen}"
    );
    let body = &seen["body"];
    assert_eq!(body["kind"], "request-filed", "{body}");
    assert_eq!(body["request_id"], id, "{body}");
    assert_eq!(body["host"], "web7", "{body}");
    assert_eq!(
        body["text"],
        format!(
            "[pim web7] request-filed alice db request {id}: {REASON} (for alice, bob, erin, \
             frank)"
        ),
        "{body}"
    );
    assert_eq!(body["recipients"][1]["name"], "bob", "{body}");
    endpoint.kill();
}
