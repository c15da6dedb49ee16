//! A real PostgreSQL 15 (Debian's `postgresql-15`, binaries in [`PG_BIN`]) for the fleet tests,
//! started by the test itself in namespaces of its own.
//!
//! [`Postgres::start`] spawns, as a child of the test process,
//!
//! ```text
//! unshare --mount --pid --fork --mount-proc --net --uts --ipc --propagation private \
//!         --kill-child=KILL -- bash -c NAMESPACE_SCRIPT
//! ```
//!
//! whose PID 1 puts a tmpfs on `/run` (the cluster lives in [`PG_DIR`]) and one on `/dev/shm`,
//! brings `lo` up, creates a bridge [`BRIDGE`] holding the database's address (the fleet
//! harness plugs each host's veth into it), prints `READY` and reads its stdin. `initdb` runs
//! there as the host's `postgres` system user, then `pg_ctl start`. Nothing is written on the
//! host: the cluster is in that tmpfs, and closing PID 1's stdin (dropping the [`Postgres`], or
//! the test process dying) ends every process of the namespace, postmaster included.
//!
//! Authentication (`pg_hba.conf`): the superuser `postgres` is trusted on the Unix socket
//! (reachable only by root, through `/proc/<pid>/root`, see [`Postgres::admin_conninfo`]);
//! every other connection, TCP or socket, needs a password checked with scram-sha-256,
//! `postgres`'s too ([`Postgres::admin_conninfo_tcp`]).
//!
//! TLS: TCP connections must use it (`hostssl`). At start a test CA and a server certificate
//! it signed for the database's address and 127.0.0.1 are made with `openssl` in
//! [`TLS_DIR`] (the cluster's tmpfs); [`Postgres::ca_pem`] is the CA certificate the
//! clients trust, [`Postgres::serve_certificate`] swaps the server's certificate for one an
//! attacker could hold (another CA's, or the right CA's for another name).
#![forbid(unsafe_code)]

use std::fs;
use std::process::{Child, ChildStdin, Command};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    find_pid1, host_tool, lock, poll_until, preflight, quote, run_to_end, spawn_pid1, tail,
    unshare_namespaces, wait_child, wait_for_ready, Output, NEXT_ID, STARTUP_TIMEOUT, TOOL_DIRS,
};

/// Where Debian's `postgresql-15` puts its programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The cluster's directory inside the database's namespace (on its own tmpfs).
pub const PG_DIR: &str = "/run/pg";
/// The bridge in the database's network namespace that holds its address.
pub const BRIDGE: &str = "fleet0";
/// The TCP port the cluster listens on.
pub const PG_PORT: u16 = 5432;
/// The database created at start, which the admin conninfos name.
pub const PG_DATABASE: &str = "pim";

const DATA_DIR: &str = "/run/pg/data";
/// The test CA, the server's certificates and keys (the `postgres` user's, mode 0600).
pub const TLS_DIR: &str = "/run/pg/tls";
/// The trusted CA's certificate, as a path inside the database's namespaces.
pub const CA_FILE: &str = "/run/pg/tls/ca.crt";
/// A name the trusted CA certifies that is not the database's.
const OTHER_NAME: &str = "10.77.0.99";
const SOCKET_DIR: &str = "/run/pg/socket";
const LOG_FILE: &str = "/run/pg/postgres.log";
/// How long one command in the namespace (initdb, pg_ctl, psql) may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(180);

/// PID 1 of the database's namespaces: `$1` is the address with its prefix (10.77.0.1/16).
const NAMESPACE_SCRIPT: &str = r#"set -euo pipefail
exec 2>&1
mount --make-rprivate /
mount -t tmpfs -o mode=0755,size=2g pim-pg-run /run
mount -t tmpfs -o mode=1777 pim-pg-shm /dev/shm
install -d -o postgres -g postgres -m 0700 /run/pg
hostname pim-db
ip link set lo up
ip link add fleet0 type bridge
ip addr add "$1" dev fleet0
ip link set fleet0 up
echo READY
exec >>/run/pg/namespace.log 2>&1
while IFS= read -r _; do :; done
"#;

/// The certificate the server presents ([`Postgres::serve_certificate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Signed by the trusted CA for the database's address and 127.0.0.1 (the default).
    Trusted,
    /// For the same names, signed by a CA nobody trusts: an attacker posing as the database.
    OtherCa,
    /// Signed by the trusted CA, for another name only: a certificate meant for another
    /// server, replayed by an attacker who has its key.
    OtherName,
}

