//! The D-Bus wire format, as much of it as `pam_pim.so` needs: method calls whose arguments are
//! strings and arrays of strings, the SASL reply line, and a strict reader for the messages that
//! come back.
//!
//! Written against the D-Bus specification ("Message Protocol", "Authentication Protocol").
//! Messages are encoded little-endian; replies are read in either byte order (the bus forwards
//! a reply in its sender's byte order). Reading never panics and never trusts a length: every
//! message is checked whole (fixed header, header fields with their types, padding, and the body
//! against its signature) before anything is taken from it, and a message is at most
//! [`MAX_MESSAGE_BYTES`].
#![forbid(unsafe_code)]

use pim_common::text::is_unsafe;
use std::fmt;

/// Largest message this module encodes or decodes. Our calls and pimd's replies are a few
/// hundred bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest message the specification allows (2^27 bytes): what a frame may announce.
pub const SPEC_MAX_MESSAGE_BYTES: usize = 1 << 27;

/// Deepest nesting of containers and variants accepted (the specification allows 32 arrays
/// plus 32 structures).
const MAX_DEPTH: u32 = 64;

/// Message types (the second byte of every message).
pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

// Header field codes.
const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SENDER: u8 = 7;
const FIELD_SIGNATURE: u8 = 8;
const FIELD_UNIX_FDS: u8 = 9;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn bad<T>(why: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(why.into()))
}

/// Byte order of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// One argument of a method call.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// `s`
    Str(&'a str),
    /// `as`
    StrArray(&'a [String]),
}

/// A method call to encode. The names are the caller's constants (they are not checked against
/// the grammar of bus, interface and member names here; the tests check ours against zbus).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub args: &'a [Arg<'a>],
}

/// The bus's `Hello`, which must come first on every connection.
pub const HELLO: Call<'static> = Call {
    destination: "org.freedesktop.DBus",
    path: "/org/freedesktop/DBus",
    interface: "org.freedesktop.DBus",
    member: "Hello",
    args: &[],
};

/// The arguments of `CheckAccess`: the user and the groups they hold.
pub fn check_access_args<'a>(user: &'a str, groups: &'a [String]) -> [Arg<'a>; 2] {
    [Arg::Str(user), Arg::StrArray(groups)]
}

