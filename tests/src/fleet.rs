//! A fleet for the end-to-end tests: one [`Postgres`] in namespaces of its own and N hosts,
//! each a full [`Sandbox`] (its own pimd, bus, users and groups), linked to the database by a
//! veth pair.
//!
//! ```text
//!   host web1 (Sandbox)            database (Postgres)            host db1 (Sandbox)
//!   eth0 10.77.1.1/16 ─── veth ─── link1 ┐                  ┌ link2 ─── veth ─── eth0 10.77.1.2/16
//!                                        └─ fleet0 10.77.0.1 ┘
//! ```
//!
//! The database side of every pair is a port of the database's bridge [`BRIDGE`], so
//! [`Fleet::link_down`] (the database's end of one host's cable set down) cuts that host alone:
//! its packets go nowhere, as when a switch port dies, and no one tells its pimd.
//!
//! Bootstrap follows the README's fleet setup: `pimd --fleet-setup ADMIN_CONNINFO --policy
//! FILE` on the first host (with the superuser's password over TCP), then `pimd --fleet-setup
//! ADMIN_CONNINFO --add-host NAME --tags T,...` for every host, whose printed password goes
//! into that host's root-only pgpass file named by `passfile=` in its `[fleet] database`.
//! Every connection over the fleet's network is TLS, verified as pimd requires
//! (`sslmode=verify-full`) against the database's test CA, which every host keeps at
//! [`CA_PATH`].
#![forbid(unsafe_code)]

use std::thread;
use std::time::Duration;

use crate::postgres::{psql_argv, Postgres, BRIDGE, PG_DATABASE, PG_PORT};
use crate::{host_tool, Authenticator, Output, Sandbox, CONFIG_PATH};

/// The database's address on the fleet's network.
pub const DB_ADDRESS: &str = "10.77.0.1/16";
/// Where [`Fleet::setup`] writes the first policy on the first host.
pub const POLICY_PATH: &str = "/etc/pim/fleet-policy.toml";
/// Each host's pgpass file (root only), named by `passfile=` in its `[fleet] database`.
pub const PGPASS_PATH: &str = "/etc/pim/fleet.pgpass";
/// Each host's copy of the CA certificate that signed the database's (root's, 0644), named
/// by `sslrootcert=`.
pub const CA_PATH: &str = "/etc/pim/fleet-ca.pem";
/// Default `max_staleness` of the hosts' `[fleet]` sections.
pub const DEFAULT_MAX_STALENESS: &str = "10m";

/// What a fleet's host is called and tagged.
#[derive(Clone, Debug)]
pub struct HostSpec {
    pub name: String,
    pub tags: Vec<String>,
}

