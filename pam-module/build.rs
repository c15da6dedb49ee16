//! Links the unwinder (libgcc_eh.a) into pam_pim.so instead of depending on libgcc_s.so.1.
//!
//! sudo does not load libgcc_s itself, so with the default link every sudo pays for opening,
//! mapping and relocating one more library: measured at about 0.1 ms per sudo, a tenth of the
//! module's budget (README, Performance). Unwinding (and so `catch_unwind` at the PAM boundary)
//! works the same with the static copy; the linker's version script keeps its symbols private.
//! Without a C toolchain that has libgcc_eh.a, the default link is kept.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    match libgcc_eh_dir() {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
        }
        None => println!(
            "cargo:warning=libgcc_eh.a not found: pam_pim.so will depend on libgcc_s.so.1 \
             (slower to load in every sudo)"
        ),
    }
}

/// Where the target's C compiler keeps libgcc_eh.a (`cc -print-file-name` echoes the bare
/// name when it has none).
fn libgcc_eh_dir() -> Option<PathBuf> {
    let out = Command::new(target_cc())
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !out.status.success() || !path.is_absolute() || !path.is_file() {
        return None;
    }
    path.parent().map(PathBuf::from)
}

/// The C compiler for the target, found the way the `cc` crate looks for it: `CC_<target>`,
/// `TARGET_CC`, then `CC`; `cc` if none is set.
fn target_cc() -> String {
    let target = std::env::var("TARGET").unwrap_or_default();
    let names = [
        format!("CC_{target}"),
        format!("CC_{}", target.replace('-', "_")),
        "TARGET_CC".to_string(),
        "CC".to_string(),
    ];
    for name in &names {
        println!("cargo:rerun-if-env-changed={name}");
    }
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "cc".to_string())
}
