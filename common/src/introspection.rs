//! The interface `org.pim.Manager1` as committed (`common/interface/org.pim.Manager1.xml`),
//! and a reader for the part of the D-Bus introspection format it is written in. Tests hold
//! each side that speaks the interface against it, pimd's `#[interface]` (daemon) and the
//! proxy (here), so a method added to one side only fails. Built for tests only (feature
//! `introspection`).

/// The committed description of `org.pim.Manager1`.
pub const MANAGER1_XML: &str = include_str!("../interface/org.pim.Manager1.xml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Method,
    Signal,
}

/// One argument: its D-Bus type and whether the method returns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arg {
    pub name: Option<String>,
    pub signature: String,
    pub out: bool,
}

/// A method or signal of the interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub kind: Kind,
    pub name: String,
    pub args: Vec<Arg>,
}

impl Member {
    /// The signature of what the caller sends (for a signal: of what it carries).
    pub fn in_signature(&self) -> String {
        self.signature(self.kind == Kind::Signal)
    }

    /// The signature of the reply's body.
    pub fn out_signature(&self) -> String {
        match self.kind {
            Kind::Method => self.signature(true),
            Kind::Signal => String::new(),
        }
    }

    fn signature(&self, out: bool) -> String {
        self.args
            .iter()
            .filter(|a| a.out == out)
            .map(|a| a.signature.as_str())
            .collect()
    }
}