/// pimd's `CheckAccess` with `args` (see [`check_access_args`]).
pub fn check_access_call<'a>(args: &'a [Arg<'a>]) -> Call<'a> {
    Call {
        destination: pim_common::BUS_NAME,
        path: pim_common::OBJECT_PATH,
        interface: pim_common::INTERFACE,
        member: "CheckAccess",
        args,
    }
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, to: usize) {
        let pad = (to - self.buf.len() % to) % to;
        self.buf.resize(self.buf.len() + pad, 0);
    }

    fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn set_u32(&mut self, at: usize, value: u32) {
        self.buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn length(&self, len: usize) -> Result<u32, WireError> {
        if len > MAX_MESSAGE_BYTES {
            return bad(format!("{len} bytes is more than a message may hold here"));
        }
        // MAX_MESSAGE_BYTES fits in a u32.
        Ok(len as u32)
    }

    /// `s` or `o`: length, bytes, NUL.
    fn string(&mut self, value: &str) -> Result<(), WireError> {
        if value.contains('\0') {
            return bad("a D-Bus string cannot contain NUL");
        }
        let len = self.length(value.len())?;
        self.u32(len);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    /// `g`: one-byte length, bytes, NUL.
    fn signature(&mut self, value: &str) -> Result<(), WireError> {
        let Ok(len) = u8::try_from(value.len()) else {
            return bad("signature longer than 255 bytes");
        };
        self.u8(len);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    /// One `(yv)` header field whose variant holds a string-like value of type `code`.
    fn field(&mut self, field: u8, code: u8, value: &str) -> Result<(), WireError> {
        self.pad(8);
        self.u8(field);
        self.u8(1);
        self.u8(code);
        self.u8(0);
        if code == b'g' {
            self.signature(value)
        } else {
            self.string(value)
        }
    }
}

/// The signature of `args`.
fn signature_of(args: &[Arg<'_>]) -> String {
    args.iter()
        .map(|arg| match arg {
            Arg::Str(_) => "s",
            Arg::StrArray(_) => "as",
        })
        .collect()
}

/// `call` as a little-endian METHOD_CALL message with `serial`, no flags.
pub fn encode_method_call(call: &Call<'_>, serial: u32) -> Result<Vec<u8>, WireError> {
    if serial == 0 {
        return bad("serial 0 is not allowed");
    }
    let mut w = Writer {
        buf: Vec::with_capacity(256),
    };
    // Fixed header: endianness, type, flags, version, body length (set below), serial, and the
    // length of the header field array (set below).
    w.buf.extend_from_slice(&[b'l', METHOD_CALL, 0, 1]);
    w.u32(0);
    w.u32(serial);
    w.u32(0);
    let fields_start = w.buf.len();
    w.field(FIELD_PATH, b'o', call.path)?;
    w.field(FIELD_INTERFACE, b's', call.interface)?;
    w.field(FIELD_MEMBER, b's', call.member)?;
    w.field(FIELD_DESTINATION, b's', call.destination)?;
    let signature = signature_of(call.args);
    if !signature.is_empty() {
        w.field(FIELD_SIGNATURE, b'g', &signature)?;
    }
    let fields_len = w.length(w.buf.len() - fields_start)?;
    w.set_u32(12, fields_len);
    w.pad(8);

    let body_start = w.buf.len();
    for arg in call.args {
        match arg {
            Arg::Str(value) => w.string(value)?,
            Arg::StrArray(values) => {
                w.u32(0);
                let length_at = w.buf.len() - 4;
                // Elements are strings, aligned to 4 like the length: no padding before the
                // first element.
                let elements_start = w.buf.len();
                for value in values.iter() {
                    w.string(value)?;
                }
                let len = w.length(w.buf.len() - elements_start)?;
                w.set_u32(length_at, len);
            }
        }
    }
    let body_len = w.length(w.buf.len() - body_start)?;
    w.set_u32(4, body_len);
    w.length(w.buf.len())?;
    Ok(w.buf)
}

/// The first bytes a client sends on a fresh connection: the NUL byte, `AUTH EXTERNAL` with
/// `uid` (hex of its decimal digits), and `BEGIN`, pipelined: the messages may follow at once.
pub fn auth_external(uid: u32) -> Vec<u8> {
    let hex: String = uid
        .to_string()
        .bytes()
        .map(|digit| format!("{digit:02x}"))
        .collect();
    format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").into_bytes()
}

/// Longest reply line to `AUTH` accepted.
pub const MAX_AUTH_LINE: usize = 512;

/// Checks the server's reply to `AUTH` (the line without its `\r\n`): `OK <guid>` passes,
/// anything else (`REJECTED ...`, `ERROR ...`) is the reason for the refusal.
pub fn check_auth_reply(line: &[u8]) -> Result<(), WireError> {
    if let Some(guid) = line.strip_prefix(b"OK ") {
        if guid.len() == 32 && guid.iter().all(u8::is_ascii_hexdigit) {
            return Ok(());
        }
        return bad("the bus accepted authentication with a malformed GUID");
    }
    let shown: String = String::from_utf8_lossy(&line[..line.len().min(80)])
        .chars()
        .map(|c| if is_unsafe(c) { '?' } else { c })
        .collect();
    bad(format!("the bus refused authentication: '{shown}'"))
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// What the first 16 bytes of a message say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub endian: Endian,
    /// Message type (see [`METHOD_RETURN`], [`ERROR`], ...; unknown types are passed on).
    pub kind: u8,
    /// Length of the whole message in bytes, at most [`SPEC_MAX_MESSAGE_BYTES`].
    pub len: usize,
}

/// The frame of the message starting at `bytes[0]`, or `None` while fewer than 16 bytes have
/// arrived.
pub fn frame(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
    let Some(fixed) = bytes.get(..16) else {
        return Ok(None);
    };
    let endian = match fixed[0] {
        b'l' => Endian::Little,
        b'B' => Endian::Big,
        other => return bad(format!("unknown byte order mark 0x{other:02x}")),
    };
    if fixed[3] != 1 {
        return bad(format!("unsupported protocol version {}", fixed[3]));
    }
    let kind = fixed[1];
    if kind == 0 {
        return bad("message type 0 is invalid");
    }
    let word = |at: usize| {
        let four = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
        match endian {
            Endian::Little => u32::from_le_bytes(four),
            Endian::Big => u32::from_be_bytes(four),
        }
    };
    let body_len = u64::from(word(4));
    let fields_len = u64::from(word(12));
    let header_len = (16 + fields_len).div_ceil(8) * 8;
    let len = header_len + body_len;
    if len > SPEC_MAX_MESSAGE_BYTES as u64 {
        return bad(format!(
            "a message of {len} bytes exceeds the protocol's limit"
        ));
    }
    Ok(Some(Frame {
        endian,
        kind,
        // At most 2^27: fits.
        len: len as usize,
    }))
}

/// A decoded message: its header, and its body still marshalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub endian: Endian,
    pub kind: u8,
    pub flags: u8,
    pub serial: u32,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    /// The body's signature, empty for no body.
    pub signature: String,
    /// The body; it starts 8-aligned in the message, so alignment within it is the same.
    pub body: Vec<u8>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => end,
            _ => return bad("message truncated"),
        };
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn align(&mut self, to: usize) -> Result<(), WireError> {
        let pad = (to - self.pos % to) % to;
        if self.take(pad)?.iter().any(|&b| b != 0) {
            return bad("non-zero padding");
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.align(4)?;
        let b = self.take(4)?;
        let four = [b[0], b[1], b[2], b[3]];
        Ok(match self.endian {
            Endian::Little => u32::from_le_bytes(four),
            Endian::Big => u32::from_be_bytes(four),
        })
    }

    fn boolean(&mut self) -> Result<bool, WireError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            other => bad(format!("boolean with value {other}")),
        }
    }

    /// `s` or `o`.
    fn string(&mut self) -> Result<&'a str, WireError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        if self.u8()? != 0 {
            return bad("string not terminated by NUL");
        }
        if bytes.contains(&0) {
            return bad("string contains NUL");
        }
        std::str::from_utf8(bytes).or_else(|_| bad("string is not valid UTF-8"))
    }

    /// `g`, checked to be a sequence of complete types.
    fn signature(&mut self) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        if self.u8()? != 0 {
            return bad("signature not terminated by NUL");
        }
        let mut at = 0;
        while at < bytes.len() {
            at += complete_type_len(&bytes[at..], 0)?;
        }
        Ok(bytes)
    }

    /// Reads (checks and skips) one value of the single complete type at the start of `sig`;
    /// returns that type's length in `sig`.
    fn value(&mut self, sig: &[u8], depth: u32) -> Result<usize, WireError> {
        if depth > MAX_DEPTH {
            return bad("values nested too deeply");
        }
        let Some(&code) = sig.first() else {
            return bad("incomplete signature");
        };
        let before = self.pos;
        let len = match code {
            b'y' => {
                self.take(1)?;
                1
            }
            b'b' => {
                self.boolean()?;
                1
            }
            b'n' | b'q' => {
                self.align(2)?;
                self.take(2)?;
                1
            }
            b'i' | b'u' | b'h' => {
                self.u32()?;
                1
            }
            b'x' | b't' | b'd' => {
                self.align(8)?;
                self.take(8)?;
                1
            }
            b's' | b'o' => {
                self.string()?;
                1
            }
            b'g' => {
                self.signature()?;
                1
            }
            b'v' => {
                let inner = self.signature()?;
                if inner.is_empty() || complete_type_len(inner, depth + 1)? != inner.len() {
                    return bad("a variant must hold exactly one complete type");
                }
                self.value(inner, depth + 1)?;
                1
            }
            b'a' => {
                let total = complete_type_len(sig, depth)?;
                let element = &sig[1..total];
                let bytes = self.u32()? as usize;
                self.align(alignment(element[0]))?;
                let end = match self.pos.checked_add(bytes) {
                    Some(end) if end <= self.buf.len() => end,
                    _ => return bad("array runs past the end of the message"),
                };
                while self.pos < end {
                    self.value(element, depth + 1)?;
                }
                if self.pos != end {
                    return bad("array elements overrun the array's length");
                }
                total
            }
            b'(' => {
                self.align(8)?;
                let mut at = 1;
                loop {
                    match sig.get(at) {
                        None => return bad("unterminated structure in signature"),
                        Some(b')') if at > 1 => break,
                        Some(b')') => return bad("empty structure"),
                        Some(_) => at += self.value(&sig[at..], depth + 1)?,
                    }
                }
                at + 1
            }
            b'{' => {
                // Only reached as an array's element; complete_type_len checked the shape.
                self.align(8)?;
                let mut at = 1;
                at += self.value(&sig[at..], depth + 1)?;
                at += self.value(&sig[at..], depth + 1)?;
                if sig.get(at) != Some(&b'}') {
                    return bad("malformed dict entry");
                }
                at + 1
            }
            other => return bad(format!("unknown type code 0x{other:02x}")),
        };
        if self.pos == before {
            // Every value takes at least one byte; this keeps array loops finite.
            return bad("empty value");
        }
        Ok(len)
    }
}