impl HostSpec {
    pub fn new(name: &str, tags: &[&str]) -> HostSpec {
        HostSpec {
            name: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// One host of a [`Fleet`]: its sandbox, address and database login.
pub struct FleetHost {
    pub name: String,
    pub tags: Vec<String>,
    /// The host itself: run `pim`, `sudo`, `getent` there as on any sandbox.
    pub sb: Sandbox,
    /// Its address (without prefix) on the fleet's network.
    pub address: String,
    /// The database's end of its link (a port of [`BRIDGE`] in the database's namespace).
    link: String,
    /// Its database login and password, once [`Fleet::add_host`] made them.
    login: std::sync::Mutex<Option<(String, String)>>,
}

impl FleetHost {
    /// Its database login (as `--add-host` made it) and password; panics before
    /// [`Fleet::add_host`].
    pub fn login(&self) -> (String, String) {
        crate::lock(&self.login)
            .clone()
            .unwrap_or_else(|| panic!("host {} has no database login yet", self.name))
    }

    /// libpq connection string of this host's own login, over its link (as pimd connects).
    pub fn conninfo(&self, db: &Postgres) -> String {
        let (user, password) = self.login();
        db.tls_conninfo(&user, &password, CA_PATH)
    }

    /// `psql` run on this host (in its sandbox, as root) with `conninfo`: what a host's root
    /// could do with the database's network.
    pub fn psql(&self, conninfo: &str, sql: &str) -> Output {
        let argv = psql_argv(conninfo);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.sb.run_with_stdin("root", &argv, sql)
    }
}

/// A database and its hosts; dropping it tears all of them down.
pub struct Fleet {
    pub db: Postgres,
    pub hosts: Vec<FleetHost>,
}

impl Fleet {
    /// Starts the database and one sandbox per spec (in parallel), and links each to the
    /// database. No users, no pimd yet: see [`Fleet::add_user`], [`Fleet::setup`] and
    /// [`Fleet::start_pimds`].
    pub fn start(specs: &[HostSpec]) -> Fleet {
        Fleet::start_with(specs, &[])
    }

    /// Like [`Fleet::start`] with more `postgresql.conf` settings for the database.
    pub fn start_with(specs: &[HostSpec], settings: &[(&str, &str)]) -> Fleet {
        assert!(
            !specs.is_empty() && specs.len() <= 250,
            "a fleet has 1 to 250 hosts"
        );
        let db = Postgres::start_with(DB_ADDRESS, settings);
        let sandboxes: Vec<Sandbox> = thread::scope(|s| {
            let started: Vec<_> = specs.iter().map(|_| s.spawn(Sandbox::start)).collect();
            started
                .into_iter()
                .map(|h| h.join().expect("a host sandbox did not start"))
                .collect()
        });
        let hosts = specs
            .iter()
            .zip(sandboxes)
            .enumerate()
            .map(|(i, (spec, sb))| {
                let host = FleetHost {
                    name: spec.name.clone(),
                    tags: spec.tags.clone(),
                    sb,
                    address: format!("10.77.1.{}", i + 1),
                    link: format!("link{}", i + 1),
                    login: std::sync::Mutex::new(None),
                };
                cable(&db, &host);
                host.sb.write_file(CA_PATH, &db.ca_pem(), 0o644);
                host
            })
            .collect();
        Fleet { db, hosts }
    }

    /// libpq connection string of the database's superuser (with its password) for a host:
    /// over TCP, verified against [`CA_PATH`].
    pub fn admin_conninfo(&self) -> String {
        self.db
            .tls_conninfo("postgres", self.db.admin_password(), CA_PATH)
    }

    /// libpq connection string of `login` with `password` for a host, as
    /// [`Fleet::admin_conninfo`].
    pub fn conninfo(&self, login: &str, password: &str) -> String {
        self.db.tls_conninfo(login, password, CA_PATH)
    }

    /// The host called `name`; panics if there is none.
    #[track_caller]
    pub fn host(&self, name: &str) -> &FleetHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this fleet"))
    }

    /// The sandbox of host `name`.
    #[track_caller]
    pub fn sb(&self, name: &str) -> &Sandbox {
        &self.host(name).sb
    }

    /// Runs `f` on every host at once; returns its results in the hosts' order.
    pub fn on_every_host<T: Send>(&self, f: impl Fn(&FleetHost) -> T + Sync) -> Vec<T> {
        thread::scope(|s| {
            let running: Vec<_> = self.hosts.iter().map(|h| s.spawn(|| f(h))).collect();
            running
                .into_iter()
                .map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// A group on every host (same gid everywhere: created in the same order).
    #[track_caller]
    pub fn add_group(&self, name: &str) {
        self.on_every_host(|h| h.sb.add_group(name));
        self.assert_same_id(&["getent", "group", name]);
    }

    /// A user on every host, member of `groups` (created if missing), with the same uid
    /// everywhere (checked).
    #[track_caller]
    pub fn add_user(&self, name: &str, groups: &[&str]) {
        self.on_every_host(|h| h.sb.add_user(name, groups));
        self.assert_same_id(&["id", "-u", name]);
    }

    #[track_caller]
    fn assert_same_id(&self, argv: &[&str]) {
        let ids = self.on_every_host(|h| {
            h.sb.run("root", argv)
                .assert_success()
                .stdout_trimmed()
                .to_string()
        });
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "{argv:?} differs between hosts: {ids:?}"
        );
    }

    /// `pimd --fleet-setup ADMIN_CONNINFO --policy FILE` on the first host: schema, roles,
    /// functions and `policy` as the first version; then [`Fleet::add_host`] for every host
    /// and each host's `pim.toml` ([`Fleet::write_host_config`] with `max_staleness`).
    #[track_caller]
    pub fn setup(&self, policy: &str, max_staleness: &str) {
        let first = &self.hosts[0].sb;
        first.write_file(POLICY_PATH, policy, 0o600);
        first
            .run(
                "root",
                &[
                    "pimd",
                    "--fleet-setup",
                    &self.admin_conninfo(),
                    "--policy",
                    POLICY_PATH,
                ],
            )
            .assert_success();
        for host in &self.hosts {
            self.add_host(host);
            self.write_host_config(host, max_staleness, "");
        }
    }

    /// `pimd --fleet-setup ADMIN_CONNINFO --add-host NAME [--tags T,...]` (on the first
    /// host) and `host`'s pgpass file with the password it printed.
    #[track_caller]
    pub fn add_host(&self, host: &FleetHost) {
        let tags = host.tags.join(",");
        let admin = self.admin_conninfo();
        let mut argv = vec!["pimd", "--fleet-setup", &admin, "--add-host", &host.name];
        if !tags.is_empty() {
            argv.extend(["--tags", &tags]);
        }
        let out = self.hosts[0].sb.run("root", &argv);
        out.assert_success();
        self.set_host_password(host, &printed_password(&out));
    }

    /// `host`'s pgpass file with `password` for its login (as `--add-host` or `pim admin
    /// host enable` printed it).
    #[track_caller]
    pub fn set_host_password(&self, host: &FleetHost, password: &str) {
        let login = self
            .db
            .admin_sql(&format!(
                "SELECT login FROM pim.hosts WHERE name = '{}'",
                host.name
            ))
            .trim()
            .to_string();
        assert!(!login.is_empty(), "host {} is not in pim.hosts", host.name);
        host.sb.write_file(
            PGPASS_PATH,
            &format!(
                "{}:{PG_PORT}:{PG_DATABASE}:{login}:{}\n",
                self.db.address(),
                pgpass_escape(password)
            ),
            0o600,
        );
        *crate::lock(&host.login) = Some((login, password.to_string()));
    }

    /// `user`'s one-time enrolment ticket, issued through the database's administrator as
    /// `pimd --fleet-setup --enrol-admin` issues one (a fleet admin's `pim admin
    /// mfa-ticket` is the everyday way, tested on its own).
    #[track_caller]
    pub fn enrolment_ticket(&self, user: &str) -> String {
        self.db
            .admin_sql(&format!(
                "SELECT pim.issue_enrolment_ticket('{user}', 'e2e', 'e2e')"
            ))
            .trim()
            .to_string()
    }

    /// `user` enrolled on host `host` with a ticket ([`Fleet::enrolment_ticket`]) and
    /// confirmed; their authenticator, good on every host.
    #[track_caller]
    pub fn enroll_mfa(&self, host: &str, user: &str) -> Authenticator {
        let ticket = self.enrolment_ticket(user);
        self.sb(host).enroll_mfa_with(user, &["--ticket", &ticket])
    }

    /// `host`'s `/etc/pim/pim.toml`: `[fleet]` pointing at the database through its own login
    /// and pgpass file, with `max_staleness`; `extra` is appended as is (e.g. `[daemon]`).
    #[track_caller]
    pub fn write_host_config(&self, host: &FleetHost, max_staleness: &str, extra: &str) {
        let (login, _) = host.login();
        let config = format!(
            "[fleet]\n\
             database = \"host={} port={PG_PORT} dbname={PG_DATABASE} user={login} \
             passfile={PGPASS_PATH} connect_timeout=5 sslmode=verify-full \
             sslrootcert={CA_PATH}\"\n\
             host = \"{}\"\n\
             max_staleness = \"{max_staleness}\"\n\
             {extra}",
            self.db.address(),
            host.name
        );
        host.sb.write_file(CONFIG_PATH, &config, 0o644);
    }

    /// `pimd` on every host (each checks its configuration first).
    #[track_caller]
    pub fn start_pimds(&self) {
        self.on_every_host(|h| {
            h.sb.run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
                .assert_success();
            h.sb.start_pimd();
        });
    }

    /// Cuts host `name` off the network: the database's end of its link goes down. Nothing
    /// reaches either side, nothing is refused: packets vanish.
    #[track_caller]
    pub fn link_down(&self, name: &str) {
        self.set_link(name, "down");
    }

    /// Plugs host `name` back in.
    #[track_caller]
    pub fn link_up(&self, name: &str) {
        self.set_link(name, "up");
    }

    #[track_caller]
    fn set_link(&self, name: &str, state: &str) {
        let host = self.host(name);
        let out = self.db.run_root(&["ip", "link", "set", &host.link, state]);
        out.assert_success();
    }

    /// True when host `name` reaches the database's port (bash's /dev/tcp, 2 s).
    pub fn reaches_database(&self, name: &str) -> bool {
        let script = format!(
            "timeout 2 bash -c 'exec 3<>/dev/tcp/{}/{PG_PORT}'",
            self.db.address()
        );
        self.sb(name).sh("root", &script).success()
    }

    /// Waits until `f` holds; panics naming `what` after `timeout`, with every host's pimd
    /// log and the database's.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) {
        if !crate::poll_until(timeout, f) {
            let logs: Vec<String> = self
                .hosts
                .iter()
                .map(|h| {
                    format!(
                        "--- pimd log of {} (tail) ---\n{}",
                        h.name,
                        h.sb.pimd_log_tail(30)
                    )
                })
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}\n--- postgres log (tail) ---\n{}\n--- end ---",
                logs.join("\n"),
                self.db.log_tail(30)
            );
        }
    }

    /// Every host's name and whether `user` is listed in `group` there.
    pub fn membership(&self, user: &str, group: &str) -> Vec<(String, bool)> {
        self.on_every_host(|h| (h.name.clone(), h.sb.is_member(user, group)))
    }
}

/// Links `host` to the database: a veth pair created straight into both namespaces (the
/// test's own network namespace never holds it), the host's end `eth0` with its address,
/// the database's end a port of [`BRIDGE`].
#[track_caller]
fn cable(db: &Postgres, host: &FleetHost) {
    let out = std::process::Command::new(host_tool("ip"))
        .args(["link", "add", &host.link, "netns"])
        .arg(db.host_pid().to_string())
        .args(["type", "veth", "peer", "name", "eth0", "netns"])
        .arg(host.sb.host_pid().to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        out.status.success(),
        "ip link add {} (veth to host {}): {}",
        host.link,
        host.name,
        String::from_utf8_lossy(&out.stderr)
    );
    db.run_root(&["ip", "link", "set", &host.link, "master", BRIDGE, "up"])
        .assert_success();
    host.sb
        .sh(
            "root",
            &format!(
                "set -e; ip addr add {}/16 dev eth0; ip link set eth0 up",
                host.address
            ),
        )
        .assert_success();
}

/// The password `pimd --fleet-setup --add-host` printed: the word after "password" in
/// "host NAME added: database login LOGIN, password PASSWORD (shown once: ...)".
#[track_caller]
fn printed_password(out: &Output) -> String {
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "password")
        .map(|w| w[1].trim_end_matches([',', ')', ';']).to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| panic!("no password printed:\n{out}"))
}

/// A pgpass field: `:` and `\` escaped with a backslash.
fn pgpass_escape(value: &str) -> String {
    value.replace('\\', r"\\").replace(':', r"\:")
}
