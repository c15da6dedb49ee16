//! User-supplied text: bounds, control characters, and escaping for logs and terminals.

/// Longest reason or comment accepted, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest ticket reference accepted, in bytes.
pub const MAX_TICKET_BYTES: usize = 128;
/// Longest user, group or role name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest TOTP or recovery code argument accepted, in bytes (either is far shorter; this
/// leaves room for spaces and dashes a person may type).
pub const MAX_CODE_BYTES: usize = 64;

/// Checks only the length of `text`: at most `max` bytes. It reads nothing but the length, so
/// it is the first check on anything a caller sends, before any other work on it.
pub fn check_len(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            text.len()
        ));
    }
    Ok(())
}

/// Checks a piece of user text: at most `max` bytes, no control characters (which could forge
/// log lines or drive a terminal) and no invisible formatting or separator characters (see
/// [`is_unsafe`]). `what` names the field in the error message.
pub fn check(what: &str, text: &str, max: usize) -> Result<(), String> {
    check_len(what, text, max)?;
    if let Some(c) = text.chars().find(|&c| is_unsafe(c)) {
        let kind = match c {
            '\u{2028}' => "line separator",
            '\u{2029}' => "paragraph separator",
            c if c.is_control() => "control character",
            _ => "invisible formatting character",
        };
        return Err(format!(
            "{what} contains the {kind} {}; use plain text",
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

/// Characters that must not reach a log or a terminal raw: every character of Unicode general
/// category Cc (control), Cf (format), Zl (line separator) and Zp (paragraph separator).
/// Controls can forge log lines or drive a terminal; format characters are invisible and can
/// hide or reorder what an auditor reads (bidirectional overrides, isolates and marks,
/// zero-width characters, tags, the soft hyphen); U+2028 and U+2029 break a line in some
/// viewers. Everything else (letters of any script, symbols, emoji, combining marks) is text.
///
/// The one definition in the workspace: the daemon, the client and the PAM module reach it
/// through [`check`], [`escape`] and [`escape_unsafe`].
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_format_or_separator(c)
}

/// General categories Cf, Zl and Zp, as of Unicode 15.0 (the same in 16.0 and 17.0; 15.0 added
/// U+13439..U+1343F, 14.0 U+0890..U+0891). Rust's standard library has no general-category
/// query for these, and one table is cheaper than a crate. Two runs also take the reserved
/// code points inside them, U+2065 and U+E0000, U+E0002..U+E001F: Unicode makes them
/// default-ignorable, so renderers show them as nothing even before they are assigned.
fn is_format_or_separator(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                   // soft hyphen
        | '\u{0600}'..='\u{0605}'    // Arabic number signs
        | '\u{061C}'                 // Arabic letter mark (bidi)
        | '\u{06DD}'                 // Arabic end of ayah
        | '\u{070F}'                 // Syriac abbreviation mark
        | '\u{0890}'..='\u{0891}'    // Arabic pound and piastre marks above
        | '\u{08E2}'                 // Arabic disputed end of ayah
        | '\u{180E}'                 // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}'    // zero-width space, (non-)joiner, LRM, RLM
        | '\u{2028}'                 // line separator (Zl)
        | '\u{2029}'                 // paragraph separator (Zp)
        | '\u{202A}'..='\u{202E}'    // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'    // word joiner, invisible operators, bidi isolates,
                                     // deprecated format characters (U+2065 reserved)
        | '\u{FEFF}'                 // zero-width no-break space, byte order mark
        | '\u{FFF9}'..='\u{FFFB}'    // interlinear annotation
        | '\u{110BD}'                // Kaithi number sign
        | '\u{110CD}'                // Kaithi number sign above
        | '\u{13430}'..='\u{1343F}'  // Egyptian hieroglyph format controls
        | '\u{1BCA0}'..='\u{1BCA3}'  // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'  // musical symbol beam and phrase controls
        | '\u{E0000}'..='\u{E007F}'  // tags (U+E0001, U+E0020..; the rest reserved)
    )
}

/// User text as an audit record keeps it: unchanged when it would have been accepted (at most
/// `max` bytes, no control characters), so one reason reads the same in every record; otherwise
/// escaped and cut to `max` bytes, so a refused input can neither forge lines nor bloat the log.
pub fn for_record(text: &str, max: usize) -> String {
    if check("", text, max).is_ok() {
        return text.to_string();
    }
    // Only the part that can show is escaped: escaping the whole of a huge refused input would
    // cost time and memory in proportion to what the caller chose to send.
    let shown = &text[..floor_char_boundary(text, max)];
    let mut escaped = escape(shown);
    let mut cut = shown.len() < text.len();
    if escaped.len() > max {
        escaped.truncate(floor_char_boundary(&escaped, max));
        cut = true;
    }
    if cut {
        escaped.push_str("...");
    }
    escaped
}

/// The largest index at most `at` that starts a character of `text` (or its length).
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Escapes control characters (and backslashes) so that text is safe in syslog and on a
/// terminal: `\n` becomes `\x0a`, `\` becomes `\\`. Printable text is unchanged, and the
/// result reads back unambiguously.
pub fn escape(text: &str) -> String {
    escape_with(text, true)
}

/// Like [`escape`] for bytes that need not be UTF-8 (a file name): each byte that is not
/// part of a UTF-8 character becomes `\xNN`, so no two names read the same.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
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
    fn given_huge_plain_text_then_the_record_is_its_bounded_start() {
        let huge = format!("é{}", "a".repeat(30 << 20));
        let record = for_record(&huge, 1024);
        assert_eq!(record.len(), 1024 + 3, "the first 1 KiB and '...'");
        assert!(record.starts_with("éaaa") && record.ends_with("a..."));
        assert_eq!(
            for_record(&"é".repeat(600), 1024),
            format!("{}...", "é".repeat(512))
        );
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

    /// Every format (Cf) and separator (Zl, Zp) character the review named, and at least one
    /// from each run of the table.
    const FORMAT_AND_SEPARATORS: [char; 36] = [
        '\u{00AD}',  // soft hyphen
        '\u{0600}',  // Arabic number sign
        '\u{0605}',  // Arabic number mark above
        '\u{061C}',  // Arabic letter mark
        '\u{06DD}',  // Arabic end of ayah
        '\u{070F}',  // Syriac abbreviation mark
        '\u{0890}',  // Arabic pound mark above
        '\u{08E2}',  // Arabic disputed end of ayah
        '\u{180E}',  // Mongolian vowel separator
        '\u{200B}',  // zero-width space
        '\u{200D}',  // zero-width joiner
        '\u{200F}',  // right-to-left mark
        '\u{2028}',  // line separator
        '\u{2029}',  // paragraph separator
        '\u{202E}',  // right-to-left override
        '\u{2060}',  // word joiner
        '\u{2064}',  // invisible plus
        '\u{2066}',  // left-to-right isolate
        '\u{2069}',  // pop directional isolate
        '\u{206F}',  // nominal digit shapes
        '\u{FEFF}',  // byte order mark
        '\u{FFF9}',  // interlinear annotation anchor
        '\u{FFFA}',  // interlinear annotation separator
        '\u{FFFB}',  // interlinear annotation terminator
        '\u{110BD}', // Kaithi number sign
        '\u{110CD}', // Kaithi number sign above
        '\u{13430}', // Egyptian hieroglyph vertical joiner
        '\u{1343F}', // Egyptian hieroglyph end walled enclosure (Unicode 15)
        '\u{1BCA0}', // shorthand format letter overlap
        '\u{1D173}', // musical symbol begin beam
        '\u{1D17A}', // musical symbol end phrase
        '\u{E0000}', // start of the tag block (reserved)
        '\u{E0001}', // language tag
        '\u{E0020}', // tag space
        '\u{E0041}', // tag latin capital letter a
        '\u{E007F}', // cancel tag
    ];

    #[test]
    fn given_format_or_separator_characters_then_refused_by_check() {
        for c in FORMAT_AND_SEPARATORS {
            let text = format!("approved{c} by bob");
            let err = check("reason", &text, 1024).unwrap_err();
            assert!(
                err.starts_with("reason contains the ")
                    && err.contains(&c.escape_unicode().to_string())
                    && err.ends_with("; use plain text"),
                "{:04X}: {err}",
                c as u32
            );
        }
        assert!(check("reason", "a\u{2028}b", 1024)
            .unwrap_err()
            .contains("line separator"));
        assert!(check("reason", "a\u{061C}b", 1024)
            .unwrap_err()
            .contains("invisible formatting character \\u{61c}"));
        // The wording for control characters is unchanged.
        assert!(check("reason", "a\nb", 1024)
            .unwrap_err()
            .contains("control character \\u{a}"));
    }

    #[test]
    fn given_format_or_separator_characters_then_escape_shows_their_code() {
        for c in FORMAT_AND_SEPARATORS {
            let code = c as u32;
            let shown = if code <= 0xff {
                format!("\\x{code:02x}")
            } else {
                format!("\\u{{{code:x}}}")
            };
            let text = format!("a{c}b");
            for escaped in [escape(&text), escape_unsafe(&text)] {
                assert_eq!(escaped, format!("a{shown}b"), "{code:04X}");
            }
        }
        assert_eq!(escape("x\u{2028}y"), "x\\u{2028}y");
        assert_eq!(escape("x\u{061C}y"), "x\\u{61c}y");
        assert_eq!(escape("x\u{E0041}y"), "x\\u{e0041}y");
        assert_eq!(escape_unsafe("soft\u{AD}hyphen"), "soft\\xadhyphen");
        assert_eq!(for_record("a\u{2029}b", 1024), "a\\u{2029}b");
    }

    #[test]
    fn given_ordinary_non_ascii_text_then_accepted_and_unchanged() {
        for good in [
            "café déjà vu",
            "Grüße aus Köln",
            "部署修复程序",
            "修正を適用する",
            "배포",
            "ship it 🚀🔥",
            "I \u{2764}\u{FE0F} emoji with a variation selector",
            "combining e\u{301}",
            "עברית and العربية",
            "no\u{A0}break space",
            "narrow\u{202F}no-break space",
            "€ £ ¥ © ® ½ ±",
        ] {
            assert_eq!(check("reason", good, 1024), Ok(()), "{good}");
            assert_eq!(escape(good), good);
            assert_eq!(escape_unsafe(good), good);
            assert_eq!(for_record(good, 1024), good);
        }
        // The characters next to each run of the table stay text.
        for c in [
            '\u{AC}',
            '\u{AE}',
            '\u{5FF}',
            '\u{606}',
            '\u{61B}',
            '\u{61D}',
            '\u{892}',
            '\u{180D}',
            '\u{180F}',
            '\u{200A}',
            '\u{2010}',
            '\u{2027}',
            '\u{202F}',
            '\u{205F}',
            '\u{2070}',
            '\u{FEFE}',
            '\u{FF00}',
            '\u{FFF8}',
            '\u{FFFC}',
            '\u{110BC}',
            '\u{110BE}',
            '\u{1342F}',
            '\u{13440}',
            '\u{1BC9F}',
            '\u{1BCA4}',
            '\u{1D172}',
            '\u{1D17B}',
            '\u{E0080}',
            '\u{E0100}',
        ] {
            assert!(!is_unsafe(c), "{:04X}", c as u32);
        }
    }

    #[test]
    fn given_bytes_not_utf8_then_escape_bytes_shows_each_and_keeps_the_rest() {
        assert_eq!(
            escape_bytes(b"caf\xc3\xa9 \xff\xfe\n\\"),
            "caf\u{e9} \\xff\\xfe\\x0a\\\\"
        );
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
