use super::*;

#[test]
fn given_malformed_strings_then_the_error_says_what_is_wrong() {
    assert!(ConnInfo::parse("host=/run/pg sslmode=allow")
        .unwrap_err()
        .contains("sslmode 'allow' is not supported"));
    assert!(ConnInfo::parse("host=/run/pg sslcert=/c")
        .unwrap_err()
        .contains("sslcert and sslkey go together"));
    assert!(ConnInfo::parse("host=/run/pg frobnicate=1")
        .unwrap_err()
        .contains("not valid"));
}

#[test]
fn given_tcp_without_verify_full_or_with_an_empty_sslrootcert_then_pimd_refuses_to_connect() {
    for conninfo in [
        "host=db.example user=pim_host_web7",
        "host=db.example sslmode=require",
        "host=db.example sslmode=verify-ca sslrootcert=/etc/pim/fleet-ca.pem",
        "host=db.example sslmode=verify-full sslrootcert=''",
    ] {
        let refused = ConnInfo::parse(conninfo).unwrap_err();
        assert!(
            refused.contains("connects over TCP (db.example)"),
            "{conninfo}: {refused}"
        );
    }
    let socket = ConnInfo::parse("host=/run/postgresql user=pim_host_web7").unwrap();
    assert_eq!(socket.tls, TlsMode::Prefer);
}

#[test]
fn given_a_string_without_timeouts_then_ours_are_set() {
    let info = ConnInfo::parse("host=h user=web7 sslmode=verify-full sslrootcert=/etc/pim/ca.crt")
        .unwrap();
    assert_eq!(info.tls, TlsMode::VerifyFull);
    assert_eq!(info.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    assert_eq!(info.config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
    assert_eq!(
        info.config.get_options(),
        Some("-c statement_timeout=10000")
    );
    let own =
        ConnInfo::parse("host=/run/pg connect_timeout=3 options='-c statement_timeout=1'").unwrap();
    assert_eq!(
        own.config.get_connect_timeout(),
        Some(&Duration::from_secs(3))
    );
    assert_eq!(own.config.get_options(), Some("-c statement_timeout=1"));
}

#[test]
fn given_pgpass_lines_then_the_first_match_wins_with_wildcards_and_escapes() {
    let text = "# comment\n\
                other:5432:pim:web7:nope\n\
                db.example:*:pim:web7:pa\\:ss\\\\word\n\
                *:*:*:*:fallback\n";
    assert_eq!(
        passfile_password(text, ["db.example", "5432", "pim", "web7"]).as_deref(),
        Some("pa:ss\\word")
    );
    assert_eq!(
        passfile_password(text, ["x", "1", "y", "z"]).as_deref(),
        Some("fallback")
    );
    assert_eq!(passfile_password("a:b:c\n", ["a", "b", "c", "d"]), None);
}

#[test]
fn given_a_passfile_others_can_read_then_it_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pim-passfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgpass");
    std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conninfo = format!("host=/run/pg user=web7 passfile={}", file.display());
    let refused = ConnInfo::parse(&conninfo).unwrap_err();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let accepted = ConnInfo::parse(&conninfo);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(refused.contains("readable by root only"), "{refused}");
    // The tests run as root (the e2e rules); the file is then root's.
    assert_eq!(
        accepted.unwrap().config.get_password(),
        Some(&b"secret"[..])
    );
}

/// A self-signed CA certificate, PEM.
fn ca_pem(name: &str) -> Vec<u8> {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509::X509Name};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut subject = X509Name::builder().unwrap();
    subject.append_entry_by_text("CN", name).unwrap();
    let subject = subject.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&subject).unwrap();
    cert.set_issuer_name(&subject).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    cert.build().to_pem().unwrap()
}

#[test]
fn given_sslrootcert_then_only_its_certificates_are_trusted_not_the_systems() {
    let root = std::env::temp_dir().join(format!("pim-rootcert-{}.crt", std::process::id()));
    std::fs::write(&root, ca_pem("pim fleet test ca")).unwrap();
    let conninfo = format!("host=h sslmode=verify-full sslrootcert={}", root.display());
    let builder = ConnInfo::parse(&conninfo).unwrap().ssl_builder();
    std::fs::remove_file(&root).unwrap();
    let connector = builder.unwrap().build();
    let trusted: Vec<String> = connector
        .context()
        .cert_store()
        .all_certificates()
        .iter()
        .map(|cert| format!("{:?}", cert.subject_name()))
        .collect();
    assert_eq!(trusted.len(), 1, "{:?}", &trusted[..trusted.len().min(3)]);
    assert!(trusted[0].contains("pim fleet test ca"), "{trusted:?}");
}

#[test]
fn given_verify_full_without_sslrootcert_then_libpqs_default_file_for_root_is_the_one_trusted() {
    for conninfo in [
        "host=db.example sslmode=verify-full",
        "host=/run/postgresql sslmode=verify-ca",
    ] {
        let info = ConnInfo::parse(conninfo).unwrap();
        assert_eq!(
            info.root_cert.as_deref(),
            Some(Path::new("/root/.postgresql/root.crt"))
        );
    }
}

#[test]
fn given_an_unreadable_sslrootcert_then_the_error_names_it() {
    let info = ConnInfo::parse("host=h sslmode=verify-full sslrootcert=/nonexistent/ca.crt");
    let error = info.unwrap().ssl_builder().err().unwrap();
    assert!(error.contains("sslrootcert /nonexistent/ca.crt"), "{error}");
}

#[test]
fn given_an_sslrootcert_others_can_write_then_it_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("pim-rootcert-w-{}.crt", std::process::id()));
    std::fs::write(&root, ca_pem("pim fleet test ca")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o666)).unwrap();
    let conninfo = format!("host=h sslmode=verify-full sslrootcert={}", root.display());
    let refused = ConnInfo::parse(&conninfo).unwrap().ssl_builder().err();
    std::fs::remove_file(&root).unwrap();
    let refused = refused.unwrap();
    assert!(refused.contains("writable by root only"), "{refused}");
}

#[test]
fn given_an_sslrootcert_link_or_in_a_directory_others_can_write_then_it_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pim-rootcert-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let real = dir.join("real.crt");
    std::fs::write(&real, ca_pem("pim fleet test ca")).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A link: whoever made it chooses the file (the system's whole CA bundle, say).
    let link = dir.join("link.crt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let refused = ConnInfo::parse(&format!(
        "host=h sslmode=verify-full sslrootcert={}",
        link.display()
    ))
    .unwrap()
    .ssl_builder()
    .err()
    .unwrap();
    assert!(refused.contains("link.crt"), "{refused}");
    // A directory others can write (not sticky): the file can be swapped under pimd.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = ConnInfo::parse(&format!(
        "host=h sslmode=verify-full sslrootcert={}",
        real.display()
    ))
    .unwrap()
    .ssl_builder()
    .err()
    .unwrap();
    assert!(refused.contains("is not root's alone"), "{refused}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(ConnInfo::parse(&format!(
        "host=h sslmode=verify-full sslrootcert={}",
        real.display()
    ))
    .unwrap()
    .ssl_builder()
    .is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}