fn is_basic(code: u8) -> bool {
    matches!(
        code,
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o' | b'g'
    )
}

fn alignment(code: u8) -> usize {
    match code {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// The length of the single complete type at the start of `sig`, checked.
fn complete_type_len(sig: &[u8], depth: u32) -> Result<usize, WireError> {
    if depth > MAX_DEPTH {
        return bad("signature nested too deeply");
    }
    match sig.first() {
        None => bad("incomplete signature"),
        Some(&code) if is_basic(code) || code == b'v' => Ok(1),
        Some(b'a') => {
            if sig.get(1) == Some(&b'{') {
                match sig.get(2) {
                    Some(&key) if is_basic(key) => {}
                    _ => return bad("a dict entry's key must be a basic type"),
                }
                let value = complete_type_len(sig.get(3..).unwrap_or_default(), depth + 1)?;
                if sig.get(3 + value) != Some(&b'}') {
                    return bad("a dict entry holds exactly a key and a value");
                }
                Ok(4 + value)
            } else {
                Ok(1 + complete_type_len(&sig[1..], depth + 1)?)
            }
        }
        Some(b'(') => {
            let mut at = 1;
            loop {
                match sig.get(at) {
                    None => return bad("unterminated structure in signature"),
                    Some(b')') if at > 1 => return Ok(at + 1),
                    Some(b')') => return bad("empty structure"),
                    Some(_) => at += complete_type_len(&sig[at..], depth + 1)?,
                }
            }
        }
        Some(&other) => bad(format!("unexpected type code 0x{other:02x} in signature")),
    }
}

fn expect_type(sig: &[u8], code: u8, field: &str) -> Result<(), WireError> {
    if sig == [code] {
        Ok(())
    } else {
        bad(format!("header field {field} has the wrong type"))
    }
}

/// Decodes and checks one whole message: `bytes` must be exactly one message of at most
/// [`MAX_MESSAGE_BYTES`].
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let Some(frame) = frame(bytes)? else {
        return bad("message truncated");
    };
    if frame.len > MAX_MESSAGE_BYTES {
        return bad(format!(
            "a message of {} bytes is more than this module accepts",
            frame.len
        ));
    }
    if bytes.len() != frame.len {
        return bad("message length does not match its header");
    }
    let mut r = Reader {
        buf: bytes,
        pos: 4,
        endian: frame.endian,
    };
    let _body_len = r.u32()?;
    let serial = r.u32()?;
    if serial == 0 {
        return bad("serial 0 is not allowed");
    }
    let fields_len = r.u32()? as usize;
    let fields_end = 16 + fields_len;
    let mut message = Message {
        endian: frame.endian,
        kind: frame.kind,
        flags: bytes[2],
        serial,
        path: None,
        interface: None,
        member: None,
        error_name: None,
        reply_serial: None,
        destination: None,
        sender: None,
        signature: String::new(),
        body: Vec::new(),
    };
    let mut seen = 0u32;
    while r.pos < fields_end {
        r.align(8)?;
        let code = r.u8()?;
        let sig = r.signature()?;
        if sig.is_empty() || complete_type_len(sig, 1)? != sig.len() {
            return bad("a header field's variant must hold exactly one complete type");
        }
        if (1..=9).contains(&code) {
            if seen & (1 << code) != 0 {
                return bad(format!("header field {code} appears twice"));
            }
            seen |= 1 << code;
        }
        match code {
            0 => return bad("header field 0 is invalid"),
            FIELD_PATH => {
                expect_type(sig, b'o', "PATH")?;
                message.path = Some(r.string()?.to_string());
            }
            FIELD_INTERFACE => {
                expect_type(sig, b's', "INTERFACE")?;
                message.interface = Some(r.string()?.to_string());
            }
            FIELD_MEMBER => {
                expect_type(sig, b's', "MEMBER")?;
                message.member = Some(r.string()?.to_string());
            }
            FIELD_ERROR_NAME => {
                expect_type(sig, b's', "ERROR_NAME")?;
                message.error_name = Some(r.string()?.to_string());
            }
            FIELD_REPLY_SERIAL => {
                expect_type(sig, b'u', "REPLY_SERIAL")?;
                let serial = r.u32()?;
                if serial == 0 {
                    return bad("reply serial 0 is not allowed");
                }
                message.reply_serial = Some(serial);
            }
            FIELD_DESTINATION => {
                expect_type(sig, b's', "DESTINATION")?;
                message.destination = Some(r.string()?.to_string());
            }
            FIELD_SENDER => {
                expect_type(sig, b's', "SENDER")?;
                message.sender = Some(r.string()?.to_string());
            }
            FIELD_SIGNATURE => {
                expect_type(sig, b'g', "SIGNATURE")?;
                let body_sig = r.signature()?;
                // Checked by signature(): ASCII type codes only.
                message.signature = String::from_utf8_lossy(body_sig).into_owned();
            }
            FIELD_UNIX_FDS => {
                expect_type(sig, b'u', "UNIX_FDS")?;
                r.u32()?;
            }
            _ => {
                // Unknown fields are ignored, as the specification requires.
                r.value(sig, 1)?;
            }
        }
    }
    if r.pos != fields_end {
        return bad("header fields overrun their array's length");
    }
    r.align(8)?;
    let body_start = r.pos;

    let required: &[(bool, &str)] = match frame.kind {
        METHOD_CALL => &[
            (message.path.is_some(), "PATH"),
            (message.member.is_some(), "MEMBER"),
        ],
        METHOD_RETURN => &[(message.reply_serial.is_some(), "REPLY_SERIAL")],
        ERROR => &[
            (message.error_name.is_some(), "ERROR_NAME"),
            (message.reply_serial.is_some(), "REPLY_SERIAL"),
        ],
        SIGNAL => &[
            (message.path.is_some(), "PATH"),
            (message.interface.is_some(), "INTERFACE"),
            (message.member.is_some(), "MEMBER"),
        ],
        _ => &[],
    };
    if let Some((_, name)) = required.iter().find(|(present, _)| !present) {
        return bad(format!(
            "message of type {} lacks header field {name}",
            frame.kind
        ));
    }

    // The body must be exactly the values its signature announces.
    let sig = message.signature.as_bytes();
    let mut at = 0;
    while at < sig.len() {
        at += r.value(&sig[at..], 0)?;
    }
    if r.pos != bytes.len() {
        return bad("body longer than its signature announces");
    }
    message.body = bytes[body_start..].to_vec();
    Ok(message)
}

impl Message {
    fn body_reader(&self) -> Reader<'_> {
        Reader {
            buf: &self.body,
            pos: 0,
            endian: self.endian,
        }
    }

    /// The body of a reply carrying a boolean and a string: signature `bs`, as zbus sends a
    /// struct returned by a method (its fields become the reply's arguments), or `(bs)`, the
    /// struct itself. Both are the same bytes: the body starts 8-aligned.
    pub fn bool_and_string(&self) -> Result<(bool, String), WireError> {
        if self.signature != "bs" && self.signature != "(bs)" {
            return bad(format!(
                "expected a reply of signature bs or (bs), got '{}'",
                self.signature
            ));
        }
        let mut r = self.body_reader();
        r.align(8)?;
        let flag = r.boolean()?;
        let text = r.string()?.to_string();
        if r.pos != self.body.len() {
            return bad("body longer than a boolean and a string");
        }
        Ok((flag, text))
    }

    /// The text of an ERROR: its first argument when that is a string, else empty.
    pub fn error_text(&self) -> Result<String, WireError> {
        if !self.signature.starts_with('s') {
            return Ok(String::new());
        }
        Ok(self.body_reader().string()?.to_string())
    }
}

