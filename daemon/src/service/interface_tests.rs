//! pimd serves the committed interface: the object's introspection, as a peer reads it,
//! names the same methods and signals, with the same arguments, as
//! `common/interface/org.pim.Manager1.xml`.

use super::*;
use pim_common::introspection::{members, MANAGER1_XML};
use std::os::unix::net::UnixStream;
use zbus::connection::Builder;
use zbus::proxy::CacheProperties;

/// The introspection XML of the manager object, asked over a peer-to-peer connection to a
/// `ManagerService` (no bus: nothing else on the object is called).
async fn served_introspection() -> String {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let guid = zbus::Guid::generate();
    let (server, client) = tokio::join!(
        Builder::unix_stream(ours).server(guid).p2p().build(),
        Builder::unix_stream(theirs).p2p().build(),
    );
    let (server, client) = (server.unwrap(), client.unwrap());
    let bus = fdo::DBusProxy::builder(&server)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .unwrap();
    let host = tests::AccessHost::new("introspection");
    let service = ManagerService::new(host.core.clone(), bus, host.access.clone());
    server
        .object_server()
        .at(OBJECT_PATH, service)
        .await
        .unwrap();
    let reply = client
        .call_method(
            None::<&str>,
            OBJECT_PATH,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        )
        .await
        .unwrap();
    reply.body().deserialize::<String>().unwrap()
}

#[tokio::test]
async fn given_the_served_object_then_its_interface_is_the_committed_one() {
    let served = served_introspection().await;
    let served_members = members(&served, INTERFACE).unwrap();
    let committed = members(MANAGER1_XML, INTERFACE).unwrap();
    assert_eq!(
        served_members, committed,
        "pimd's #[interface] and common/interface/org.pim.Manager1.xml disagree; pimd serves:\n\
         {served}"
    );
}