impl ServerCertificate {
    fn file_stem(self) -> &'static str {
        match self {
            ServerCertificate::Trusted => "server",
            ServerCertificate::OtherCa => "server-other-ca",
            ServerCertificate::OtherName => "server-other-name",
        }
    }
}

/// Makes a CA (`ca NAME CN`) or a server certificate (`server NAME CA SUBJECT_ALT_NAME`) in
/// the current directory: EC P-256 keys (fast to make), valid two days.
const CERTIFICATE_SCRIPT: &str = r#"set -euo pipefail
umask 077
cd "$1"
shift
key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
case "$1" in
ca) openssl req -x509 "${key[@]}" -days 2 -subj "/CN=$3" -keyout "$2.key" -out "$2.crt" ;;
server)
    openssl req -new "${key[@]}" -subj /CN=pim-db -keyout "$2.key" -out "$2.csr"
    printf 'subjectAltName = %s
' "$4" >"$2.ext"
    openssl x509 -req -in "$2.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days 2         -extfile "$2.ext" -out "$2.crt"
    ;;
esac 2>&1
"#;

/// A PostgreSQL cluster in namespaces of its own; dropping it ends it and everything in it.
pub struct Postgres {
    holder: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pid1: u32,
    address: String,
    admin_password: String,
}

impl Postgres {
    /// `initdb` and start a cluster listening on 127.0.0.1 and on `address` (with its prefix,
    /// e.g. "10.77.0.1/16", held by [`BRIDGE`]), with a database [`PG_DATABASE`]. Panics with
    /// the logs when anything fails.
    pub fn start(address: &str) -> Postgres {
        Postgres::start_with(address, &[])
    }

