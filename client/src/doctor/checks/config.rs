//! The configuration file: owned by root and not writable by others, and valid as pimd judges
//! it (the same `pim-config` crate reads it here); and pimd's answer to the last reload.

use super::HostAccounts;
use crate::doctor::findings::Finding;
use crate::doctor::show;
use pim_common::reload::LastReload;
use pim_common::text::escape;
use pim_config::{Config, Problem, Severity};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most lines of pimd's output quoted in one finding.
const MAX_QUOTED_LINES: usize = 6;

/// The configuration as pimd reads it, and the file it was read from.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub model: Config,
}

/// Checks who may change the file, then judges it with pimd's own reader. The model comes
/// back only when pimd would take the file (no error), for the checks that depend on it.
pub fn check_config(path: &Path) -> (Vec<Finding>, Option<ConfigFile>) {
    const CHECK: &str = "config";
    let mut findings = Vec::new();
    let shown = show(path);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            findings.push(Finding::fail(
                CHECK,
                format!("cannot read {shown}: {}", escape(&e.to_string())),
                "reinstall the package to get the commented example, or pass --config PATH",
            ));
            return (findings, None);
        }
    };
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 || mode & 0o022 != 0 {
        findings.push(Finding::fail(
            CHECK,
            format!(
                "{shown} is owned by uid {} with mode {mode:04o}: someone other than root could \
                 change who becomes root",
                meta.uid()
            ),
            format!("chown root:root {shown} && chmod 600 {shown}"),
        ));
    } else if mode & 0o044 != 0 {
        findings.push(Finding::warn(
            CHECK,
            format!("{shown} is mode {mode:04o}: readable by others (the package ships it 0600)"),
            format!("chmod 600 {shown}"),
        ));
    }
    let (model, problems) = pim_config::load(path, &HostAccounts);
    findings.push(judge_problems(path, &problems));
    let loaded = model.map(|model| ConfigFile {
        path: path.to_path_buf(),
        model,
    });
    (findings, loaded)
}

/// The finding for what pimd's reader says of the file: what `pimd --check-config` prints.
fn judge_problems(path: &Path, problems: &[Problem]) -> Finding {
    const CHECK: &str = "config";
    let shown = show(path);
    let (errors, warnings): (Vec<&Problem>, Vec<&Problem>) =
        problems.iter().partition(|p| p.severity == Severity::Error);
    // As pimd --check-config prints them, without the "warning: " that the finding says.
    let lines = |problems: Vec<&Problem>| -> Vec<String> {
        problems
            .into_iter()
            .map(|p| {
                let line = p.to_string();
                escape(line.strip_prefix("warning: ").unwrap_or(&line))
            })
            .collect()
    };
    if !errors.is_empty() {
        return Finding::fail(
            CHECK,
            format!(
                "pimd would not start with {shown}: {}",
                quoted(&lines(errors))
            ),
            format!(
                "fix what 'pimd --check-config --config {shown}' lists, then systemctl restart pimd"
            ),
        );
    }
    if warnings.is_empty() {
        Finding::pass(CHECK, format!("{shown} is valid"))
    } else {
        Finding::warn(
            CHECK,
            format!(
                "{shown} is valid, with warnings: {}",
                quoted(&lines(warnings))
            ),
            format!("see 'pimd --check-config --config {shown}'"),
        )
    }
}

