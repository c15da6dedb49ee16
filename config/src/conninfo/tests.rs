use super::*;

#[test]
fn given_quoted_and_escaped_values_then_pairs_are_read_as_libpq_does() {
    let got = pairs(r"host=db.example  dbname = 'my db' password='it\'s' user=a\ b").unwrap();
    let want = [
        ("host", "db.example"),
        ("dbname", "my db"),
        ("password", "it's"),
        ("user", "a b"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
}

#[test]
fn given_malformed_strings_then_the_error_says_what_is_wrong() {
    assert!(pairs("postgres://u@h/db")
        .unwrap_err()
        .contains("not a URL"));
    assert!(pairs("host").unwrap_err().contains("key=value"));
    assert!(pairs("password='open")
        .unwrap_err()
        .contains("no closing quote"));
}

fn transport(conninfo: &str) -> Result<(), String> {
    check_transport(&pairs(conninfo).unwrap())
}

#[test]
fn given_tcp_without_verified_tls_then_the_transport_is_refused_naming_the_fix() {
    for conninfo in [
        "host=db.example dbname=pim",
        "host=db.example sslmode=disable",
        "host=db.example sslmode=prefer",
        "host=db.example sslmode=require",
        "host=db.example sslmode=require sslrootcert=/etc/pim/fleet-ca.pem",
        "host=db.example sslmode=verify-ca sslrootcert=/etc/pim/fleet-ca.pem",
        "host=10.0.0.5 sslmode=verify-full sslrootcert=''",
        // A socket first and a TCP standby second: the standby counts.
        "host=/run/postgresql,db2.example sslmode=require",
        // hostaddr is TCP whatever host says (host is then only the name checked).
        "host=/run/postgresql hostaddr=10.0.0.5",
    ] {
        let refused = transport(conninfo).unwrap_err();
        assert!(
            refused.contains("connects over TCP"),
            "{conninfo}: {refused}"
        );
        assert!(
            refused.contains("sslmode=verify-full sslrootcert=FILE"),
            "{conninfo}: {refused}"
        );
    }
    assert!(transport("host=db.example sslmode=require")
        .unwrap_err()
        .contains("(db.example) with sslmode=require"));
    assert!(transport("host=db.example")
        .unwrap_err()
        .contains("with sslmode=prefer"));
}

#[test]
fn given_verify_full_with_a_ca_file_or_a_unix_socket_then_the_transport_is_accepted() {
    for conninfo in [
        "host=db.example sslmode=verify-full sslrootcert=/etc/pim/fleet-ca.pem",
        // SPEC's example: the CA is libpq's default file, DEFAULT_SSLROOTCERT.
        "host=db.example dbname=pim user=web7 sslmode=verify-full",
        "host=db1,db2 sslmode=verify-full sslrootcert=/etc/pim/fleet-ca.pem",
        "hostaddr=10.0.0.5 host=db sslmode=verify-full sslrootcert=/etc/pim/fleet-ca.pem",
        "host=/run/postgresql dbname=pim",
        "host=/var/run/postgresql,/run/pg sslmode=disable",
        "dbname=pim",
    ] {
        assert_eq!(transport(conninfo), Ok(()), "{conninfo}");
    }
}

#[test]
fn given_a_key_twice_then_the_string_is_refused_naming_it() {
    // The TCP client adds up repeated hosts: the rule would see the socket, pimd would
    // connect to db.example first, unverified.
    for (conninfo, key) in [
        ("host=db.example host=/run/postgresql", "host"),
        (
            "host=db sslmode=verify-full sslrootcert=/ca.pem sslmode=require",
            "sslmode",
        ),
    ] {
        let refused = pairs(conninfo).unwrap_err();
        assert!(
            refused.contains(&format!("gives {key} more than once")),
            "{conninfo}: {refused}"
        );
    }
}

#[test]
fn given_hostaddr_without_a_host_name_at_its_place_then_verify_full_is_refused() {
    // verify-full with no name checks nothing but the chain: any certificate of the CA
    // (another host's) would pass.
    for conninfo in [
        "hostaddr=10.0.0.5 sslmode=verify-full sslrootcert=/ca.pem",
        "host=/run/postgresql hostaddr=10.0.0.5 sslmode=verify-full sslrootcert=/ca.pem",
        "host=db1 hostaddr=10.0.0.5,10.0.0.6 sslmode=verify-full sslrootcert=/ca.pem",
        "host=db1,/run/postgresql hostaddr=10.0.0.5,10.0.0.6 sslmode=verify-full sslrootcert=/ca.pem",
    ] {
        let refused = transport(conninfo).unwrap_err();
        assert!(
            refused.contains("by hostaddr without the host name"),
            "{conninfo}: {refused}"
        );
    }
    transport("host=db1,db2 hostaddr=10.0.0.5,10.0.0.6 sslmode=verify-full sslrootcert=/ca.pem")
        .unwrap();
}
