//! The PAM module's own way to pimd: a root-only Unix stream socket of pimd's, one question and
//! one answer per connection, in a framing of fixed headers and bounded bodies.
//!
//! ```text
//! request: "PIMq" | id: u64 LE | body length: u32 LE | body: user, then each group,
//!          each as u16 LE length + UTF-8 bytes (no NUL)
//! reply:   "PIMa" | id: u64 LE | body length: u32 LE | body: status u8 (0 refused,
//!          1 allowed, 2 error) + UTF-8 message
//! ```
//!
//! The reply repeats the request's id: the module takes no answer that is not to its own
//! question. Both sides check every length against a bound before reading what it covers.
#![forbid(unsafe_code)]

use std::fmt;

/// Where pimd listens for the PAM module. Fixed: nothing (no environment variable, no
/// argument) can point the module elsewhere.
pub const PAM_SOCKET: &str = "/run/pim/pam.socket";
/// Its directory: root's, mode 0700, so nobody else can even connect.
pub const PAM_SOCKET_DIR: &str = "/run/pim";

/// Bytes in the fixed header of a request or a reply.
pub const HEADER_BYTES: usize = 16;
/// Longest request body accepted (a user name of 256 bytes and 64 groups of 64 take 4.5 KiB).
pub const MAX_REQUEST_BODY: usize = 16 * 1024;
/// Longest reply body accepted (pimd's reasons are one line).
pub const MAX_REPLY_BODY: usize = 4096;

const REQUEST_MAGIC: [u8; 4] = *b"PIMq";
const REPLY_MAGIC: [u8; 4] = *b"PIMa";

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The module's question: may `user`, who holds `groups`, use them now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub user: String,
    pub groups: Vec<String>,
}

/// pimd's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    /// Refused, with the one-line reason for the user.
    Refused(String),
    /// No decision: the question was malformed or pimd could not read its state.
    Error(String),
}

/// The header of a frame: its id and the length of the body that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub body_len: usize,
}

fn header(magic: [u8; 4], id: u64, body_len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body_len);
    bytes.extend_from_slice(&magic);
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    bytes
}

fn parse_header(
    bytes: &[u8; HEADER_BYTES],
    magic: [u8; 4],
    what: &str,
    max: usize,
) -> Result<Header, FrameError> {
    if bytes[..4] != magic {
        return Err(FrameError(format!("not a pim {what}: bad magic bytes")));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[4..12]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[12..16]);
    let body_len = u32::from_le_bytes(len) as usize;
    if body_len > max {
        return Err(FrameError(format!(
            "a {what} of {body_len} bytes is longer than the {max} accepted"
        )));
    }
    Ok(Header {
        id: u64::from_le_bytes(id),
        body_len,
    })
}

/// The request's bytes, or why it cannot be sent (a name with NUL, or too long a question).
pub fn encode_request(id: u64, user: &str, groups: &[String]) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::new();
    for text in std::iter::once(user).chain(groups.iter().map(String::as_str)) {
        if text.contains('\0') {
            return Err(FrameError(format!(
                "the name {:?} contains a NUL byte",
                text.replace('\0', "\\0")
            )));
        }
        let len = u16::try_from(text.len())
            .map_err(|_| FrameError(format!("a name of {} bytes is too long", text.len())))?;
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(text.as_bytes());
    }
    if body.len() > MAX_REQUEST_BODY {
        return Err(FrameError(format!(
            "the question takes {} bytes, more than the {MAX_REQUEST_BODY} pimd accepts",
            body.len()
        )));
    }
    let mut bytes = header(REQUEST_MAGIC, id, body.len());
    bytes.extend(body);
    Ok(bytes)
}

/// A request's header, its body length checked against [`MAX_REQUEST_BODY`].
pub fn parse_request_header(bytes: &[u8; HEADER_BYTES]) -> Result<Header, FrameError> {
    parse_header(bytes, REQUEST_MAGIC, "request", MAX_REQUEST_BODY)
}

/// The request whose header said `id`, from its body.
pub fn decode_request(id: u64, mut body: &[u8]) -> Result<Request, FrameError> {
    let mut texts = Vec::new();
    while !body.is_empty() {
        if body.len() < 2 {
            return Err(FrameError("the request ends inside a length".into()));
        }
        let len = u16::from_le_bytes([body[0], body[1]]) as usize;
        let Some(text) = body.get(2..2 + len) else {
            return Err(FrameError("the request ends inside a name".into()));
        };
        let text = std::str::from_utf8(text)
            .map_err(|_| FrameError("a name in the request is not UTF-8".into()))?;
        if text.contains('\0') {
            return Err(FrameError(
                "a name in the request contains a NUL byte".into(),
            ));
        }
        texts.push(text.to_owned());
        body = &body[2 + len..];
    }
    if texts.is_empty() {
        return Err(FrameError("the request names no user".into()));
    }
    let user = texts.remove(0);
    Ok(Request {
        id,
        user,
        groups: texts,
    })
}

