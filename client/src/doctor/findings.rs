//! What a check found, and the report made of the findings (text for people, JSON for tools).

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// What one check found. `message` and `fix` are printable (escaped) already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Pass,
            message: message.into(),
            fix: None,
        }
    }

    pub fn skip(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Skip,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warn(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

pub fn report_json(findings: &[Finding], root: bool) -> Value {
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    json!({
        "ok": count(Status::Fail) == 0,
        "root": root,
        "passed": count(Status::Pass),
        "warnings": count(Status::Warn),
        "failed": count(Status::Fail),
        "skipped": count(Status::Skip),
        "checks": findings.iter().map(|f| json!({
            "check": f.check,
            "status": f.status.word(),
            "message": f.message,
            "fix": f.fix,
        })).collect::<Vec<_>>(),
    })
}

pub fn report_text(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        let tag = match f.status {
            Status::Pass => "[ ok ]",
            Status::Skip => "[skip]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        out.push_str(&format!(
            "{tag} {:<width$}  {}\n",
            f.check,
            f.message,
            width = width
        ));
        if let Some(fix) = &f.fix {
            out.push_str(&format!(
                "       {:<width$}  fix: {fix}\n",
                "",
                width = width
            ));
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    let (failed, warned, skipped) = (
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Skip),
    );
    out.push('\n');
    out.push_str(&if failed == 0 && warned == 0 {
        format!("No problems found ({} checks", count(Status::Pass))
    } else {
        format!(
            "{failed} problem(s), {warned} warning(s) ({} checks passed",
            count(Status::Pass)
        )
    });
    if skipped > 0 {
        out.push_str(&format!(", {skipped} skipped"));
    }
    out.push_str(").\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::NEEDS_ROOT;

    #[test]
    fn reports_count_and_escape() {
        let findings = vec![
            Finding::pass("daemon", "fine"),
            Finding::warn("group-source", "static", "add it"),
            Finding::fail("sudo-pam", "missing", "pam-auth-update --enable pim"),
            Finding::skip("config", NEEDS_ROOT),
        ];
        let text = report_text(&findings);
        assert!(text.contains("[FAIL] sudo-pam"), "{text}");
        assert!(text.contains("fix: pam-auth-update --enable pim"), "{text}");
        assert!(text.contains("1 problem(s), 1 warning(s) (1 checks passed, 1 skipped)."));
        let doc = report_json(&findings, false);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["failed"], 1);
        assert_eq!(doc["checks"][2]["status"], "fail");
        assert_eq!(doc["checks"][0]["fix"], Value::Null);
        let ok = report_text(&[Finding::pass("daemon", "fine")]);
        assert!(ok.ends_with("No problems found (1 checks).\n"), "{ok}");
    }
}
