//! `pim audit verify`: the audit chain's check (see `pim_common::chain`), run by pimd over the
//! database (which only root reads), or here over an export (`--file`), with the same walk.

use crate::cli::VerifyArgs;
use crate::commands::{connect, emit, Outcome};
use crate::error::{Failure, EXIT_FAILED};
use pim_common::chain::{Head, KeptHead, Verification, Verifier};
use pim_common::text::escape;
use pim_common::types::AuditRecord;
use serde_json::{json, Value};

/// Exports bigger than this are refused rather than read whole into memory.
const MAX_EXPORT_BYTES: u64 = 4 << 30;

pub async fn run(a: VerifyArgs, json: bool) -> Result<Outcome, Failure> {
    let head = match &a.head {
        Some(text) => Some(text.parse::<Head>().map_err(Failure::Usage)?),
        None => None,
    };
    let report = if a.file.is_empty() {
        let proxy = connect().await?;
        proxy
            .verify_audit(&head.map(|h| h.to_string()).unwrap_or_default())
            .await?
    } else {
        verify_files(&a.file, head)?
    };
    let shown: Vec<String> = a.file.iter().map(|p| p.display().to_string()).collect();
    let source = (!shown.is_empty()).then(|| shown.join(", "));
    emit(
        json,
        || report_json(&report),
        || report_text(&report, source.as_deref()),
    )?;
    if report.ok() {
        Ok(Outcome::Done)
    } else {
        Err(Failure::Quiet(EXIT_FAILED))
    }
}

/// Walks the records of `pim --json audit` exports, in the order given: the pages of one
/// export (`--since` the last one's time again) share records, which are taken once.
fn verify_files(paths: &[std::path::PathBuf], head: Option<Head>) -> Result<Verification, Failure> {
    let heads = head
        .into_iter()
        .map(|head| KeptHead {
            head,
            source: "--head".into(),
        })
        .collect();
    let mut verifier = Verifier::for_slice(heads);
    let mut seen: std::collections::HashMap<i64, AuditRecord> = Default::default();
    let mut last_id = 0;
    for path in paths {
        for record in read_export(path)? {
            if record.id <= last_id {
                // Pages overlap by the records of their boundary's second: those are taken
                // once, and anything else out of order is refused.
                if seen.get(&record.id) == Some(&record) {
                    continue;
                }
                return Err(Failure::Failed(format!(
                    "{} is not in id order at record {}; give the output of 'pim --json audit', \
                     its pages in order",
                    escape(&path.display().to_string()),
                    record.id
                )));
            }
            last_id = record.id;
            seen.insert(record.id, record.clone());
            verifier.push(record);
            if verifier.done() {
                return Ok(verifier.finish());
            }
        }
    }
    Ok(verifier.finish())
}

/// The records of one `pim --json audit` export.
fn read_export(path: &std::path::Path) -> Result<Vec<AuditRecord>, Failure> {
    let shown = escape(&path.display().to_string());
    let size = std::fs::metadata(path)
        .map_err(|e| Failure::Failed(format!("cannot read {shown}: {e}")))?
        .len();
    if size > MAX_EXPORT_BYTES {
        return Err(Failure::Failed(format!(
            "{shown} is larger than {} GiB; split the export with --since",
            MAX_EXPORT_BYTES >> 30
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Failed(format!("cannot read {shown}: {e}")))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        Failure::Failed(format!(
            "{shown} is not JSON ({e}); give the output of 'pim --json audit'"
        ))
    })?;
    let records = doc["records"].as_array().ok_or_else(|| {
        Failure::Failed(format!(
            "{shown} has no \"records\" list; give the output of 'pim --json audit'"
        ))
    })?;
    records
        .iter()
        .enumerate()
        .map(|(n, value)| {
            record_of(value).ok_or_else(|| {
                Failure::Failed(format!(
                    "record {} of {shown} is not an audit record as 'pim --json audit' writes \
                     them",
                    n + 1
                ))
            })
        })
        .collect()
}

/// The record `pim --json audit` wrote as `value` (absent strings are null, `at` is
/// `at_unix`).
fn record_of(value: &Value) -> Option<AuditRecord> {
    let text = |key: &str| match &value[key] {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    Some(AuditRecord {
        id: value["id"].as_i64()?,
        at: match &value["at_unix"] {
            Value::Null => 0,
            v => v.as_i64()?,
        },
        actor: text("actor")?,
        action: text("action")?.parse().ok()?,
        user: text("user")?,
        role: text("role")?,
        outcome: text("outcome")?.parse().ok()?,
        reason: text("reason")?,
        ticket: text("ticket")?,
        detail: text("detail")?,
        prev: text("prev")?,
        hash: text("hash")?,
    })
}

fn id(n: i64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(n)
    }
}

fn text_or_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

pub fn report_json(r: &Verification) -> Value {
    json!({
        "ok": r.ok(),
        "checked": r.checked,
        "unchained": r.unchained,
        "first": id(r.first),
        "last": id(r.last),
        "head": if r.last == 0 { Value::Null } else { json!(format!("{}:{}", r.last, r.last_hash)) },
        "genesis": id(r.genesis),
        "pruned_through": id(r.pruned_through),
        "heads_checked": r.heads_checked,
        "heads_pruned": r.heads_pruned,
        "break": if r.ok() {
            Value::Null
        } else {
            json!({
                "kind": r.break_kind,
                "record": id(r.break_record),
                "detail": text_or_null(&r.break_detail),
            })
        },
    })
}

pub fn report_text(r: &Verification, file: Option<&str>) -> String {
    let what = match file {
        Some(file) => format!("the audit chain in {}", escape(file)),
        None => "the audit chain".to_string(),
    };
    let mut out = String::new();
    if r.ok() {
        out.push_str(&format!("{what} holds: {} record(s) checked", r.checked));
        if r.checked > 0 {
            out.push_str(&format!(", {} to {}", r.first, r.last));
        }
        out.push('\n');
    } else {
        out.push_str(&format!(
            "{what} is broken at record {} ({}): {}\n",
            r.break_record,
            r.break_kind,
            escape(&r.break_detail)
        ));
        out.push_str(&format!(
            "{} record(s) before it checked and good\n",
            r.checked
        ));
    }
    if r.genesis != 0 {
        out.push_str(&format!("starts at the genesis, record {}\n", r.genesis));
    }
    if r.pruned_through != 0 {
        out.push_str(&format!(
            "starts after record {}, removed by retention (its checkpoint holds)\n",
            r.pruned_through
        ));
    }
    if r.unchained != 0 {
        out.push_str(&format!(
            "{} older record(s) from before the chain began are not verifiable\n",
            r.unchained
        ));
    }
    if r.ok() && r.last != 0 {
        out.push_str(&format!("head {}:{}\n", r.last, r.last_hash));
    }
    for head in &r.heads_checked {
        out.push_str(&format!("matches the head kept: {}\n", escape(head)));
    }
    for head in &r.heads_pruned {
        out.push_str(&format!(
            "not judged (its record was removed by retention): {}\n",
            escape(head)
        ));
    }
    if file.is_some() && r.ok() && r.genesis == 0 && r.pruned_through == 0 && r.checked > 0 {
        out.push_str(
            "the export does not start at the genesis or a checkpoint: only its records' links \
             to each other were checked\n",
        );
    }
    out
}

#[cfg(test)]
mod tests;
