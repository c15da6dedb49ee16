//! User-supplied text: bounds, control characters, and escaping for logs and terminals.

/// Longest reason or comment accepted, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest ticket reference accepted, in bytes.
pub const MAX_TICKET_BYTES: usize = 128;
/// Longest user, group or role name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Checks a piece of user text: at most `max` bytes, no control characters (which could forge
/// log lines or drive a terminal). `what` names the field in the error message.
pub fn check(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|&c| is_unsafe(c)) {
        return Err(format!(
            "{what} contains the control character {}; use plain text",
            c.escape_unicode()
        ));
    }
    Ok(())
}

/// Checks a user, group or role name: 1 to 64 bytes of letters, digits, `.`, `_`, `-` (and a
/// trailing `$` as useradd allows), not starting with `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('-')
        && name.char_indices().all(|(i, c)| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-')
                || (c == '$' && i == name.len() - 1)
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} '{}' is not a valid name (letters, digits, '.', '_', '-'; at most {MAX_NAME_BYTES} bytes)",
            escape(name)
        ))
    }
}

/// Characters that must not reach a log or a terminal raw: control characters, and the
/// invisible formatting ones that reorder or hide text (bidirectional overrides and isolates,
/// zero-width characters, the byte order mark).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}')
}

/// User text as an audit record keeps it: unchanged when it would have been accepted (at most
/// `max` bytes, no control characters), so one reason reads the same in every record; otherwise
/// escaped and cut to `max` bytes, so a refused input can neither forge lines nor bloat the log.
pub fn for_record(text: &str, max: usize) -> String {
    if check("", text, max).is_ok() {
        return text.to_string();
    }
    let mut escaped = escape(text);
    if escaped.len() > max {
        let mut cut = max;
        while !escaped.is_char_boundary(cut) {
            cut -= 1;
        }
        escaped.truncate(cut);
        escaped.push_str("...");
    }
    escaped
}

/// Escapes control characters (and backslashes) so that text is safe in syslog and on a
/// terminal: `\n` becomes `\x0a`, `\` becomes `\\`. Printable text is unchanged, and the
/// result reads back unambiguously.
pub fn escape(text: &str) -> String {
    escape_with(text, true)
}

/// Escapes only the characters [`is_unsafe`] names, leaving backslashes alone: the last guard
/// for a line whose user-given parts were already [`escape`]d (escaping their backslashes
/// twice would only make them harder to read).
pub fn escape_unsafe(text: &str) -> String {
    escape_with(text, false)
}

fn escape_with(text: &str, backslashes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' if backslashes => out.push_str("\\\\"),
            c if is_unsafe(c) => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{code:x}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_plain_text_within_bound_then_accepted() {
        assert_eq!(check("reason", "deploy hotfix for INC42", 1024), Ok(()));
        assert_eq!(check("reason", "ünïcödé is fine", 1024), Ok(()));
    }

    #[test]
    fn given_text_over_bound_then_refused_with_sizes() {
        let err = check("reason", &"a".repeat(1025), 1024).unwrap_err();
        assert!(
            err.contains("1025 bytes") && err.contains("at most 1024"),
            "{err}"
        );
    }

    #[test]
    fn given_control_characters_then_refused() {
        for bad in [
            "a\nb",
            "a\rb",
            "\x1b[31mred",
            "tab\there",
            "nul\0",
            "del\x7f",
            "c1\u{9b}",
        ] {
            let err = check("reason", bad, 1024).unwrap_err();
            assert!(err.contains("control character"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn given_names_then_only_safe_ones_pass() {
        for good in ["alice", "svc_backup", "a.b-c", "machine$", "x"] {
            assert_eq!(check_name("user", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-rf",
            "a b",
            "a/b",
            "al$ice",
            "é",
            &"a".repeat(65),
            "a\n",
        ] {
            assert!(check_name("user", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_acceptable_text_then_the_record_keeps_it_verbatim() {
        assert_eq!(for_record("copy C:\\temp\\x0a", 1024), "copy C:\\temp\\x0a");
    }

    #[test]
    fn given_refused_text_then_the_record_is_escaped_and_bounded() {
        assert_eq!(for_record("a\nb", 1024), "a\\x0ab");
        let long = for_record(&"\n".repeat(600), 1024);
        assert!(
            long.len() <= 1027 && long.ends_with("..."),
            "{}",
            long.len()
        );
        assert!(!long.chars().any(|c| c.is_control()));
    }

    #[test]
    fn given_invisible_formatting_characters_then_refused_and_escaped() {
        for bad in [
            "abc\u{202E}fed",
            "zero\u{200B}width",
            "\u{2066}isolate",
            "bom\u{FEFF}",
        ] {
            assert!(check("reason", bad, 1024).is_err(), "{bad:?}");
            assert!(!escape(bad).chars().any(is_unsafe), "{bad:?}");
        }
        assert_eq!(escape("a\u{202E}b"), "a\\u{202e}b");
    }

    #[test]
    fn given_control_characters_then_escape_makes_them_visible() {
        assert_eq!(escape("a\nb"), "a\\x0ab");
        assert_eq!(escape("\x1b[0m"), "\\x1b[0m");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("c1\u{9b}"), "c1\\x9b");
        assert_eq!(escape("plain ü"), "plain ü");
    }
}