/// Messages built by hand, in either byte order, as a bus or pimd would send them.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) struct Build {
        pub(crate) endian: Endian,
        pub(crate) buf: Vec<u8>,
    }

    impl Build {
        /// The fixed header of a message of `kind` with `serial`; fields and body follow.
        pub(crate) fn new(endian: Endian, kind: u8, serial: u32) -> Self {
            let mark = match endian {
                Endian::Little => b'l',
                Endian::Big => b'B',
            };
            let mut b = Build {
                endian,
                buf: vec![mark, kind, 0, 1],
            };
            b.u32(0);
            b.u32(serial);
            b.u32(0);
            b
        }
        pub(crate) fn pad(&mut self, to: usize) {
            let pad = (to - self.buf.len() % to) % to;
            self.buf.resize(self.buf.len() + pad, 0);
        }
        pub(crate) fn u32(&mut self, v: u32) {
            self.pad(4);
            let bytes = match self.endian {
                Endian::Little => v.to_le_bytes(),
                Endian::Big => v.to_be_bytes(),
            };
            self.buf.extend_from_slice(&bytes);
        }
        pub(crate) fn string(&mut self, s: &str) {
            self.u32(s.len() as u32);
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(0);
        }
        pub(crate) fn sig(&mut self, s: &str) {
            self.buf.push(s.len() as u8);
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(0);
        }
        pub(crate) fn set_u32(&mut self, at: usize, v: u32) {
            let bytes = match self.endian {
                Endian::Little => v.to_le_bytes(),
                Endian::Big => v.to_be_bytes(),
            };
            self.buf[at..at + 4].copy_from_slice(&bytes);
        }
        /// A header field holding `s`, `o` or `g`.
        pub(crate) fn field_str(&mut self, code: u8, t: u8, value: &str) {
            self.pad(8);
            self.buf.extend_from_slice(&[code, 1, t, 0]);
            if t == b'g' {
                self.sig(value);
            } else {
                self.string(value);
            }
        }
        pub(crate) fn field_u32(&mut self, code: u8, value: u32) {
            self.pad(8);
            self.buf.extend_from_slice(&[code, 1, b'u', 0]);
            self.u32(value);
        }
        /// Closes the header field array and pads to the body.
        pub(crate) fn end_fields(&mut self) -> usize {
            let fields_len = self.buf.len() - 16;
            self.set_u32(12, fields_len as u32);
            self.pad(8);
            self.buf.len()
        }
        /// Sets the body length, the body having started at `body_start`.
        pub(crate) fn finish(mut self, body_start: usize) -> Vec<u8> {
            let body_len = self.buf.len() - body_start;
            self.set_u32(4, body_len as u32);
            self.buf
        }
    }

    /// A METHOD_RETURN or ERROR for `reply_to` from `:1.7`, with a body of signature `sig`
    /// written by `body`.
    pub(crate) fn reply(
        endian: Endian,
        kind: u8,
        reply_to: u32,
        error_name: Option<&str>,
        sig: &str,
        body: impl FnOnce(&mut Build),
    ) -> Vec<u8> {
        reply_from(":1.7", endian, kind, reply_to, error_name, sig, body)
    }

    /// The same from `sender`.
    pub(crate) fn reply_from(
        sender: &str,
        endian: Endian,
        kind: u8,
        reply_to: u32,
        error_name: Option<&str>,
        sig: &str,
        body: impl FnOnce(&mut Build),
    ) -> Vec<u8> {
        let mut b = Build::new(endian, kind, 7);
        b.field_u32(FIELD_REPLY_SERIAL, reply_to);
        b.field_str(FIELD_SENDER, b's', sender);
        if let Some(name) = error_name {
            b.field_str(FIELD_ERROR_NAME, b's', name);
        }
        if !sig.is_empty() {
            b.field_str(FIELD_SIGNATURE, b'g', sig);
        }
        let body_start = b.end_fields();
        body(&mut b);
        b.finish(body_start)
    }

    /// pimd's answer to CheckAccess (serial 2), `allowed` written as given, with signature `bs`
    /// as zbus writes it.
    pub(crate) fn access_reply(endian: Endian, allowed: u32, text: &str) -> Vec<u8> {
        access_reply_signed(endian, "bs", allowed, text)
    }

    /// The same with another signature.
    pub(crate) fn access_reply_signed(
        endian: Endian,
        sig: &str,
        allowed: u32,
        text: &str,
    ) -> Vec<u8> {
        reply(endian, METHOD_RETURN, 2, None, sig, |b| {
            b.pad(8);
            b.u32(allowed);
            b.string(text);
        })
    }

    /// A signal with a string body of `len` bytes.
    pub(crate) fn signal(endian: Endian, member: &str, len: usize) -> Vec<u8> {
        let mut b = Build::new(endian, SIGNAL, 9);
        b.field_str(FIELD_PATH, b'o', "/org/freedesktop/DBus");
        b.field_str(FIELD_INTERFACE, b's', "org.freedesktop.DBus");
        b.field_str(FIELD_MEMBER, b's', member);
        b.field_str(FIELD_SIGNATURE, b'g', "s");
        let body_start = b.end_fields();
        b.string(&"x".repeat(len));
        b.finish(body_start)
    }
}

