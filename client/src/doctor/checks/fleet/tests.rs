use super::*;
use crate::doctor::findings::Status;
use crate::doctor::testing::config_file;

fn config() -> ConfigFile {
    config_file("[fleet]\ndatabase = \"host=/run/postgresql dbname=pim\"\n")
}

fn fleet(database: &str) -> FleetConfig {
    FleetConfig {
        database: database.into(),
        host: Some("web7".into()),
        max_staleness_secs: 600,
    }
}

const TCP: &str = "host=db.example hostaddr=192.0.2.20 dbname=pim user=pim_host_web7 \
                   sslmode=verify-full passfile=/etc/pim/pgpass";

#[test]
fn given_trusted_files_pimd_would_take_then_the_fleet_check_passes_naming_them() {
    let f = check_fleet(&config(), &fleet(TCP), &|_| Ok(()));
    assert_eq!(f.status, Status::Pass, "{f:?}");
    assert!(
        f.message
            .contains("sslrootcert /root/.postgresql/root.crt (root's), passfile /etc/pim/pgpass"),
        "{f:?}"
    );
    assert!(f.message.contains("this host is 'web7'"), "{f:?}");
    assert!(f.message.contains("max_staleness 10m"), "{f:?}");
}

#[test]
fn given_a_ca_file_others_may_change_then_the_fleet_check_fails_saying_which() {
    let f = check_fleet(&config(), &fleet(TCP), &|file| {
        if file.key == "sslrootcert" {
            Err("sslrootcert /root/.postgresql/root.crt is owned by uid 1000\u{1b}[2J".into())
        } else {
            Ok(())
        }
    });
    assert_eq!(f.status, Status::Fail);
    assert!(f.message.contains("owned by uid 1000"), "{f:?}");
    assert!(!f.message.contains('\u{1b}'), "{f:?}");
}

fn state() -> FleetStateInfo {
    FleetStateInfo {
        host: "web7".into(),
        policy_version: 4,
        last_sync: 1_000,
        db_now: 998,
        synced_policy_version: 4,
        max_staleness_secs: 600,
        ..FleetStateInfo::default()
    }
}

#[test]
fn given_a_fresh_link_then_fleet_link_passes_with_the_figures() {
    let f = check_fleet_link(&state(), 1_030);
    assert_eq!(f.status, Status::Pass, "{f:?}");
    assert_eq!(
        f.message,
        "last synchronised 30s ago (max_staleness 10m), clock skew 2 s, policy version 4"
    );
}

#[test]
fn given_a_stale_host_then_fleet_link_fails_saying_it_refuses_grants() {
    let stale = FleetStateInfo {
        stale: "this host last synchronised with the fleet's database 00:16 UTC, more than \
                max_staleness (10m) ago"
            .into(),
        unreachable: true,
        ..state()
    };
    let f = check_fleet_link(&stale, 1_700);
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert!(f.message.contains("pimd refuses fleet grants"), "{f:?}");
    assert!(f.message.contains("got no snapshot"), "{f:?}");
}

#[test]
fn given_a_host_that_never_synchronised_then_fleet_link_warns() {
    let never = FleetStateInfo {
        last_sync: 0,
        db_now: 0,
        stale: "this host has not synchronised with the fleet's database yet".into(),
        ..state()
    };
    let f = check_fleet_link(&never, 1_000);
    assert_eq!(f.status, Status::Warn, "{f:?}");
    assert!(f.message.contains("has not synchronised"), "{f:?}");
}

#[test]
fn given_a_fresh_host_whose_last_round_failed_or_skipped_a_policy_then_fleet_link_warns() {
    let failing = FleetStateInfo {
        unreachable: true,
        ..state()
    };
    assert_eq!(check_fleet_link(&failing, 1_030).status, Status::Warn);
    let behind = FleetStateInfo {
        synced_policy_version: 5,
        ..state()
    };
    let f = check_fleet_link(&behind, 1_030);
    assert_eq!(f.status, Status::Warn);
    assert!(f.message.contains("policy version 5"), "{f:?}");
}

fn pairs(text: &str) -> Vec<(String, String)> {
    pim_config::conninfo::pairs(text).unwrap()
}

const DROP_IN: &str = "PrivateNetwork=no\nIPAddressAllow=192.0.2.20/32 192.0.2.21/32\n\
                       IPAddressDeny=0.0.0.0/0 ::/0\n";

#[test]
fn given_the_fleet_drop_in_in_effect_then_fleet_unit_passes() {
    let f = judge_unit(DROP_IN, &pairs(TCP));
    assert_eq!(f.status, Status::Pass, "{f:?}");
    assert!(f.message.contains("192.0.2.20/32"), "{f:?}");
    assert!(f.message.contains("db.example by name"), "{f:?}");
}

#[test]
fn given_the_unit_without_the_drop_in_then_fleet_unit_fails() {
    let shipped = "PrivateNetwork=yes\nIPAddressAllow=\nIPAddressDeny=0.0.0.0/0 ::/0\n";
    let f = judge_unit(shipped, &pairs(TCP));
    assert_eq!(f.status, Status::Fail);
    assert!(f.message.contains("PrivateNetwork=yes"), "{f:?}");
    assert!(f.fix.unwrap().contains("pimd-fleet-network.conf"));

    let other_address = "PrivateNetwork=no\nIPAddressAllow=198.51.100.0/24\n\
                         IPAddressDeny=0.0.0.0/0 ::/0\n";
    let f = judge_unit(other_address, &pairs(TCP));
    assert_eq!(f.status, Status::Fail, "{f:?}");
    assert!(f.message.contains("refuses pimd 192.0.2.20"), "{f:?}");

    let open = "PrivateNetwork=no\nIPAddressAllow=\nIPAddressDeny=\n";
    assert_eq!(judge_unit(open, &pairs(TCP)).status, Status::Warn);
}

#[test]
fn given_a_unix_socket_then_fleet_unit_needs_no_network() {
    let shipped = "PrivateNetwork=yes\nIPAddressAllow=\nIPAddressDeny=0.0.0.0/0 ::/0\n";
    let f = judge_unit(shipped, &pairs("host=/run/postgresql dbname=pim"));
    assert_eq!(f.status, Status::Pass, "{f:?}");
}

#[test]
fn given_prefixes_then_covers_tells_which_addresses_they_hold() {
    let (net, len) = prefix("192.0.2.0/24").unwrap();
    assert!(covers(net, len, "192.0.2.20".parse().unwrap()));
    assert!(!covers(net, len, "192.0.3.1".parse().unwrap()));
    let (any6, zero) = prefix("::/0").unwrap();
    assert!(!covers(any6, zero, "192.0.2.20".parse().unwrap()));
    assert_eq!(prefix("10.0.0.1"), Some(("10.0.0.1".parse().unwrap(), 32)));
}