    /// Like [`Postgres::start`], with more `postgresql.conf` settings (name, value as written
    /// in the file, e.g. ("max_connections", "2100")).
    pub fn start_with(address: &str, settings: &[(&str, &str)]) -> Postgres {
        preflight();
        let initdb = format!("{PG_BIN}/initdb");
        assert!(
            fs::metadata(&initdb).is_ok(),
            "{initdb} is missing: run scripts/deps (Debian packages postgresql-15 and \
             postgresql-contrib)"
        );
        let (ip, _prefix) = address
            .split_once('/')
            .unwrap_or_else(|| panic!("Postgres::start({address:?}): give ADDRESS/PREFIX"));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let marker = format!("pim-e2e-postgres-{}-{id}", std::process::id());
        let mut cmd = unshare_namespaces();
        cmd.arg(host_tool("bash"))
            .args(["-c", NAMESPACE_SCRIPT, &marker, address]);
        let mut child = spawn_pid1(cmd);
        let (output, ready, mut stderr) = wait_for_ready(&mut child);
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            stderr.finish(Duration::from_secs(2));
            panic!(
                "the database's namespace did not come up:\n{}{}",
                lock(&output),
                stderr.text()
            );
        }
        let pid1 = find_pid1(child.id()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("cannot find PID 1 of the database's namespace (child of unshare)")
        });
        let pg = Postgres {
            stdin: Mutex::new(child.stdin.take()),
            holder: Mutex::new(child),
            pid1,
            address: ip.to_string(),
            admin_password: random_hex(16),
        };
        pg.init(settings);
        pg.make_certificates();
        pg.start_server();
        pg.superuser_sql("postgres", &format!("CREATE DATABASE {PG_DATABASE}"));
        pg
    }

    fn init(&self, settings: &[(&str, &str)]) {
        let pwfile = format!("{PG_DIR}/initdb.pw");
        self.run_as_stdin(
            "root",
            &[
                "bash",
                "-c",
                r#"umask 077; cat >"$1"; chown postgres: "$1""#,
                "bash",
                &pwfile,
            ],
            &self.admin_password,
        )
        .assert_success();
        self.run_as(
            "postgres",
            &[
                &format!("{PG_BIN}/initdb"),
                "--pgdata",
                DATA_DIR,
                "--username",
                "postgres",
                "--pwfile",
                &pwfile,
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )
        .assert_success();
        self.run_as("root", &["rm", "--", &pwfile]).assert_success();
        let mut conf = format!(
            "\n# pim-e2e\nlisten_addresses = '127.0.0.1,{}'\nport = {PG_PORT}\n\
             unix_socket_directories = '{SOCKET_DIR}'\n\
             log_line_prefix = '%m [%p] %u@%d '\n\
             ssl = on\n\
             ssl_cert_file = '{TLS_DIR}/served.crt'\n\
             ssl_key_file = '{TLS_DIR}/served.key'\n",
            self.address
        );
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        let hba =
            "# pim-e2e: the superuser on the socket (root only, see tests/src/postgres.rs);\n\
                   # everyone else with a password, over TLS on TCP.\n\
                   local all postgres trust\n\
                   local all all scram-sha-256\n\
                   hostssl all all 0.0.0.0/0 scram-sha-256\n\
                   hostssl all all ::/0 scram-sha-256\n";
        let script = r#"set -e
install -d -o postgres -g postgres -m 0700 "$3"
printf '%s' "$1" >>"$4/postgresql.conf"
printf '%s' "$2" >"$4/pg_hba.conf""#;
        self.run_as(
            "postgres",
            &[
                "bash", "-c", script, "bash", &conf, hba, SOCKET_DIR, DATA_DIR,
            ],
        )
        .assert_success();
    }

    /// The test CA and the server's certificate for [`Postgres::address`] and 127.0.0.1, in
    /// [`TLS_DIR`], served.
    fn make_certificates(&self) {
        self.run_as("postgres", &["install", "-d", "-m", "0700", TLS_DIR])
            .assert_success();
        self.certificate(&["ca", "ca", "pim e2e fleet CA"]);
        let names = format!("IP:{},IP:127.0.0.1", self.address);
        self.certificate(&["server", "server", "ca", &names]);
        self.copy_served(ServerCertificate::Trusted);
    }

    fn certificate(&self, args: &[&str]) {
        let mut argv = vec!["bash", "-c", CERTIFICATE_SCRIPT, "bash", TLS_DIR];
        argv.extend_from_slice(args);
        self.run_as("postgres", &argv).assert_success();
    }

    fn copy_served(&self, cert: ServerCertificate) {
        let stem = cert.file_stem();
        let script = r#"set -e; cd "$1"; cp "$2.crt" served.crt; cp "$2.key" served.key"#;
        self.run_as("postgres", &["bash", "-c", script, "bash", TLS_DIR, stem])
            .assert_success();
    }

    /// The trusted CA's certificate (PEM), for the clients' `sslrootcert`.
    pub fn ca_pem(&self) -> String {
        let path = format!("/proc/{}/root{CA_FILE}", self.pid1);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Makes the server present `cert` to new connections (open ones keep theirs): the
    /// files are swapped, the configuration reloaded, and this returns once a TLS handshake
    /// on 127.0.0.1 shows the new certificate.
    #[track_caller]
    pub fn serve_certificate(&self, cert: ServerCertificate) {
        let stem = cert.file_stem();
        let made = format!("/proc/{}/root{TLS_DIR}/{stem}.crt", self.pid1);
        if fs::metadata(&made).is_err() {
            let names = format!("IP:{},IP:127.0.0.1", self.address);
            match cert {
                ServerCertificate::Trusted => unreachable!("made at start"),
                ServerCertificate::OtherCa => {
                    self.certificate(&["ca", "other-ca", "pim e2e fleet CA"]);
                    self.certificate(&["server", stem, "other-ca", &names]);
                }
                ServerCertificate::OtherName => {
                    let other = format!("IP:{OTHER_NAME},DNS:not-the-database");
                    self.certificate(&["server", stem, "ca", &other]);
                }
            }
        }
        self.copy_served(cert);
        self.admin_sql("SELECT pg_reload_conf()");
        let want = self.fingerprint(&format!("{TLS_DIR}/{stem}.crt"));
        let script = format!(
            "openssl s_client -starttls postgres -connect 127.0.0.1:{PG_PORT} </dev/null              2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        );
        self.wait_until(
            &format!("the server to present {cert:?}"),
            Duration::from_secs(30),
            || self.run_as("root", &["bash", "-c", &script]).stdout.trim() == want,
        );
    }

    fn fingerprint(&self, path: &str) -> String {
        let out = self.run_as(
            "root",
            &[
                "openssl",
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-in",
                path,
            ],
        );
        out.assert_success().stdout.trim().to_string()
    }

    fn start_server(&self) {
        let out = self.run_as(
            "postgres",
            &[
                &format!("{PG_BIN}/pg_ctl"),
                "start",
                "--pgdata",
                DATA_DIR,
                "--log",
                LOG_FILE,
                "--wait",
                "--timeout",
                &STARTUP_TIMEOUT.as_secs().to_string(),
            ],
        );
        if !out.success() {
            panic!(
                "PostgreSQL did not start:\n{out}\n--- postgres log ---\n{}",
                self.log()
            );
        }
    }

    /// Stops the server (`pg_ctl stop --mode fast`: clients are disconnected) and waits.
    #[track_caller]
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// Stops the server as a crash would (`--mode immediate`: no checkpoint, recovery at
    /// the next start).
    #[track_caller]
    pub fn crash(&self) {
        self.pg_ctl_stop("immediate");
    }

    #[track_caller]
    fn pg_ctl_stop(&self, mode: &str) {
        let out = self.run_as(
            "postgres",
            &[
                &format!("{PG_BIN}/pg_ctl"),
                "stop",
                "--pgdata",
                DATA_DIR,
                "--mode",
                mode,
                "--wait",
            ],
        );
        if !out.success() {
            panic!(
                "pg_ctl stop failed:\n{out}\n--- postgres log ---\n{}",
                self.log_tail(40)
            );
        }
    }

    /// Starts the server again after [`Postgres::stop`] or [`Postgres::crash`].
    #[track_caller]
    pub fn start_again(&self) {
        self.start_server();
    }

    /// Stops (fast) and starts the server.
    #[track_caller]
    pub fn restart(&self) {
        self.stop();
        self.start_server();
    }

    /// Lets every role log in over 127.0.0.1 without a password, and reloads. For
    /// `scripts/bench-fleet`'s simulated hosts only, which connect from the database's own
    /// namespace: their login stays their own (what the functions go by), and thousands of
    /// scram-sha-256 logins (thousands of hashes each in the debug client) stay out of what
    /// is measured.
    #[track_caller]
    pub fn trust_loopback(&self) {
        let script = r#"set -e
{ echo 'host all all 127.0.0.1/32 trust'; cat "$1/pg_hba.conf"; } >"$1/pg_hba.conf.new"
mv "$1/pg_hba.conf.new" "$1/pg_hba.conf""#;
        self.run_as("postgres", &["bash", "-c", script, "bash", DATA_DIR])
            .assert_success();
        self.admin_sql("SELECT pg_reload_conf()");
    }

    /// True when the server accepts connections (`pg_isready` on the socket).
    pub fn is_ready(&self) -> bool {
        self.run_as(
            "root",
            &[
                &format!("{PG_BIN}/pg_isready"),
                "--host",
                SOCKET_DIR,
                "--port",
                &PG_PORT.to_string(),
                "--quiet",
            ],
        )
        .success()
    }

    /// The database's address (without prefix), on [`BRIDGE`].
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The superuser's password (for [`Postgres::admin_conninfo_tcp`]).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// Host PID of the namespace's PID 1 (what `nsenter --target` and `ip link set ... netns`
    /// take).
    pub fn host_pid(&self) -> u32 {
        self.pid1
    }

    /// libpq connection string of the superuser over the Unix socket, for a process on the
    /// host (the test process itself, root): the socket directory through
    /// `/proc/<pid>/root`, no password (trusted there).
    pub fn admin_conninfo(&self) -> String {
        format!(
            "host=/proc/{}/root{SOCKET_DIR} port={PG_PORT} user=postgres dbname={PG_DATABASE}",
            self.pid1
        )
    }

    /// libpq connection string of the superuser over TCP to [`Postgres::address`], with its
    /// password, for [`Postgres::psql`] (the CA file as seen in the database's namespace).
    pub fn admin_conninfo_tcp(&self) -> String {
        self.tcp_conninfo("postgres", &self.admin_password)
    }

    /// libpq connection string of `user` with `password` over TCP to [`Postgres::address`],
    /// for [`Postgres::psql`] (the CA file as seen in the database's namespace).
    pub fn tcp_conninfo(&self, user: &str, password: &str) -> String {
        self.tls_conninfo(user, password, CA_FILE)
    }

    /// libpq connection string of `user` with `password` over TCP to [`Postgres::address`],
    /// verifying the server's certificate and name against the CA certificate at `ca_file`
    /// (where the connecting side keeps [`Postgres::ca_pem`]).
    pub fn tls_conninfo(&self, user: &str, password: &str, ca_file: &str) -> String {
        format!(
            "host={} port={PG_PORT} dbname={PG_DATABASE} user={user} password={} \
             connect_timeout=10 sslmode=verify-full sslrootcert={}",
            self.address,
            conninfo_value(password),
            conninfo_value(ca_file)
        )
    }

    /// `psql` with `conninfo` running `sql` (ON_ERROR_STOP, unaligned tuples only), inside the
    /// database's namespaces as root: 127.0.0.1 and [`Postgres::address`] are reachable,
    /// the socket is [`PG_DIR`]`/socket` (`host=/run/pg/socket` from here).
    pub fn psql(&self, conninfo: &str, sql: &str) -> Output {
        let argv = psql_argv(conninfo);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run_as_stdin("root", &argv, sql)
    }

    /// `sql` as the superuser on the socket in [`PG_DATABASE`]; panics with everything when
    /// it fails. Returns psql's output.
    #[track_caller]
    pub fn admin_sql(&self, sql: &str) -> String {
        self.superuser_sql(PG_DATABASE, sql)
    }

    #[track_caller]
    fn superuser_sql(&self, db: &str, sql: &str) -> String {
        let conninfo = format!("host={SOCKET_DIR} port={PG_PORT} user=postgres dbname={db}");
        let out = self.psql(&conninfo, sql);
        if !out.success() {
            panic!(
                "admin SQL failed:\n{out}\n--- postgres log (tail) ---\n{}",
                self.log_tail(20)
            );
        }
        out.stdout
    }

    /// Runs `argv` as root in the database's namespaces (e.g. `ip link` for the fleet's veths).
    pub fn run_root(&self, argv: &[&str]) -> Output {
        self.run_as("root", argv)
    }

    fn run_as(&self, user: &str, argv: &[&str]) -> Output {
        self.exec(user, argv, None)
    }

    fn run_as_stdin(&self, user: &str, argv: &[&str], stdin: &str) -> Output {
        self.exec(user, argv, Some(stdin.as_bytes()))
    }

    fn exec(&self, user: &str, argv: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(host_tool("nsenter"));
        cmd.arg("--target")
            .arg(self.pid1.to_string())
            .args(["--mount", "--pid", "--net", "--uts", "--ipc", "--"])
            .arg(host_tool("setpriv"))
            .args(["--reuid", user, "--regid", user, "--init-groups"])
            .args(["env", "-i", "-C", PG_DIR])
            .arg(format!("PATH={PG_BIN}:{}", TOOL_DIRS.join(":")))
            .args(["LANG=C.UTF-8", "PGCONNECT_TIMEOUT=10"])
            .args(argv)
            .env_clear();
        let words: Vec<String> = argv.iter().map(|w| quote(w)).collect();
        let display = format!("[database, as {user}] {}", words.join(" "));
        run_to_end(cmd, stdin, display, COMMAND_LIMIT, String::new)
    }

    /// The server's log (every start appends to it).
    pub fn log(&self) -> String {
        fs::read(format!("/proc/{}/root{LOG_FILE}", self.pid1))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Waits until `f` holds; panics naming `what`, with the server's log, after `timeout`.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) {
        if !poll_until(timeout, f) {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n--- postgres log (tail) ---\n{}",
                self.log_tail(40)
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- postgres (namespace PID 1 = host pid {}) log (tail) ---\n{}\n--- end ---",
                self.pid1,
                self.log_tail(60)
            );
        }
        drop(lock(&self.stdin).take());
        let mut holder = lock(&self.holder);
        if wait_child(&mut holder, Instant::now() + Duration::from_secs(30)).is_none() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// `psql` connecting with `conninfo`, reading its SQL from stdin: stops at the first error,
/// prints bare values (one row a line, `|` between columns).
pub fn psql_argv(conninfo: &str) -> Vec<String> {
    [
        &format!("{PG_BIN}/psql"),
        "--no-psqlrc",
        "--set",
        "ON_ERROR_STOP=1",
        "--tuples-only",
        "--no-align",
        "--quiet",
        "--dbname",
        conninfo,
    ]
    .iter()
    .map(|w| w.to_string())
    .collect()
}

/// A libpq conninfo value, quoted when needed.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\']) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
    }
}

/// `bytes` random bytes from the kernel, in hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
