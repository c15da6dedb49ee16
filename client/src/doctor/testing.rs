//! What the tests of doctor's parts share: scratch directories, in-memory file trees and
//! configurations read as pimd reads them.

use crate::doctor::checks::config::ConfigFile;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A scratch directory removed on drop (no extra crate for it).
pub struct Dir {
    pub path: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let path = std::env::temp_dir().join(format!(
            "pim-doctor-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Dir { path }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Files by path, for the readers the PAM and sudoers parts take.
pub fn files(entries: &[(&str, &str)]) -> HashMap<PathBuf, String> {
    entries
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect()
}

/// Every user and group exists.
pub struct EveryAccount;

impl pim_config::Directory for EveryAccount {
    fn user_exists(&self, _: &str) -> bool {
        true
    }
    fn group_exists(&self, _: &str) -> bool {
        true
    }
}

/// `text` as pimd reads /etc/pim/pim.toml (every account existing); it must be valid.
pub fn config_file(text: &str) -> ConfigFile {
    let (model, problems) = pim_config::parse(text, "/etc/pim/pim.toml", &EveryAccount);
    ConfigFile {
        path: PathBuf::from("/etc/pim/pim.toml"),
        model: model.unwrap_or_else(|| panic!("{problems:?}")),
    }
}