/// The members of interface `interface` in an introspection document, by name. Properties,
/// nested nodes and other interfaces are skipped; annotations are ignored.
pub fn members(xml: &str, interface: &str) -> Result<Vec<Member>, String> {
    let mut rest = xml;
    let mut inside = false;
    let mut found = false;
    let mut current: Option<Member> = None;
    let mut members = Vec::new();
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").ok_or("unterminated comment")?;
            rest = &comment[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("unterminated tag")?;
        let tag = Tag::parse(&rest[1..end])?;
        rest = &rest[end + 1..];
        match (tag.name, tag.closing) {
            ("interface", false) => {
                inside = tag.attribute("name") == Some(interface);
                found |= inside;
            }
            ("interface", true) => inside = false,
            _ if !inside => {}
            ("method" | "signal", false) => {
                let name = tag.attribute("name").ok_or("a member without a name")?;
                let member = Member {
                    kind: if tag.name == "method" {
                        Kind::Method
                    } else {
                        Kind::Signal
                    },
                    name: name.to_owned(),
                    args: Vec::new(),
                };
                if tag.empty {
                    members.push(member);
                } else {
                    current = Some(member);
                }
            }
            ("method" | "signal", true) => {
                members.extend(current.take());
            }
            ("arg", false) => {
                let member = current.as_mut().ok_or("an arg outside any member")?;
                let signature = tag.attribute("type").ok_or("an arg without a type")?;
                let out = match (member.kind, tag.attribute("direction")) {
                    (Kind::Signal, None | Some("out")) | (Kind::Method, Some("out")) => true,
                    (Kind::Method, None | Some("in")) => false,
                    (_, Some(other)) => return Err(format!("arg direction {other:?}")),
                };
                member.args.push(Arg {
                    name: tag.attribute("name").map(str::to_owned),
                    signature: signature.to_owned(),
                    out,
                });
            }
            _ => {}
        }
    }
    if !found {
        return Err(format!("no interface {interface}"));
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

/// One tag: `<name a="v" ...>`, `</name>` or `<name .../>`.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    empty: bool,
    attributes: Vec<(&'a str, &'a str)>,
}

impl<'a> Tag<'a> {
    fn parse(text: &'a str) -> Result<Tag<'a>, String> {
        let (closing, text) = match text.strip_prefix('/') {
            Some(t) => (true, t),
            None => (false, text),
        };
        let (empty, text) = match text.strip_suffix('/') {
            Some(t) => (true, t),
            None => (false, text),
        };
        let text = text.trim();
        let (name, mut rest) = text.split_at(text.find(char::is_whitespace).unwrap_or(text.len()));
        let mut attributes = Vec::new();
        // Declarations (<?xml ...?>, <!DOCTYPE ...>) carry nothing this reader needs.
        if !name.starts_with(['?', '!']) {
            while let Some(eq) = rest.find('=') {
                let key = rest[..eq].trim();
                let value = rest[eq + 1..].trim_start();
                let quote = value.chars().next().ok_or("an attribute without a value")?;
                let value = &value[1..];
                let close = value.find(quote).ok_or("an unterminated attribute")?;
                attributes.push((key, &value[..close]));
                rest = &value[close + 1..];
            }
        }
        Ok(Tag {
            name,
            closing,
            empty,
            attributes,
        })
    }

    fn attribute(&self, key: &str) -> Option<&'a str> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// How zbus names a member after its Rust method: `list_roles` is `ListRoles`.
pub fn member_name(rust_name: &str) -> String {
    rust_name
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        AccessDecision, ActivateReply, AlertInfo, AssignmentInfo, AuditRecord, DecidedRole,
        EventInfo, FleetHostDisabled, FleetHostInfo, FleetStateInfo, GrantEnd, GrantInfo,
        MfaStatusInfo, RequestDetail, RequestInfo, ReviewInfo, ReviewItemInfo, RoleInfo,
    };
    use zbus::Type;

    #[test]
    fn given_a_document_then_members_of_that_interface_only() {
        let xml = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.freedesktop.DBus.Peer"><method name="Ping"/></interface>
  <interface name="org.pim.Manager1">
    <!-- <method name="Commented"/> -->
    <method name="Cancel">
      <arg name="id" type="x" direction="in"/>
      <arg type="(sx)" direction="out"/>
    </method>
    <method name="Watch"/>
    <signal name="Event"><arg name="event" type="(s)"/></signal>
  </interface>
</node>"#;
        let got = members(xml, "org.pim.Manager1").unwrap();
        let names: Vec<&str> = got.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Cancel", "Event", "Watch"]);
        assert_eq!(got[0].in_signature(), "x");
        assert_eq!(got[0].out_signature(), "(sx)");
        assert_eq!(got[1].kind, Kind::Signal);
        assert_eq!(got[1].in_signature(), "(s)");
        assert!(got[2].args.is_empty());
        assert!(members(xml, "org.pim.Other1").is_err());
    }

    #[test]
    fn given_rust_names_then_member_names_as_zbus_makes_them() {
        assert_eq!(member_name("list_roles"), "ListRoles");
        assert_eq!(member_name("admin_mfa_reset"), "AdminMfaReset");
        assert_eq!(member_name("event"), "Event");
    }

    /// The D-Bus signature of a type as the proxy spells it.
    fn signature_of(ty: &syn::Type) -> String {
        match ty {
            syn::Type::Reference(r) => signature_of(&r.elem),
            syn::Type::Tuple(t) => {
                let inner: String = t.elems.iter().map(signature_of).collect();
                format!("({inner})")
            }
            syn::Type::Path(p) => {
                let last = p.path.segments.last().expect("a type name");
                let generic = || match &last.arguments {
                    syn::PathArguments::AngleBracketed(a) => match a.args.first() {
                        Some(syn::GenericArgument::Type(t)) => signature_of(t),
                        _ => panic!("unexpected generic arguments in {}", last.ident),
                    },
                    _ => panic!("{} without its element type", last.ident),
                };
                match last.ident.to_string().as_str() {
                    "str" | "String" => "s".into(),
                    "bool" => "b".into(),
                    "u32" => "u".into(),
                    "i64" => "x".into(),
                    "u64" => "t".into(),
                    "Vec" => format!("a{}", generic()),
                    "RoleInfo" => RoleInfo::SIGNATURE.to_string(),
                    "GrantInfo" => GrantInfo::SIGNATURE.to_string(),
                    "RequestInfo" => RequestInfo::SIGNATURE.to_string(),
                    "ActivateReply" => ActivateReply::SIGNATURE.to_string(),
                    "MfaStatusInfo" => MfaStatusInfo::SIGNATURE.to_string(),
                    "AuditRecord" => AuditRecord::SIGNATURE.to_string(),
                    "AccessDecision" => AccessDecision::SIGNATURE.to_string(),
                    "EventInfo" => EventInfo::SIGNATURE.to_string(),
                    "GrantEnd" => GrantEnd::SIGNATURE.to_string(),
                    "Verification" => crate::chain::Verification::SIGNATURE.to_string(),
                    "AlertInfo" => AlertInfo::SIGNATURE.to_string(),
                    "AssignmentInfo" => AssignmentInfo::SIGNATURE.to_string(),
                    "RequestDetail" => RequestDetail::SIGNATURE.to_string(),
                    "DecidedRole" => DecidedRole::SIGNATURE.to_string(),
                    "ReviewInfo" => ReviewInfo::SIGNATURE.to_string(),
                    "ReviewItemInfo" => ReviewItemInfo::SIGNATURE.to_string(),
                    "FleetHostInfo" => FleetHostInfo::SIGNATURE.to_string(),
                    "FleetStateInfo" => FleetStateInfo::SIGNATURE.to_string(),
                    "FleetHostDisabled" => FleetHostDisabled::SIGNATURE.to_string(),
                    other => panic!("type {other} in the proxy: add it to this test's table"),
                }
            }
            other => panic!("unexpected type in the proxy: {other:?}"),
        }
    }

    /// What a proxy method's `Result<T, _>` puts in the reply: a tuple is one argument each.
    fn reply_signature(output: &syn::ReturnType) -> String {
        let syn::ReturnType::Type(_, ty) = output else {
            panic!("a proxy method without a result");
        };
        let syn::Type::Path(p) = ty.as_ref() else {
            panic!("a proxy method not returning a Result");
        };
        let last = p.path.segments.last().expect("Result");
        let syn::PathArguments::AngleBracketed(a) = &last.arguments else {
            panic!("Result without its types");
        };
        match a.args.first() {
            Some(syn::GenericArgument::Type(syn::Type::Tuple(t))) => {
                t.elems.iter().map(signature_of).collect()
            }
            Some(syn::GenericArgument::Type(t)) => signature_of(t),
            _ => panic!("Result without its types"),
        }
    }

    /// The members `common/src/proxy.rs` declares, read from its source.
    fn proxy_members() -> Vec<Member> {
        let file = syn::parse_file(include_str!("proxy.rs")).expect("proxy.rs parses");
        let manager = file
            .items
            .iter()
            .find_map(|item| match item {
                syn::Item::Trait(t) if t.ident == "Manager" => Some(t),
                _ => None,
            })
            .expect("trait Manager in proxy.rs");
        let mut members: Vec<Member> = manager
            .items
            .iter()
            .filter_map(|item| match item {
                syn::TraitItem::Fn(f) => Some(f),
                _ => None,
            })
            .map(|f| {
                let signal = f.attrs.iter().any(|a| {
                    a.path().is_ident("zbus")
                        && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "signal")
                });
                let sig = &f.sig;
                let mut args: Vec<Arg> = sig
                    .inputs
                    .iter()
                    .filter_map(|input| match input {
                        syn::FnArg::Typed(t) => Some(Arg {
                            name: None,
                            signature: signature_of(&t.ty),
                            out: signal,
                        }),
                        syn::FnArg::Receiver(_) => None,
                    })
                    .collect();
                if !signal {
                    let reply = reply_signature(&sig.output);
                    if !reply.is_empty() && reply != "()" {
                        args.push(Arg {
                            name: None,
                            signature: reply,
                            out: true,
                        });
                    }
                }
                Member {
                    kind: if signal { Kind::Signal } else { Kind::Method },
                    name: member_name(&sig.ident.to_string()),
                    args,
                }
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }

    /// Kind, name and the in and out signatures: what a caller and the callee must agree on.
    fn shape(members: &[Member]) -> Vec<(Kind, String, String, String)> {
        members
            .iter()
            .map(|m| (m.kind, m.name.clone(), m.in_signature(), m.out_signature()))
            .collect()
    }

    #[test]
    fn given_the_proxy_then_it_declares_the_committed_interface() {
        let committed = members(MANAGER1_XML, crate::INTERFACE).unwrap();
        assert_eq!(
            shape(&proxy_members()),
            shape(&committed),
            "common/src/proxy.rs and common/interface/org.pim.Manager1.xml disagree"
        );
    }
}
