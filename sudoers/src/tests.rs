use super::*;
use std::collections::HashMap;

fn one(text: &str) -> Vec<(PathBuf, String)> {
    vec![(PathBuf::from("/etc/sudoers.d/site"), text.to_string())]
}

fn who(text: &str) -> Vec<Vec<String>> {
    root_rules(&one(text))
        .into_iter()
        .map(|r| r.who.iter().map(Who::to_string).collect())
        .collect()
}

#[test]
fn given_a_plain_rule_then_its_user_gets_root_with_file_and_line() {
    let rules = root_rules(&one("# site rules\n\nalice ALL=(ALL) ALL\n"));
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].file, PathBuf::from("/etc/sudoers.d/site"));
    assert_eq!(rules[0].line, 3);
    assert_eq!(rules[0].who, [Who::User("alice".into())]);
    assert_eq!(rules[0].text, "alice ALL=(ALL) ALL");
}

#[test]
fn given_each_way_of_naming_someone_then_each_is_read() {
    assert_eq!(
        who("alice, #1001,%wheel , %#27, %:ad_admins, +ops ALL = ALL\n"),
        [["alice", "#1001", "%wheel", "%#27", "%:ad_admins", "+ops"]]
    );
    assert_eq!(who("ALL ALL=(ALL:ALL) ALL\n"), [["ALL"]]);
}

#[test]
fn given_run_as_lists_then_only_root_targets_count() {
    // No run-as list: root is sudo's default.
    assert_eq!(who("alice ALL = /usr/bin/apt\n"), [["alice"]]);
    assert_eq!(
        who("alice ALL = (root) NOPASSWD: /usr/bin/apt\n"),
        [["alice"]]
    );
    assert_eq!(who("alice ALL = (#0) ALL\n"), [["alice"]]);
    assert_eq!(who("alice ALL = (ALL:ALL) ALL\n"), [["alice"]]);
    assert!(who("alice ALL = (postgres) ALL\n").is_empty());
    assert!(who("alice ALL = (:wheel) ALL\n").is_empty());
    assert!(who("alice ALL = (ALL, !root) ALL\n").is_empty());
    assert_eq!(who("alice ALL = (!root, ALL) ALL\n"), [["alice"]]);
    assert!(who("alice ALL = (postgres, !root) ALL\n").is_empty());
    // The run-as list carries over until another one is given.
    assert_eq!(
        who("alice ALL = (postgres) /bin/psql, (root) /bin/ls\n"),
        [["alice"]]
    );
    assert!(who("alice ALL = (postgres) /bin/psql, /bin/ls\n").is_empty());
    // A second host spec.
    assert_eq!(
        who("alice db1 = (postgres) ALL : web1 = (root) /bin/systemctl\n"),
        [["alice"]]
    );
    // Colons inside a command, tags and run-as lists are not host spec separators.
    assert!(who("alice ALL = (postgres) /bin/chown a:b /x\n").is_empty());
}

#[test]
fn given_aliases_then_they_are_expanded_with_their_negations() {
    let text = "User_Alias ADMINS = alice, %ops, !bob : OTHERS = carol\n\
                Runas_Alias ROOT = root\nRunas_Alias DB = postgres\n\
                Host_Alias HOSTS = web1, web2\n\
                Cmnd_Alias NOTHING = !ALL\n\
                ADMINS HOSTS = (ROOT) ALL\n\
                OTHERS ALL = (DB) ALL\n\
                dave ALL = NOTHING\n\
                erin ALL = !NOTHING\n\
                ALL, !ADMINS ALL = ALL\n";
    let rules = root_rules(&one(text));
    let found: Vec<(usize, Vec<String>)> = rules
        .iter()
        .map(|r| (r.line, r.who.iter().map(Who::to_string).collect()))
        .collect();
    assert_eq!(
        found,
        [
            (6, vec!["alice".to_string(), "%ops".to_string()]),
            (9, vec!["erin".to_string()]),
            (10, vec!["ALL".to_string(), "bob".to_string()]),
        ]
    );
}

#[test]
fn given_a_rule_using_aliases_then_it_carries_their_definitions_through_nested_ones() {
    let text = "Cmnd_Alias WEB = /usr/bin/systemctl restart nginx, LOGS\n\
                Cmnd_Alias LOGS = /usr/bin/journalctl\n\
                Cmnd_Alias UNUSED = ALL\n\
                User_Alias WEBOPS = alice\n\
                Runas_Alias ROOT = root\n\
                WEBOPS ALL = (ROOT) NOPASSWD: WEB\n\
                bob ALL = ALL\n";
    let rules = root_rules(&one(text));
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0].aliases,
        [
            "Cmnd_Alias LOGS = /usr/bin/journalctl",
            "Cmnd_Alias WEB = /usr/bin/systemctl restart nginx, LOGS",
            "Runas_Alias ROOT = root",
            "User_Alias WEBOPS = alice",
        ]
    );
    // A rule that names no alias carries none (ALL is a word of sudo's, not one).
    assert!(rules[1].aliases.is_empty());
    // The alias redefined: the same text, other definitions.
    let stronger = text.replace("LOGS = /usr/bin/journalctl", "LOGS = ALL");
    let again = root_rules(&one(&stronger));
    assert_eq!(again[0].text, rules[0].text);
    assert_ne!(again[0].aliases, rules[0].aliases);
}

