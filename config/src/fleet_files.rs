//! The files a `[fleet] database` string makes pimd trust, and the rule they must meet: only
//! root may change them (the CA file decides who may pose as the fleet's database), and the
//! passfile (the host's database password) only root may read. `pim doctor` judges them with
//! this rule before pimd needs them.

use crate::conninfo::{last, DEFAULT_SSLROOTCERT};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Who besides root may read a file pimd trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Anyone may read it (a CA certificate), only root write it.
    Anyone,
    /// Root only (mode 0600 or less): it holds a secret.
    RootOnly,
}

/// A file the connection string names (or implies), as pimd reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedFile {
    /// Its key in the string: `sslrootcert` or `passfile`.
    pub key: &'static str,
    pub path: PathBuf,
    pub readers: Readers,
}

/// The CA file (`sslrootcert`, or [`DEFAULT_SSLROOTCERT`] when the server is verified and
/// none is named, as libpq and pimd do) and the passfile, when named. `pairs` as
/// [`crate::conninfo::pairs`] gives them; the last of a key counts.
pub fn trusted_files(pairs: &[(String, String)]) -> Vec<TrustedFile> {
    let last = |key: &str| last(pairs, key);
    let mut files = Vec::new();
    let verifies = matches!(last("sslmode"), Some("verify-ca" | "verify-full"));
    match last("sslrootcert") {
        Some(path) if !path.is_empty() => files.push(TrustedFile {
            key: "sslrootcert",
            path: PathBuf::from(path),
            readers: Readers::Anyone,
        }),
        _ if verifies => files.push(TrustedFile {
            key: "sslrootcert",
            path: PathBuf::from(DEFAULT_SSLROOTCERT),
            readers: Readers::Anyone,
        }),
        _ => {}
    }
    if let Some(path) = last("passfile").filter(|p| !p.is_empty()) {
        files.push(TrustedFile {
            key: "passfile",
            path: PathBuf::from(path),
            readers: Readers::RootOnly,
        });
    }
    files
}

/// Whether `file` meets its rule: a regular file (not a link), root's, writable by root only
/// (and readable by root only for a secret), in directories only root can change (a sticky
/// one such as /tmp lets nobody else move root's files). The error says what is wrong.
pub fn check_trusted(file: &TrustedFile) -> Result<(), String> {
    let shown = file.path.display();
    let key = file.key;
    for dir in file
        .path
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
    {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{key} {shown}: {e}"))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{key} {shown}: its directory {} is not root's alone",
                dir.display()
            ));
        }
    }
    let meta = std::fs::symlink_metadata(&file.path).map_err(|e| format!("{key} {shown}: {e}"))?;
    judge_file(file, meta.is_file(), meta.uid(), meta.mode())
}

/// [`check_trusted`]'s rule for the file itself, from its type, owner and mode.
fn judge_file(file: &TrustedFile, regular: bool, uid: u32, mode: u32) -> Result<(), String> {
    let (key, shown) = (file.key, file.path.display());
    if !regular {
        return Err(format!("{key} {shown} is not a regular file"));
    }
    let mode = mode & 0o7777;
    let open = match file.readers {
        Readers::Anyone => mode & 0o022,
        Readers::RootOnly => mode & 0o077,
    };
    if uid != 0 || open != 0 {
        let wanted = match file.readers {
            Readers::Anyone => "owned by root and writable by root only (chmod 644)",
            Readers::RootOnly => "owned by root and readable by root only (chmod 600)",
        };
        return Err(format!(
            "{key} {shown} is owned by uid {uid} with mode {mode:04o}; it must be {wanted}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        crate::conninfo::pairs(text).unwrap()
    }

    #[test]
    fn given_verify_full_without_sslrootcert_then_libpqs_default_ca_file_and_the_passfile() {
        let files = trusted_files(&pairs(
            "host=db dbname=pim sslmode=verify-full passfile=/etc/pim/pgpass",
        ));
        assert_eq!(
            files,
            [
                TrustedFile {
                    key: "sslrootcert",
                    path: PathBuf::from(DEFAULT_SSLROOTCERT),
                    readers: Readers::Anyone,
                },
                TrustedFile {
                    key: "passfile",
                    path: PathBuf::from("/etc/pim/pgpass"),
                    readers: Readers::RootOnly,
                },
            ]
        );
    }

    #[test]
    fn given_a_unix_socket_without_tls_then_no_ca_file_is_trusted() {
        assert!(trusted_files(&pairs("host=/run/postgresql dbname=pim")).is_empty());
        let named = trusted_files(&pairs(
            "host=db sslmode=verify-full sslrootcert=/etc/ca.pem",
        ));
        assert_eq!(named[0].path, PathBuf::from("/etc/ca.pem"));
    }

    #[test]
    fn given_files_others_can_change_or_read_then_the_rule_says_what_is_wrong() {
        let ca = TrustedFile {
            key: "sslrootcert",
            path: PathBuf::from("/etc/pim/ca.pem"),
            readers: Readers::Anyone,
        };
        assert_eq!(judge_file(&ca, true, 0, 0o100644), Ok(()));
        let writable = judge_file(&ca, true, 0, 0o100664).unwrap_err();
        assert!(writable.contains("mode 0664"), "{writable}");
        assert!(judge_file(&ca, true, 1000, 0o100644).is_err());
        assert!(judge_file(&ca, false, 0, 0o120777)
            .unwrap_err()
            .contains("not a regular file"));
        let passfile = TrustedFile {
            key: "passfile",
            readers: Readers::RootOnly,
            ..ca
        };
        assert_eq!(judge_file(&passfile, true, 0, 0o100600), Ok(()));
        assert!(judge_file(&passfile, true, 0, 0o100640)
            .unwrap_err()
            .contains("readable by root only (chmod 600)"));
    }

    #[test]
    fn given_a_missing_file_then_the_check_names_it() {
        let missing = TrustedFile {
            key: "passfile",
            path: PathBuf::from("/nonexistent/pgpass"),
            readers: Readers::RootOnly,
        };
        let why = check_trusted(&missing).unwrap_err();
        assert!(why.starts_with("passfile /nonexistent/pgpass"), "{why}");
    }
}
