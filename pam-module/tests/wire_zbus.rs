//! The module's own D-Bus encoder and decoder (`pam_pim::wire`) held against zbus, which pimd
//! and the `pim` client use: zbus must read our calls as we meant them, and we must read zbus's
//! replies and errors, in both byte orders.

use std::num::NonZeroU32;

use pam_pim::wire::{self, Arg};
use pim_common::types::AccessDecision;
use zbus::message::{Message, Type};
use zbus::wire::serialized::{Context, Data};
use zbus::wire::Endian;

/// zbus's reading of `bytes` (its header checked whole; callers deserialize the body).
fn zbus_reads(bytes: &[u8]) -> Message {
    let endian = match bytes[0] {
        b'l' => Endian::Little,
        _ => Endian::Big,
    };
    let data = Data::new(bytes.to_vec(), Context::new(endian, 0));
    // SAFETY: `from_bytes` is unsafe because it trusts file descriptors that come with the
    // bytes; these carry none.
    unsafe { Message::from_bytes(data) }.expect("zbus rejects the message")
}

fn check_access(user: &str, groups: &[String]) -> Vec<u8> {
    let args = [Arg::Str(user), Arg::StrArray(groups)];
    wire::encode_method_call(&wire::check_access_call(&args), 2).unwrap()
}

#[test]
fn zbus_reads_our_check_access_calls_as_meant() {
    let cases: Vec<(String, Vec<String>)> = vec![
        ("alice".into(), vec!["sudo".into()]),
        (
            "bob".into(),
            vec!["sudo".into(), "wheel".into(), "adm".into()],
        ),
        ("a".into(), vec![]),
        (
            "ünïcödé-user".into(),
            vec!["g1".into(), "".into(), "g_3".into()],
        ),
        ("x".repeat(255), vec!["y".repeat(300)]),
    ];
    for (user, groups) in cases {
        let bytes = check_access(&user, &groups);
        let message = zbus_reads(&bytes);
        let header = message.header();
        assert_eq!(message.message_type(), Type::MethodCall);
        assert_eq!(header.primary().serial_num().get(), 2);
        assert_eq!(header.path().unwrap().as_str(), "/org/pim/Manager1");
        assert_eq!(header.interface().unwrap().as_str(), "org.pim.Manager1");
        assert_eq!(header.member().unwrap().as_str(), "CheckAccess");
        assert_eq!(header.destination().unwrap().as_str(), "org.pim.Manager1");
        // zbus shows a body of several arguments as a structure.
        assert_eq!(header.signature().to_string(), "(sas)");
        let (got_user, got_groups): (String, Vec<String>) = message.body().deserialize().unwrap();
        assert_eq!(got_user, user);
        assert_eq!(got_groups, groups);
    }
}

#[test]
fn our_check_access_call_is_byte_for_byte_what_zbus_builds() {
    let groups = vec!["sudo".to_string(), "wheel".to_string()];
    let ours = check_access("alice", &groups);
    let theirs = Message::method_call("/org/pim/Manager1", "CheckAccess")
        .interface("org.pim.Manager1")
        .destination("org.pim.Manager1")
        .serial(NonZeroU32::new(2).unwrap())
        .endian(Endian::Little)
        .build(&("alice", &groups))
        .unwrap();
    // Same field order, same padding: the very same bytes.
    assert_eq!(ours, theirs.data().bytes());
    let ours = zbus_reads(&ours);
    let (user, got): (String, Vec<String>) = ours.body().deserialize().unwrap();
    assert_eq!((user.as_str(), got), ("alice", groups));
}

#[test]
fn our_hello_is_byte_for_byte_what_zbus_builds() {
    let ours = wire::encode_method_call(&wire::HELLO, 1).unwrap();
    let theirs = Message::method_call("/org/freedesktop/DBus", "Hello")
        .interface("org.freedesktop.DBus")
        .destination("org.freedesktop.DBus")
        .serial(NonZeroU32::new(1).unwrap())
        .endian(Endian::Little)
        .build(&())
        .unwrap();
    assert_eq!(ours, theirs.data().bytes());
    let message = zbus_reads(&ours);
    assert_eq!(message.header().member().unwrap().as_str(), "Hello");
    assert_eq!(message.header().signature().to_string(), "");
    assert_eq!(message.message_type(), Type::MethodCall);
    assert!(message.body().is_empty());
}