/// Up to [`MAX_QUOTED_LINES`] of pimd's lines (its problems, or its reload's), in one line.
fn quoted(lines: &[String]) -> String {
    let mut text = lines
        .iter()
        .take(MAX_QUOTED_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > MAX_QUOTED_LINES {
        text.push_str(&format!("; and {} more", lines.len() - MAX_QUOTED_LINES));
    }
    text
}

/// pimd's answer to the last reload, which it leaves at `path` (root's alone). A failed one
/// means pimd runs another configuration than the file says, and, when the file has errors,
/// that pimd would not start again (break-glass must not depend on it: see pam_pim(8)).
pub fn check_reload(path: &Path, pimd_running: bool) -> Finding {
    const CHECK: &str = "reload";
    if !pimd_running {
        // No configuration is running: the next start reads the file as it is now.
        return Finding::skip(
            CHECK,
            "skipped: pimd is not running (see the daemon check); its next start reads the \
             configuration file as it is",
        );
    }
    let shown = show(path);
    let (text, modified) = match std::fs::read_to_string(path).and_then(|text| {
        let modified = std::fs::metadata(path)?.modified()?;
        Ok((text, modified))
    }) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Finding::pass(
            CHECK,
            "no failed reload: pimd runs the configuration it started or was last reloaded with",
        ),
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("cannot read {shown}: {}", escape(&e.to_string())),
                "make it readable by root, or restart pimd (systemctl restart pimd)",
            )
        }
    };
    let when = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| crate::time::rfc3339(d.as_secs() as i64))
        .unwrap_or_else(|| "-".into());
    match LastReload::parse(&text) {
        Ok(reload) if reload.ok => {
            Finding::pass(CHECK, format!("the last reload ({when}) succeeded"))
        }
        Ok(reload) => Finding::fail(
            CHECK,
            format!(
                "the last reload ({when}) failed, so pimd still runs the configuration it had \
                 before: {}",
                quoted(&reload.messages)
            ),
            "fix what the message says ('pimd --check-config' lists the file's problems), then \
             systemctl reload pimd",
        ),
        Err(e) => Finding::fail(
            CHECK,
            format!("{shown} is not pimd's answer to a reload: {}", escape(&e)),
            "remove it, then systemctl reload pimd",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;
    use crate::doctor::testing::Dir;
    use pim_config::Principal;

    #[test]
    fn given_a_config_file_then_doctor_reads_database_groups_and_permanent_as_pimd_does() {
        let dir = Dir::new();
        let path = dir.path.join("pim.toml");
        let text = r#"
[daemon]
database = "/srv/pim/pim.db"
[roles.admin]
group = "sudo"
permanent = ["root2", "%breakglass"]
[roles.docker]
"#;
        std::fs::write(&path, text).unwrap();
        let (_, loaded) = check_config(&path);
        let s = loaded.expect("a valid configuration").model;
        assert_eq!(s.daemon.database, PathBuf::from("/srv/pim/pim.db"));
        assert_eq!(s.roles["admin"].group, "sudo");
        assert_eq!(
            s.roles["admin"].permanent,
            [
                Principal::User("root2".into()),
                Principal::Group("breakglass".into())
            ]
        );
        assert_eq!(s.roles["docker"].group, "docker");
        assert!(s.roles["docker"].permanent.is_empty());

        std::fs::write(&path, "# nothing\n").unwrap();
        let (_, loaded) = check_config(&path);
        let empty = loaded.expect("an empty file is valid").model;
        assert_eq!(empty.daemon.database, PathBuf::from("/var/lib/pim/pim.db"));
        assert!(empty.roles.is_empty());

        std::fs::write(&path, "[roles\n").unwrap();
        let (findings, loaded) = check_config(&path);
        assert!(loaded.is_none());
        let judged = findings.last().expect("a finding on the file's content");
        assert_eq!(judged.status, Status::Fail, "{findings:?}");
        assert!(
            judged.message.contains("pimd would not start with"),
            "{judged:?}"
        );
    }

    #[test]
    fn given_pimd_answers_to_reloads_then_only_a_failed_or_unreadable_one_fails() {
        let dir = Dir::new();
        let path = dir.path.join("last-reload");
        let none = check_reload(&path, true);
        assert_eq!(none.status, Status::Pass, "{none:?}");

        let failed = LastReload {
            ok: false,
            received: 1,
            messages: vec![
                "/etc/pim/pim.toml:2: roles.web.max_duration: 48h is over the 24h cap".into(),
            ],
        };
        std::fs::write(&path, failed.to_text()).unwrap();
        let finding = check_reload(&path, true);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
        assert!(
            finding
                .message
                .contains("still runs the configuration it had"),
            "{finding:?}"
        );
        assert!(
            finding
                .message
                .contains("pim.toml:2: roles.web.max_duration"),
            "{finding:?}"
        );
        assert!(finding
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("systemctl reload pimd"));

        let ok = LastReload {
            ok: true,
            received: 2,
            messages: vec![],
        };
        std::fs::write(&path, ok.to_text()).unwrap();
        assert_eq!(check_reload(&path, true).status, Status::Pass);

        std::fs::write(&path, "whatever\n").unwrap();
        let garbage = check_reload(&path, true);
        assert_eq!(garbage.status, Status::Fail, "{garbage:?}");
        assert!(garbage.message.contains("'whatever'"), "{garbage:?}");
    }

    #[test]
    fn given_pimd_not_running_then_the_reload_check_says_so_instead_of_passing() {
        let dir = Dir::new();
        // No /run/pim (pimd is down), or an answer left behind by the pimd that ended.
        let none = check_reload(&dir.path.join("pim/last-reload"), false);
        assert_eq!(none.status, Status::Skip, "{none:?}");
        assert!(none.message.contains("pimd is not running"), "{none:?}");
        let path = dir.path.join("last-reload");
        std::fs::write(&path, "ok\nreceived 1\n").unwrap();
        let left = check_reload(&path, false);
        assert_eq!(left.status, Status::Skip, "{left:?}");
        assert!(!left.message.contains("runs the configuration"), "{left:?}");
    }
}
