//! Is the database (TOTP secrets, the audit log) root's alone, where pimd.service may write it?

use super::config::ConfigFile;
use crate::doctor::findings::Finding;
use crate::doctor::show;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory the systemd unit makes writable for the database (StateDirectory=pim).
const STATE_DIRECTORY: &str = "/var/lib/pim";
/// What pimd.service keeps read-only to pimd (ProtectSystem=true, ReadOnlyPaths=/run).
const READ_ONLY_TO_PIMD: [&str; 4] = ["/usr", "/boot", "/efi", "/run"];

/// Whether a directory or file is root's alone.
pub fn private_problem(uid: u32, mode: u32, want: u32) -> Option<String> {
    let mode = mode & 0o7777;
    if uid != 0 {
        Some(format!("is owned by uid {uid}, not root"))
    } else if mode & 0o077 != 0 {
        Some(format!("is mode {mode:04o}, not {want:04o}"))
    } else {
        None
    }
}

/// The top directory of `path` that pimd.service keeps read-only, if any.
fn read_only_to_pimd(path: &Path) -> Option<&'static str> {
    READ_ONLY_TO_PIMD
        .into_iter()
        .find(|top| path.starts_with(top))
}

pub fn check_database(config: &ConfigFile) -> Finding {
    const CHECK: &str = "database";
    let db = &config.model.daemon.database;
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Finding::fail(
            CHECK,
            format!("database = {} has no directory", show(db)),
            "give an absolute path in [daemon] database",
        );
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(_) => {
            return Finding::pass(
                CHECK,
                format!(
                    "{} does not exist yet; pimd creates it (0700) when it first starts",
                    show(dir)
                ),
            )
        }
    };
    if let Some(problem) = private_problem(meta.uid(), meta.mode(), 0o700) {
        return Finding::fail(
            CHECK,
            format!(
                "{} {problem}: it holds TOTP secrets and the audit log",
                show(dir)
            ),
            format!("chown root:root {0} && chmod 700 {0}", show(dir)),
        );
    }
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(meta) = std::fs::symlink_metadata(&file) {
            if let Some(problem) = private_problem(meta.uid(), meta.mode(), 0o600) {
                return Finding::fail(
                    CHECK,
                    format!("{} {problem}", show(&file)),
                    format!("chown root:root {0} && chmod 600 {0}", show(&file)),
                );
            }
            files.push(file);
        }
    }
    let read_only = read_only_to_pimd(db);
    if let Some(top) = read_only.filter(|_| Path::new("/run/systemd/system").is_dir()) {
        return Finding::warn(
            CHECK,
            format!(
                "the database is under {top}, which pimd.service keeps read-only to pimd{}",
                if top == "/run" {
                    " (all but /run/pim, which goes when pimd stops)"
                } else {
                    ""
                }
            ),
            format!("set [daemon] database to a file in {STATE_DIRECTORY}"),
        );
    }
    if files.is_empty() {
        Finding::pass(
            CHECK,
            format!(
                "{} is root's alone (0700); {} does not exist yet",
                show(dir),
                show(db)
            ),
        )
    } else {
        Finding::pass(
            CHECK,
            format!("{} (0700) and {} are root's alone", show(dir), show(db)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_units_read_only_places_then_a_database_there_is_found_and_elsewhere_not() {
        let unit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/pimd.service"),
        )
        .unwrap();
        for line in ["ProtectSystem=true", "ReadOnlyPaths=/run"] {
            assert!(
                unit.lines().any(|l| l == line),
                "the unit no longer has {line}: change READ_ONLY_TO_PIMD too"
            );
        }
        assert_eq!(
            read_only_to_pimd(Path::new("/usr/local/pim/pim.db")),
            Some("/usr")
        );
        assert_eq!(
            read_only_to_pimd(Path::new("/run/pim/pim.db")),
            Some("/run")
        );
        for writable in ["/var/lib/pim/pim.db", "/srv/pim/pim.db", "/usrdata/pim.db"] {
            assert_eq!(read_only_to_pimd(Path::new(writable)), None, "{writable}");
        }
    }

    #[test]
    fn private_problems_name_owner_and_mode() {
        assert_eq!(private_problem(0, 0o40700, 0o700), None);
        assert_eq!(private_problem(0, 0o100600, 0o600), None);
        assert!(private_problem(1000, 0o700, 0o700)
            .unwrap()
            .contains("uid 1000"));
        assert!(private_problem(0, 0o755, 0o700).unwrap().contains("0755"));
    }
}