/// A call from pimd's point of view, with a sender, that zbus replies to.
fn incoming_call(endian: Endian) -> Message {
    Message::method_call("/org/pim/Manager1", "CheckAccess")
        .interface("org.pim.Manager1")
        .destination("org.pim.Manager1")
        .sender(":1.42")
        .serial(NonZeroU32::new(2).unwrap())
        .endian(endian)
        .build(&("alice", vec!["sudo".to_string()]))
        .unwrap()
}

#[test]
fn we_read_zbus_method_returns_in_both_byte_orders() {
    for endian in [Endian::Little, Endian::Big] {
        for decision in [
            AccessDecision {
                allowed: true,
                message: String::new(),
            },
            AccessDecision {
                allowed: false,
                message: "pim: your grant for role admin ended at 12:00; run 'pim activate admin'"
                    .into(),
            },
        ] {
            let call = incoming_call(endian);
            let reply = Message::method_return(&call.header())
                .build(&decision)
                .unwrap();
            let bytes = reply.data().bytes();
            assert_eq!(bytes[0], if endian == Endian::Big { b'B' } else { b'l' });
            let frame = wire::frame(bytes).unwrap().unwrap();
            assert_eq!(frame.len, bytes.len());
            assert_eq!(frame.kind, wire::METHOD_RETURN);
            let message = wire::decode(bytes).unwrap();
            assert_eq!(message.reply_serial, Some(2));
            assert_eq!(message.destination.as_deref(), Some(":1.42"));
            // zbus sends a returned struct as its fields: signature bs, not (bs).
            assert_eq!(message.signature, "bs");
            assert_eq!(
                message.bool_and_string().unwrap(),
                (decision.allowed, decision.message.clone())
            );
        }
    }
}

#[test]
fn we_read_zbus_errors_in_both_byte_orders() {
    for endian in [Endian::Little, Endian::Big] {
        let call = incoming_call(endian);
        let reply = Message::error(&call.header(), "org.pim.Manager1.Error.PermissionDenied")
            .build(&("only root may call CheckAccess",))
            .unwrap();
        let message = wire::decode(reply.data().bytes()).unwrap();
        assert_eq!(message.kind, wire::ERROR);
        assert_eq!(message.reply_serial, Some(2));
        assert_eq!(
            message.error_name.as_deref(),
            Some("org.pim.Manager1.Error.PermissionDenied")
        );
        assert_eq!(
            message.error_text().unwrap(),
            "only root may call CheckAccess"
        );

        let bare = Message::error(&call.header(), "org.freedesktop.DBus.Error.Failed")
            .build(&())
            .unwrap();
        let message = wire::decode(bare.data().bytes()).unwrap();
        assert_eq!(message.error_text().unwrap(), "");
    }
}

#[test]
fn we_read_zbus_signals() {
    for endian in [Endian::Little, Endian::Big] {
        let signal = Message::signal(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameAcquired",
        )
        .destination(":1.42")
        .endian(endian)
        .build(&(":1.42",))
        .unwrap();
        let message = wire::decode(signal.data().bytes()).unwrap();
        assert_eq!(message.kind, wire::SIGNAL);
        assert_eq!(message.member.as_deref(), Some("NameAcquired"));
        assert_eq!(message.signature, "s");
    }
}

#[test]
fn mutated_zbus_messages_give_errors_not_panics() {
    let mut seeds = Vec::new();
    for endian in [Endian::Little, Endian::Big] {
        let call = incoming_call(endian);
        seeds.push(call.data().bytes().to_vec());
        let decision = AccessDecision {
            allowed: false,
            message: "pim: no grant".into(),
        };
        let reply = Message::method_return(&call.header())
            .build(&decision)
            .unwrap();
        seeds.push(reply.data().bytes().to_vec());
        let error = Message::error(&call.header(), "org.pim.Manager1.Error.Failed")
            .build(&("why",))
            .unwrap();
        seeds.push(error.data().bytes().to_vec());
    }
    // Deterministic xorshift, so that a failure reproduces.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in &seeds {
        for _ in 0..20_000 {
            let mut bytes = seed.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                if next() % 8 == 0 {
                    bytes.truncate(at.max(1));
                } else {
                    bytes[at] = next() as u8;
                }
            }
            let _ = wire::frame(&bytes);
            if let Ok(message) = wire::decode(&bytes) {
                let _ = message.bool_and_string();
                let _ = message.error_text();
            }
        }
    }
}