#[cfg(test)]
mod interface_tests;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn sample() -> Vec<u8> {
        let groups = ["sudo".to_string(), "wheel".to_string()];
        let args = [Arg::Str("alice"), Arg::StrArray(&groups)];
        encode_method_call(&check_access_call(&args), 2).unwrap()
    }

    #[test]
    fn given_a_check_access_call_then_bytes_are_as_the_spec_lays_them_out() {
        let bytes = sample();
        let mut expected: Vec<u8> = vec![b'l', 1, 0, 1];
        // body: "alice" (4+5+1 = 10), pad to 12, array length 4 + ("sudo": 4+4+1 = 9, pad to
        // 12 -> 12, "wheel": 4+5+1 = 10) = 4 + 22 = 26 + 12 = 38.
        expected.extend_from_slice(&38u32.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        let mut fields = Vec::new();
        let mut field = |code: u8, t: u8, value: &str| {
            fields.resize(fields.len().div_ceil(8) * 8, 0);
            fields.extend_from_slice(&[code, 1, t, 0]);
            if t == b'g' {
                fields.push(value.len() as u8);
            } else {
                fields.extend_from_slice(&(value.len() as u32).to_le_bytes());
            }
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        };
        field(1, b'o', "/org/pim/Manager1");
        field(2, b's', "org.pim.Manager1");
        field(3, b's', "CheckAccess");
        field(6, b's', "org.pim.Manager1");
        field(8, b'g', "sas");
        expected.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        expected.extend_from_slice(&fields);
        expected.resize(expected.len().div_ceil(8) * 8, 0);
        expected.extend_from_slice(&5u32.to_le_bytes());
        expected.extend_from_slice(b"alice\0");
        expected.extend_from_slice(&[0, 0]);
        expected.extend_from_slice(&22u32.to_le_bytes());
        expected.extend_from_slice(&4u32.to_le_bytes());
        expected.extend_from_slice(b"sudo\0");
        expected.extend_from_slice(&[0, 0, 0]);
        expected.extend_from_slice(&5u32.to_le_bytes());
        expected.extend_from_slice(b"wheel\0");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn given_our_call_then_our_reader_decodes_it() {
        let message = decode(&sample()).unwrap();
        assert_eq!(message.kind, METHOD_CALL);
        assert_eq!(message.serial, 2);
        assert_eq!(message.path.as_deref(), Some("/org/pim/Manager1"));
        assert_eq!(message.interface.as_deref(), Some("org.pim.Manager1"));
        assert_eq!(message.member.as_deref(), Some("CheckAccess"));
        assert_eq!(message.destination.as_deref(), Some("org.pim.Manager1"));
        assert_eq!(message.signature, "sas");
        assert_eq!(frame(&sample()).unwrap().unwrap().len, sample().len());
    }

    #[test]
    fn given_no_groups_or_no_args_then_still_well_formed() {
        let args = [Arg::Str("alice"), Arg::StrArray(&[])];
        let bytes = encode_method_call(&check_access_call(&args), 2).unwrap();
        assert_eq!(decode(&bytes).unwrap().signature, "sas");
        let bytes = encode_method_call(&HELLO, 1).unwrap();
        let message = decode(&bytes).unwrap();
        assert_eq!(message.signature, "");
        assert!(message.body.is_empty());
        assert_eq!(bytes.len() % 8, 0);
    }

    #[test]
    fn given_bad_arguments_then_encoding_refuses() {
        let args = [Arg::Str("ali\0ce")];
        assert!(encode_method_call(&check_access_call(&args), 2).is_err());
        let huge = "x".repeat(MAX_MESSAGE_BYTES);
        let args = [Arg::Str(&huge)];
        assert!(encode_method_call(&check_access_call(&args), 2).is_err());
        assert!(encode_method_call(&check_access_call(&[]), 0).is_err());
    }

    #[test]
    fn given_uids_then_auth_line_has_hex_of_decimal() {
        assert_eq!(auth_external(0), b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n");
        assert_eq!(
            auth_external(1000),
            b"\0AUTH EXTERNAL 31303030\r\nBEGIN\r\n"
        );
    }

    #[test]
    fn given_auth_replies_then_only_ok_with_guid_passes() {
        assert!(check_auth_reply(b"OK 0123456789abcdef0123456789ABCDEF").is_ok());
        for refused in [
            &b"REJECTED EXTERNAL"[..],
            b"ERROR",
            b"OK",
            b"OK ",
            b"OK 0123",
            b"OK 0123456789abcdef0123456789abcdeg",
            b"",
            b"\xff\x00\x1b[2J",
        ] {
            assert!(check_auth_reply(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn given_access_replies_in_both_byte_orders_then_decoded() {
        for endian in [Endian::Little, Endian::Big] {
            let message = decode(&access_reply(endian, 1, "")).unwrap();
            assert_eq!(message.kind, METHOD_RETURN);
            assert_eq!(message.reply_serial, Some(2));
            assert_eq!(message.sender.as_deref(), Some(":1.7"));
            assert_eq!(message.bool_and_string(), Ok((true, String::new())));
            let message = decode(&access_reply(endian, 0, "pim: ünïcödé refusal")).unwrap();
            assert_eq!(
                message.bool_and_string(),
                Ok((false, "pim: ünïcödé refusal".to_string()))
            );
        }
    }

    #[test]
    fn given_the_reply_as_a_struct_then_the_same() {
        for endian in [Endian::Little, Endian::Big] {
            let message = decode(&access_reply_signed(endian, "(bs)", 0, "no")).unwrap();
            assert_eq!(message.signature, "(bs)");
            assert_eq!(message.bool_and_string(), Ok((false, "no".to_string())));
            let plain = access_reply_signed(endian, "bs", 0, "no");
            let structured = access_reply_signed(endian, "(bs)", 0, "no");
            assert_eq!(
                decode(&plain).unwrap().body,
                decode(&structured).unwrap().body
            );
        }
    }

    #[test]
    fn given_a_boolean_other_than_0_or_1_then_refused() {
        for endian in [Endian::Little, Endian::Big] {
            assert!(decode(&access_reply(endian, 2, "x")).is_err());
        }
    }

    #[test]
    fn given_errors_then_name_and_text_decoded() {
        for endian in [Endian::Little, Endian::Big] {
            let bytes = reply(
                endian,
                ERROR,
                2,
                Some("org.pim.Manager1.Error.PermissionDenied"),
                "s",
                |b| b.string("only root may ask"),
            );
            let message = decode(&bytes).unwrap();
            assert_eq!(message.kind, ERROR);
            assert_eq!(
                message.error_name.as_deref(),
                Some("org.pim.Manager1.Error.PermissionDenied")
            );
            assert_eq!(message.error_text().unwrap(), "only root may ask");
            let bare = reply(endian, ERROR, 2, Some("a.b.C"), "", |_| {});
            assert_eq!(decode(&bare).unwrap().error_text().unwrap(), "");
        }
    }

    #[test]
    fn given_wrong_reply_signature_then_refused() {
        let bytes = reply(Endian::Little, METHOD_RETURN, 2, None, "s", |b| {
            b.string("x")
        });
        let message = decode(&bytes).unwrap();
        assert!(message.bool_and_string().is_err());
    }

    #[test]
    fn given_unknown_header_fields_and_complex_bodies_then_read_or_skipped() {
        for endian in [Endian::Little, Endian::Big] {
            let mut b = Build::new(endian, SIGNAL, 9);
            b.field_str(FIELD_PATH, b'o', "/a");
            b.field_str(FIELD_INTERFACE, b's', "a.b");
            b.field_str(FIELD_MEMBER, b's', "C");
            b.field_str(FIELD_SIGNATURE, b'g', "a{sv}(yxd)");
            // An unknown field 200 holding a variant of type a(su).
            b.pad(8);
            b.buf.push(200);
            b.sig("a(su)");
            b.u32(0);
            let at = b.buf.len() - 4;
            b.pad(8);
            let start = b.buf.len();
            b.string("k");
            b.u32(3);
            let len = b.buf.len() - start;
            b.set_u32(at, len as u32);
            let body_start = b.end_fields();
            // a{sv}: one entry "n" -> variant u 5.
            b.u32(0);
            let at = b.buf.len() - 4;
            b.pad(8);
            let start = b.buf.len();
            b.string("n");
            b.sig("u");
            b.u32(5);
            let len = b.buf.len() - start;
            b.set_u32(at, len as u32);
            // (yxd)
            b.pad(8);
            b.buf.push(1);
            b.pad(8);
            b.buf.extend_from_slice(&[0; 16]);
            let bytes = b.finish(body_start);
            let message = decode(&bytes).unwrap();
            assert_eq!(message.signature, "a{sv}(yxd)");
            assert_eq!(message.member.as_deref(), Some("C"));
            assert_eq!(message.endian, endian);
        }
        let message = decode(&signal(Endian::Big, "NameAcquired", 10)).unwrap();
        assert_eq!(message.kind, SIGNAL);
    }

    #[test]
    fn given_structural_faults_then_refused() {
        let good = access_reply(Endian::Little, 1, "ok");
        assert!(decode(&good).is_ok());
        let mut faults: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut with = |what: &'static str, change: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            change(&mut bytes);
            faults.push((what, bytes));
        };
        with("endianness", &|b| b[0] = b'x');
        with("version", &|b| b[3] = 2);
        with("type 0", &|b| b[1] = 0);
        with("serial 0", &|b| b[8..12].copy_from_slice(&[0; 4]));
        with("truncated", &|b| {
            b.pop();
        });
        with("trailing", &|b| b.push(0));
        with("body length", &|b| b[4] += 8);
        with("fields length", &|b| b[12] += 1);
        // SENDER's string ":1.7" ends at 37; 37..40 pad the next field to 8.
        with("field padding", &|b| b[37] = 1);
        with("reply serial 0", &|b| b[20..24].copy_from_slice(&[0; 4]));
        with("reply serial type", &|b| b[18] = b'i');
        with("field code 0", &|b| b[16] = 0);
        with("NUL in string", &|b| {
            let at = b.len() - 2;
            b[at] = 0;
        });
        with("unterminated string", &|b| {
            let at = b.len() - 1;
            b[at] = b'x';
        });
        with("invalid UTF-8", &|b| {
            let at = b.len() - 2;
            b[at] = 0xff;
        });
        for (what, bytes) in faults {
            assert!(decode(&bytes).is_err(), "{what} accepted");
        }
        // SENDER (at 24) turned into a second ERROR_NAME.
        let mut twice = reply(Endian::Little, ERROR, 2, Some("a.b.C"), "", |_| {});
        assert!(decode(&twice).is_ok());
        twice[24] = FIELD_ERROR_NAME;
        assert!(decode(&twice).is_err());
        // No REPLY_SERIAL in a METHOD_RETURN.
        let mut b = Build::new(Endian::Little, METHOD_RETURN, 1);
        let body_start = b.end_fields();
        assert!(decode(&b.finish(body_start)).is_err());
    }

    #[test]
    fn given_bad_signatures_then_refused() {
        for sig in [
            &b"("[..],
            b"()",
            b"a",
            b"{ss}",
            b"a{vs}",
            b"a{s}",
            b"a{sss}",
            b"z",
            b")",
        ] {
            let mut at = 0;
            let mut result = Ok(());
            while at < sig.len() && result.is_ok() {
                match complete_type_len(&sig[at..], 0) {
                    Ok(n) => at += n,
                    Err(e) => result = Err(e),
                }
            }
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(sig));
        }
        let deep = format!("{}y", "a".repeat(100));
        assert!(complete_type_len(deep.as_bytes(), 0).is_err());
        let deep = format!("{}y{}", "(".repeat(100), ")".repeat(100));
        assert!(complete_type_len(deep.as_bytes(), 0).is_err());
        assert_eq!(complete_type_len(b"a{s(ai)}x", 0), Ok(8));
    }

    #[test]
    fn given_frames_then_lengths_and_limits() {
        assert_eq!(frame(&sample()[..15]), Ok(None));
        let mut big = sample();
        big[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(frame(&big).is_err());
        big[4..8].copy_from_slice(&(MAX_MESSAGE_BYTES as u32).to_le_bytes());
        let f = frame(&big).unwrap().unwrap();
        assert!(f.len > MAX_MESSAGE_BYTES);
        assert!(decode(&big).is_err());
    }

    /// Deterministic xorshift, so that failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn exercise(bytes: &[u8]) {
        let _ = frame(bytes);
        if let Ok(message) = decode(bytes) {
            let _ = message.bool_and_string();
            let _ = message.error_text();
        }
        let _ = check_auth_reply(bytes);
    }

    #[test]
    fn given_mutated_and_truncated_messages_then_errors_not_panics() {
        let seeds = [
            sample(),
            access_reply(Endian::Little, 1, "allowed"),
            access_reply(Endian::Big, 0, "pim: no grant"),
            reply(Endian::Big, ERROR, 2, Some("a.b.C"), "s", |b| {
                b.string("why")
            }),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for seed in &seeds {
            for cut in 0..=seed.len() {
                exercise(&seed[..cut]);
            }
            for _ in 0..20_000 {
                let mut bytes = seed.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    match rng.below(4) {
                        0 => bytes[at] = rng.next() as u8,
                        1 => bytes[at] ^= 1 << rng.below(8),
                        2 => bytes[at] = [0, 1, 0xff, b'(', b'a', b'v', b'{'][rng.below(7)],
                        _ => {
                            let cut = rng.below(bytes.len() + 1);
                            bytes.truncate(cut.max(1));
                        }
                    }
                }
                exercise(&bytes);
            }
        }
        for _ in 0..20_000 {
            let len = rng.below(128);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&bytes);
        }
    }
}
