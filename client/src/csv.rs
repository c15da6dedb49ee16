//! `pim audit --csv`: RFC 4180 (CRLF line ends, a header row, fields quoted when needed), with
//! control characters escaped and spreadsheet formulas defused.

use crate::time::rfc3339;
use pim_common::text::escape;
use pim_common::types::AuditRecord;

pub const HEADER: [&str; 13] = [
    "id", "at", "at_unix", "actor", "action", "user", "role", "outcome", "reason", "ticket",
    "detail", "prev", "hash",
];

/// One text cell: control characters escaped (`\x0a`), a leading `=`, `+`, `-` or `@`
/// prefixed with `'` so spreadsheets show it instead of evaluating it, and quoted when it holds
/// a comma, a quote or a line break.
pub fn text_cell(value: &str) -> String {
    let mut cell = escape(value);
    if cell.starts_with(['=', '+', '-', '@']) {
        cell.insert(0, '\'');
    }
    quote(&cell)
}

/// RFC 4180 quoting: wrap in `"` and double inner quotes when the field needs it.
fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

fn row(cells: &[String]) -> String {
    let mut line = cells.join(",");
    line.push_str("\r\n");
    line
}

/// The whole document: header and one row per record.
pub fn render(records: &[AuditRecord]) -> String {
    let mut out = row(&HEADER.map(String::from));
    for r in records {
        out.push_str(&row(&[
            r.id.to_string(),
            rfc3339(r.at).unwrap_or_default(),
            if r.at == 0 {
                String::new()
            } else {
                r.at.to_string()
            },
            text_cell(&r.actor),
            text_cell(r.action.as_str()),
            text_cell(&r.user),
            text_cell(&r.role),
            text_cell(r.outcome.as_str()),
            text_cell(&r.reason),
            text_cell(&r.ticket),
            text_cell(&r.detail),
            r.prev.clone(),
            r.hash.clone(),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pim_common::vocab::{AuditAction, Outcome};

    #[test]
    fn given_plain_text_then_cell_is_unchanged() {
        assert_eq!(text_cell("alice"), "alice");
        assert_eq!(text_cell(""), "");
        assert_eq!(text_cell("ünïcödé ok"), "ünïcödé ok");
    }

    #[test]
    fn given_commas_or_quotes_then_quoted_per_rfc4180() {
        assert_eq!(text_cell("a,b"), "\"a,b\"");
        assert_eq!(text_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn given_line_breaks_or_escapes_then_escaped_not_embedded() {
        assert_eq!(text_cell("a\nb"), "a\\x0ab");
        assert_eq!(text_cell("a\r\nb"), "a\\x0d\\x0ab");
        assert_eq!(text_cell("\x1b[31m"), "\\x1b[31m");
        assert_eq!(text_cell("tab\there"), "tab\\x09here");
    }

    #[test]
    fn given_formula_starters_then_prefixed_with_a_quote() {
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text_cell("+1"), "'+1");
        assert_eq!(text_cell("-2h"), "'-2h");
        assert_eq!(text_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(text_cell("a=b"), "a=b");
    }

    #[test]
    fn given_a_control_character_before_a_formula_then_still_defused() {
        // Escaping turns the tab into visible text, so the cell no longer starts with '='.
        assert_eq!(text_cell("\t=1"), "\\x09=1");
    }

    #[test]
    fn given_records_then_header_and_crlf_rows() {
        let records = vec![
            AuditRecord {
                id: 7,
                at: 1_795_269_600,
                actor: "alice".into(),
                action: AuditAction::Activate,
                user: "alice".into(),
                role: "admin".into(),
                outcome: Outcome::Success,
                reason: "deploy, then check".into(),
                ticket: "INC42".into(),
                detail: "=cmd|' /C calc'!A0".into(),
                prev: "0".repeat(64),
                hash: "ab".repeat(32),
            },
            AuditRecord {
                id: 8,
                actor: "pimd".into(),
                action: AuditAction::Expire,
                ..Default::default()
            },
        ];
        let csv = render(&records);
        let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
        assert_eq!(
            lines[0],
            "id,at,at_unix,actor,action,user,role,outcome,reason,ticket,detail,prev,hash"
        );
        assert_eq!(
            lines[1],
            format!(
                "7,2026-11-21T14:00:00Z,1795269600,alice,activate,alice,admin,success,\"deploy, then check\",INC42,'=cmd|' /C calc'!A0,{},{}",
                "0".repeat(64),
                "ab".repeat(32)
            )
        );
        // Every record has an outcome (`success` by default), so only the free texts are empty.
        assert_eq!(lines[2], "8,,,pimd,expire,,,success,,,,,");
        assert_eq!(lines.len(), 3);
        assert!(csv.ends_with("\r\n"));
        assert!(!csv.replace("\r\n", "").contains('\n'));
    }
}
