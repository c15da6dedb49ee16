//! Why a TOTP or recovery code was refused, as data: pimd puts it in the message of
//! `InvalidCode` (a line of `key=value` words, see [`CodeRefusal::to_message`]) and the client
//! formats it ([`CodeRefusal::sentence`]), so that the advice is given once and fits the case.

/// What kind of code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// A TOTP-shaped code that matched no fresh step of the window: wrong, or already used
    /// (pimd does not say which); the next code is the one to give.
    Totp,
    /// Shaped like a recovery code, but not one of the caller's unused ones.
    Recovery,
}

impl CodeKind {
    fn as_str(self) -> &'static str {
        match self {
            CodeKind::Totp => "totp",
            CodeKind::Recovery => "recovery",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [CodeKind::Totp, CodeKind::Recovery]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A refused code: its kind, the wrong codes left before a lockout and the seconds until the
/// authenticator shows its next code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRefusal {
    pub kind: CodeKind,
    pub attempts_left: u32,
    pub next_code_in: u64,
}

const TAG: &str = "code-refused";

impl CodeRefusal {
    /// The message pimd sends: `code-refused kind=K attempts-left=N next-code-in=S -- SENTENCE`,
    /// the data for the client, the sentence for any other reader (busctl).
    pub fn to_message(&self) -> String {
        format!(
            "{TAG} kind={} attempts-left={} next-code-in={} -- {}",
            self.kind.as_str(),
            self.attempts_left,
            self.next_code_in,
            self.sentence()
        )
    }

    /// The refusal a message carries, `None` for any other message (an older pimd's sentence).
    pub fn from_message(message: &str) -> Option<Self> {
        let data = message.split(" -- ").next().unwrap_or_default();
        let mut words = data.split_whitespace();
        if words.next() != Some(TAG) {
            return None;
        }
        let (mut kind, mut attempts_left, mut next_code_in) = (None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("kind", v) => kind = CodeKind::parse(v),
                ("attempts-left", v) => attempts_left = v.parse().ok(),
                ("next-code-in", v) => next_code_in = v.parse().ok(),
                _ => {}
            }
        }
        Some(CodeRefusal {
            kind: kind?,
            attempts_left: attempts_left?,
            next_code_in: next_code_in?,
        })
    }

    /// What a person reads: what happened, what to do, once, and how many tries are left.
    pub fn sentence(&self) -> String {
        let next = format!("the next code appears in {} s", self.next_code_in);
        let what = match self.kind {
            CodeKind::Totp => format!(
                "wrong or already used code; {next} (if this one was fresh, check the \
                 authenticator's clock)"
            ),
            CodeKind::Recovery => "wrong or already used code: that is not one of your unused \
                                   recovery codes (each works once); try another one, or the \
                                   code your authenticator shows"
                .to_string(),
        };
        let left = match self.attempts_left {
            0 => "no attempt is left before your MFA locks".to_string(),
            1 => "1 attempt left before your MFA locks".to_string(),
            n => format!("{n} attempts left before your MFA locks"),
        };
        format!("{what}; {left}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_refusal_then_its_message_reads_back() {
        for kind in [CodeKind::Totp, CodeKind::Recovery] {
            let r = CodeRefusal {
                kind,
                attempts_left: 3,
                next_code_in: 17,
            };
            assert_eq!(CodeRefusal::from_message(&r.to_message()), Some(r));
        }
        assert_eq!(CodeRefusal::from_message("wrong code"), None);
        assert_eq!(CodeRefusal::from_message("code-refused kind=x"), None);
    }

    #[test]
    fn given_each_kind_then_the_sentence_says_it_once_with_attempts_left() {
        let s = |kind, attempts_left| {
            CodeRefusal {
                kind,
                attempts_left,
                next_code_in: 12,
            }
            .sentence()
        };
        let totp = s(CodeKind::Totp, 4);
        assert!(totp.starts_with("wrong or already used code; the next code appears in 12 s"));
        assert_eq!(totp.matches("clock").count(), 1, "{totp}");
        assert!(totp.ends_with("4 attempts left before your MFA locks"));
        let recovery = s(CodeKind::Recovery, 1);
        assert!(!recovery.contains("next code"), "{recovery}");
        assert!(recovery.contains("recovery codes (each works once)"));
        assert!(recovery.ends_with("1 attempt left before your MFA locks"));
    }
}