#[test]
fn given_negated_users_and_commands_then_what_is_left_counts() {
    assert_eq!(who("%sudo, !alice ALL = ALL\n"), [["%sudo"]]);
    assert!(who("alice, !alice ALL = ALL\n").is_empty());
    assert_eq!(who("!alice, alice ALL = ALL\n"), [["alice"]]);
    assert!(who("alice ALL = !ALL\n").is_empty());
    assert_eq!(who("alice ALL = ALL, !/bin/sh\n"), [["alice"]]);
}

#[test]
fn given_defaults_aliases_comments_and_continuations_then_only_rules_are_rules() {
    let text = "Defaults env_reset\nDefaults:alice !requiretty\n# bob ALL=(ALL) ALL\n\
                @includedir /etc/sudoers.d\ncarol ALL = \\\n  (ALL) ALL # why\n\
                #1000 ALL=(ALL) ALL\n";
    let rules = root_rules(&one(text));
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0].line, 5);
    assert_eq!(rules[0].who, [Who::User("carol".into())]);
    assert_eq!(rules[1].who, [Who::Uid(1000)]);
}

#[test]
fn given_tags_options_and_digests_then_the_command_is_still_seen() {
    assert_eq!(
        who("alice ALL = (root) NOPASSWD:SETENV: TIMEOUT=1h sha256:abcd /bin/ls\n"),
        [["alice"]]
    );
}

#[test]
fn sudoers_defaults_are_read_with_their_lines() {
    let text = "# Defaults !pam_acct_mgmt\nDefaults env_reset, !pam_acct_mgmt\n\
                Defaults:alice targetpw # why\nDefaults>root \\\n  rootpw,runaspw\n\
                alice ALL=(ALL) ALL\nDefaultsx foo\n";
    assert_eq!(
        defaults(text),
        [
            (2, "env_reset".to_string()),
            (2, "!pam_acct_mgmt".to_string()),
            (3, "targetpw".to_string()),
            (4, "rootpw".to_string()),
            (4, "runaspw".to_string()),
        ]
    );
}

#[test]
fn given_defaults_bound_to_a_uid_or_to_a_list_with_blanks_then_their_options_are_read() {
    let text = "Defaults:#1000 !pam_acct_mgmt\nDefaults>#0 targetpw\n\
                Defaults: alice !pam_acct_mgmt\nDefaults:alice, bob rootpw\n\
                Defaults:alice,bob ,  carol runaspw, env_reset # why\n\
                Defaults@\"host one\" !pam_acct_mgmt\n";
    assert_eq!(
        defaults(text),
        [
            (1, "!pam_acct_mgmt".to_string()),
            (2, "targetpw".to_string()),
            (3, "!pam_acct_mgmt".to_string()),
            (4, "rootpw".to_string()),
            (5, "runaspw".to_string()),
            (5, "env_reset".to_string()),
            (6, "!pam_acct_mgmt".to_string()),
        ]
    );
}

#[test]
fn given_include_directives_then_the_files_they_name_are_read_wherever_they_are() {
    let fs: HashMap<PathBuf, String> = [
        (
            "/etc/sudoers",
            "@include /opt/site/sudoers\n#include local\n@includedir /srv/rules\n\
             #includedir /etc/sudoers.d\n@include /etc/sudoers\n",
        ),
        ("/opt/site/sudoers", "Defaults !pam_acct_mgmt\n"),
        ("/etc/local", "Defaults targetpw\n"),
        ("/srv/rules/a", "Defaults rootpw\n"),
        ("/etc/sudoers.d/b", "@include \"/opt/site/quoted file\"\n"),
        ("/opt/site/quoted file", "Defaults runaspw\n"),
    ]
    .into_iter()
    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
    .collect();
    let read = |path: &Path| {
        fs.get(path)
            .cloned()
            .map_or(FileRead::Skipped, FileRead::Text)
    };
    let list_dir = |dir: &Path| {
        let mut found: Vec<PathBuf> = fs
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect();
        found.sort();
        found
    };
    let read_files: Vec<PathBuf> = files(Path::new("/etc/sudoers"), &read, &list_dir)
        .files
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        read_files,
        [
            "/etc/sudoers",
            "/opt/site/sudoers",
            "/etc/local",
            "/srv/rules/a",
            "/etc/sudoers.d/b",
            "/opt/site/quoted file",
        ]
        .map(PathBuf::from)
    );
}

