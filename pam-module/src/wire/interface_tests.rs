//! The module's own call of pimd is the one the committed interface
//! (`common/interface/org.pim.Manager1.xml`) declares: same member, same argument signature,
//! and a reply of the declared type is one the module reads.

use super::testing::*;
use super::*;
use pim_common::introspection::{members, Kind, MANAGER1_XML};

#[test]
fn given_the_committed_interface_then_check_access_is_called_and_read_as_declared() {
    let groups = ["sudo".to_string(), "docker".to_string()];
    let args = check_access_args("alice", &groups);
    let call = check_access_call(&args);
    assert_eq!(call.interface, pim_common::INTERFACE);
    let committed = members(MANAGER1_XML, call.interface).unwrap();
    let declared = committed
        .iter()
        .find(|m| m.kind == Kind::Method && m.name == call.member)
        .unwrap_or_else(|| panic!("{} is not in the committed interface", call.member));

    let sent = decode(&encode_method_call(&call, 2).unwrap()).unwrap();
    assert_eq!(sent.member.as_deref(), Some(declared.name.as_str()));
    assert_eq!(sent.signature, declared.in_signature());

    for endian in [Endian::Little, Endian::Big] {
        let reply = access_reply_signed(endian, &declared.out_signature(), 1, "why");
        let read = decode(&reply).unwrap().bool_and_string().unwrap();
        assert_eq!(read, (true, "why".to_string()));
    }
}