/// The reply's bytes; a message longer than [`MAX_REPLY_BODY`] allows is cut (at a character).
pub fn encode_reply(id: u64, answer: &Answer) -> Vec<u8> {
    let (status, message) = match answer {
        Answer::Refused(m) => (0u8, m.as_str()),
        Answer::Allowed => (1, ""),
        Answer::Error(m) => (2, m.as_str()),
    };
    let mut end = message.len().min(MAX_REPLY_BODY - 1);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = header(REPLY_MAGIC, id, 1 + end);
    bytes.push(status);
    bytes.extend_from_slice(&message.as_bytes()[..end]);
    bytes
}

/// A reply's header, its body length checked against [`MAX_REPLY_BODY`].
pub fn parse_reply_header(bytes: &[u8; HEADER_BYTES]) -> Result<Header, FrameError> {
    parse_header(bytes, REPLY_MAGIC, "reply", MAX_REPLY_BODY)
}

/// The answer in a reply's body.
pub fn decode_reply(body: &[u8]) -> Result<Answer, FrameError> {
    let Some((&status, message)) = body.split_first() else {
        return Err(FrameError("the reply has no status".into()));
    };
    let message = std::str::from_utf8(message)
        .map_err(|_| FrameError("the reply's message is not UTF-8".into()))?
        .to_owned();
    match status {
        0 => Ok(Answer::Refused(message)),
        1 if message.is_empty() => Ok(Answer::Allowed),
        1 => Err(FrameError("an allowing reply carries a message".into())),
        2 => Ok(Answer::Error(message)),
        other => Err(FrameError(format!("unknown reply status {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> ([u8; HEADER_BYTES], &[u8]) {
        let mut head = [0u8; HEADER_BYTES];
        head.copy_from_slice(&bytes[..HEADER_BYTES]);
        (head, &bytes[HEADER_BYTES..])
    }

    #[test]
    fn given_a_request_then_it_decodes_to_itself() {
        let groups = vec!["sudo".to_string(), "wheel".to_string()];
        let bytes = encode_request(7, "kim@corp", &groups).unwrap();
        let (head, body) = split(&bytes);
        let header = parse_request_header(&head).unwrap();
        assert_eq!(header.id, 7);
        assert_eq!(header.body_len, body.len());
        assert_eq!(
            decode_request(header.id, body).unwrap(),
            Request {
                id: 7,
                user: "kim@corp".into(),
                groups
            }
        );
    }

    #[test]
    fn given_each_answer_then_it_decodes_to_itself() {
        for answer in [
            Answer::Allowed,
            Answer::Refused("pim: no".into()),
            Answer::Error("bad".into()),
        ] {
            let bytes = encode_reply(u64::MAX, &answer);
            let (head, body) = split(&bytes);
            let header = parse_reply_header(&head).unwrap();
            assert_eq!((header.id, header.body_len), (u64::MAX, body.len()));
            assert_eq!(decode_reply(body).unwrap(), answer);
        }
    }

    #[test]
    fn given_a_long_message_then_the_reply_is_cut_within_bounds() {
        let bytes = encode_reply(1, &Answer::Refused("é".repeat(MAX_REPLY_BODY)));
        let (head, body) = split(&bytes);
        assert!(parse_reply_header(&head).unwrap().body_len <= MAX_REPLY_BODY);
        assert!(matches!(decode_reply(body), Ok(Answer::Refused(m)) if m.starts_with('é')));
    }

    #[test]
    fn given_malformed_frames_then_errors() {
        let request = encode_request(1, "alice", &["sudo".into()]).unwrap();
        let (head, _) = split(&request);
        assert!(parse_reply_header(&head).is_err(), "a request is no reply");
        let mut long = head;
        long[12..16].copy_from_slice(&(MAX_REQUEST_BODY as u32 + 1).to_le_bytes());
        assert!(parse_request_header(&long).is_err());
        for body in [
            &b""[..],
            b"\x05",
            b"\x05\x00ab",
            b"\x02\x00\xff\xfe",
            b"\x01\x00\x00",
        ] {
            assert!(decode_request(1, body).is_err(), "{body:?}");
        }
        for body in [&b""[..], b"\x01x", b"\x03", b"\x00\xff"] {
            assert!(decode_reply(body).is_err(), "{body:?}");
        }
        assert!(encode_request(1, "al\0ice", &[]).is_err());
        assert!(encode_request(1, &"x".repeat(70_000), &[]).is_err());
        assert!(encode_request(1, "a", &vec!["g".repeat(1000); 20]).is_err());
    }
}