#[test]
fn given_a_directory_then_names_sudo_skips_are_skipped() {
    let dir = std::env::temp_dir().join(format!("pim-sudoers-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("subdir")).unwrap();
    for name in ["b", "a", "c.dpkg-old", "d~", "README.md"] {
        std::fs::write(dir.join(name), "alice ALL=(ALL) ALL\n").unwrap();
    }
    let names: Vec<String> = included_dir(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn sudoers_group_names_skip_comments_but_not_uids() {
    let text = "# %commented ALL=(ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n\
                #1000 ALL=(ALL) ALL\nUser_Alias A = %wheel, bob # %late\n\
                Defaults iolog_dir=/var/log/sudo-io/%{user}\n";
    let names: Vec<String> = group_names(text).into_iter().collect();
    assert_eq!(names, ["sudo", "wheel"]);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pim-sudoers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn given_a_fifo_in_the_directory_then_reading_does_not_wait_and_skips_it() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(dir.join("rules"), "alice ALL=(ALL) ALL\n").unwrap();
    let read = read_from(&dir.join("no-sudoers"), &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let paths: Vec<&PathBuf> = read.files.iter().map(|(p, _)| p).collect();
    assert_eq!(paths, [&dir.join("rules")]);
    assert!(read.unreadable.is_empty(), "{read:?}");
}

#[test]
fn given_a_file_over_the_size_cap_then_it_is_unreadable_not_left_out() {
    let dir = temp_dir("big");
    let big = dir.join("big");
    std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
    let read = read_from(&dir.join("no-sudoers"), &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(read.files.is_empty());
    assert_eq!(read.unreadable.len(), 1, "{read:?}");
    assert_eq!(read.unreadable[0].0, big);
    assert!(read.unreadable[0].1.contains("larger than"), "{read:?}");
}

#[test]
fn given_bytes_that_are_not_utf8_then_the_file_and_its_rules_are_still_read() {
    let dir = temp_dir("latin1");
    let mut text = b"# caf\xe9\nmallory ALL=(ALL) ALL\n@include ".to_vec();
    text.extend(dir.join("more.rules").to_string_lossy().as_bytes());
    text.push(b'\n');
    std::fs::write(dir.join("site"), text).unwrap();
    std::fs::write(dir.join("more.rules"), b"eve ALL=(ALL) ALL # \xff\n").unwrap();
    let read = read_from(&dir.join("no-sudoers"), &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let who: Vec<String> = root_rules(&read.files)
        .iter()
        .flat_map(|r| r.who.iter().map(Who::to_string))
        .collect();
    assert_eq!(who, ["mallory", "eve"]);
}

#[test]
fn given_an_include_that_cannot_be_read_then_it_is_named_as_unreadable() {
    let read = |path: &Path| match path.to_str() {
        Some("/etc/sudoers") => FileRead::Text("@include /etc/secret\n".into()),
        _ => FileRead::Failed("Permission denied".into()),
    };
    let read = files(Path::new("/etc/sudoers"), &read, &|_| Vec::new());
    assert_eq!(read.files.len(), 1);
    assert_eq!(
        read.unreadable,
        [(
            PathBuf::from("/etc/secret"),
            "Permission denied".to_string()
        )]
    );
}

/// The lines of `text` pim cannot read, by line number.
fn unparsed(text: &str) -> Vec<usize> {
    read_rules(&one(text))
        .unparsed
        .iter()
        .map(|u| u.line)
        .collect()
}

/// Lines sudo reads as rules giving root (as the attacks of the review wrote them), each
/// with whom pim must see getting root.
const ATTACKS: &[(&str, &[&str])] = &[
    // Only sudo's tag keywords are tags: here `:` starts a second host spec.
    ("attacker ALL=(nobody) ALL:ALL=(ALL) ALL", &["attacker"]),
    // Quotes are ordinary in a command's arguments; `,` ends the command.
    (
        "attacker ALL=(nobody) /bin/echo \", (root) /bin/sh",
        &["attacker"],
    ),
    // `#-1` is a uid, not a comment.
    ("#-1,attacker ALL=(ALL) ALL", &["#-1", "attacker"]),
    // The longest word: Defaultsx is a user name.
    (
        "Defaultsx,attacker ALL=(ALL) ALL",
        &["Defaultsx", "attacker"],
    ),
    // A backslash is taken away when reading a word.
    ("attacker ALL=(r\\oot) ALL", &["attacker"]),
    ("attacker ALL=(r\\x6fot) ALL", &["attacker"]),
];

#[test]
fn given_lines_sudo_reads_as_root_rules_then_pim_reads_them_so() {
    for (line, expected) in ATTACKS {
        assert_eq!(who(&format!("{line}\n")), [expected.to_vec()], "{line}");
        assert!(unparsed(&format!("{line}\n")).is_empty(), "{line}");
    }
}

#[test]
fn given_a_continuation_with_blanks_after_the_backslash_then_the_lines_are_joined() {
    assert_eq!(
        who("attacker ALL=(nobody) ALL, \\  \n (root) /bin/sh\n"),
        [["attacker"]]
    );
}

#[test]
fn given_an_alias_defined_twice_then_the_first_definition_holds() {
    let text = "Runas_Alias R = root\nRunas_Alias R = nobody\nattacker ALL=(R) ALL\n";
    assert_eq!(who(text), [["attacker"]]);
}

#[test]
fn given_lines_pim_cannot_read_then_each_is_reported_with_its_line() {
    let text = "Defaults env_reset\nalice ALL=(ALL) ALL\nthis is not sudoers\n\
                User_Alias lower = bob\nbob ALL = (root\ncarl ALL=(ALL) /bin/a = b\n\
                @include /etc/x\n";
    let mut lines = unparsed(text);
    lines.sort_unstable();
    assert_eq!(lines, [3, 4, 5, 6]);
    let rules = read_rules(&one(text));
    assert!(rules
        .unparsed
        .iter()
        .any(|u| u.text == "this is not sudoers"));
    assert_eq!(rules.root.len(), 1);
}

/// sudo's own parser agrees that each attack line is a valid rule (so pim must read it).
#[test]
fn given_visudo_then_it_accepts_every_attack_line() {
    if !Path::new("/usr/sbin/visudo").exists() {
        eprintln!("visudo is not installed: skipped");
        return;
    }
    let dir = temp_dir("visudo");
    for (index, (line, _)) in ATTACKS.iter().enumerate() {
        let file = dir.join(format!("case{index}"));
        std::fs::write(&file, format!("{line}\n")).unwrap();
        let out = std::process::Command::new("/usr/sbin/visudo")
            .args(["-c", "-q", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "visudo refuses {line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_a_run_as_group_then_it_counts_as_root_unless_root_is_provably_outside() {
    for line in [
        "attacker ALL=(%root) ALL\n",
        "attacker ALL=(%#0) ALL\n",
        "attacker ALL=(%wheel) ALL\n",
        "attacker ALL=(%:admins) ALL\n",
        "attacker ALL=(+ops) ALL\n",
        "attacker ALL=(ALL, !%wheel) ALL\n",
    ] {
        assert_eq!(who(line), [["attacker"]], "{line}");
    }
    // Told that root is not in wheel: not a root rule.
    let outside = |w: &Who| *w == Who::Group("wheel".into());
    let rules = read_rules_knowing(&one("attacker ALL=(%wheel) ALL\n"), &outside);
    assert!(
        rules.root.is_empty() && rules.unparsed.is_empty(),
        "{rules:?}"
    );
}

#[test]
fn given_owners_and_modes_then_those_sudo_refuses_are_refused() {
    assert_eq!(refused_for(0, 0, 0o100440), None);
    assert_eq!(refused_for(0, 0, 0o100660), None);
    assert!(refused_for(1000, 0, 0o100440).unwrap().contains("uid 1000"));
    assert!(refused_for(0, 0, 0o100446).unwrap().contains("everyone"));
    assert!(refused_for(0, 27, 0o100460).unwrap().contains("group 27"));
}

#[test]
fn given_a_file_sudo_refuses_then_it_is_left_out_and_named() {
    let dir = temp_dir("refused");
    let file = dir.join("open");
    std::fs::write(&file, "alice ALL=(ALL) ALL\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let read = read_from(&dir.join("no-sudoers"), &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        read.files.is_empty() && read.unreadable.is_empty(),
        "{read:?}"
    );
    assert_eq!(read.refused.len(), 1, "{read:?}");
    assert!(read.refused[0].1.contains("everyone"), "{read:?}");
}

#[test]
fn given_include_lines_then_they_are_read_with_sudos_grammar() {
    let text = "@include /etc/a # a comment\n@include\"/etc/b c\"\n\
                @include /etc/d\\ e\n#includedir /etc/f\n@include /etc/g junk\n";
    assert_eq!(
        includes(text),
        [
            ("include", "/etc/a".to_string()),
            ("include", "/etc/b c".to_string()),
            ("include", "/etc/d e".to_string()),
            ("includedir", "/etc/f".to_string()),
        ]
    );
    assert_eq!(expand_host("/etc/sudoers.%h", "web1"), "/etc/sudoers.web1");
    assert_eq!(expand_host("/etc/100%%", "web1"), "/etc/100%");
}
