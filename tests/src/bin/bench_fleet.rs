//! `scripts/bench-fleet`: what fleet mode costs (issue 16's benchmarks; not a test).
//!
//! 1. **Propagation** with `--hosts N` (default 20) full host sandboxes (each its own pimd,
//!    bus and users; half of them tagged `db`, the role's scope): alice files a request for
//!    `dbadmin` on one host, one of ten approvers approves it on another, and for each
//!    in-scope host the time from the grant's commit (the database's
//!    `pg_xact_commit_timestamp` of its row) to the moment `gpasswd` rewrote that host's
//!    `/etc/group` with alice in `dbadmin` (the file's mtime). `--rounds R` (default 20).
//! 2. **Database load** with `--simulated M` (default 2,000) simulated hosts, each a
//!    connection of its own login that `LISTEN`s on `pim_wake` and calls
//!    `pim_api.snapshot()` every 30 s (first call at a random point of the first 30 s) and on
//!    every wake, for `--window S` seconds (default 240), beside one real host's login: the
//!    PostgreSQL processes' CPU and memory over a minute at rest (periodic snapshots only)
//!    and, for grants made through the real host's login every 15 s after that
//!    (`pim_api.activate`, as its pimd calls it), the time from the grant's commit to its
//!    presence in each simulated host's snapshot.
//!
//! Both use the debug binaries the end-to-end suite uses (`cargo build --workspace`).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pim_e2e::fleet::{Fleet, HostSpec};
use pim_e2e::Authenticator;
use postgres::fallible_iterator::FallibleIterator;

const REASON: &str = "benchmark the propagation of grants";
const APPROVERS: usize = 10;
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// Simulated hosts logging in at the same time.
const CONNECTING_AT_ONCE: usize = 4;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("simulate") {
        simulate(&args[1..]);
        return;
    }
    let mut hosts = 20usize;
    let mut rounds = 20usize;
    let mut simulated = 2000usize;
    let mut window = 240u64;
    let mut parts = (true, true);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match arg.as_str() {
            "--hosts" => hosts = value("--hosts") as usize,
            "--rounds" => rounds = value("--rounds") as usize,
            "--simulated" => simulated = value("--simulated") as usize,
            "--window" => window = value("--window"),
            "--propagation-only" => parts = (true, false),
            "--load-only" => parts = (false, true),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if hosts < 2 || rounds == 0 || simulated == 0 || window < 220 {
        usage("--hosts is at least 2, --rounds and --simulated at least 1, --window at least 220");
    }
    if parts.0 {
        propagation(hosts, rounds);
    }
    if parts.1 {
        database_load(simulated, window);
    }
}

fn usage(why: &str) -> ! {
    eprintln!(
        "bench-fleet: {why}\nusage: scripts/bench-fleet [--hosts N] [--rounds R] \
         [--simulated M] [--window SECONDS] [--propagation-only|--load-only]"
    );
    std::process::exit(2)
}

fn say(what: &str) {
    eprintln!("bench-fleet: {what}");
}

fn approvers() -> Vec<String> {
    (1..=APPROVERS).map(|i| format!("ap{i:02}")).collect()
}

fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs_f64()
}

/// p-th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

/// Commit time (unix seconds, fractional) of the grant made for request `request_id`, or of
/// grant `grant_id`.
fn commit_time(fleet: &Fleet, condition: &str) -> f64 {
    let out = fleet.db.admin_sql(&format!(
        "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM pim.grants WHERE {condition}"
    ));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no commit time for the grant where {condition}: {out:?}"))
}

/// Whether `/etc/group` of the sandbox whose PID 1 is `pid` lists `user` in `group`, and the
/// file's mtime.
fn group_file(pid: u32, user: &str, group: &str) -> (bool, f64) {
    let path = format!("/proc/{pid}/root/etc/group");
    let text = fs::read_to_string(&path).unwrap_or_default();
    let member = text.lines().any(|l| {
        let mut f = l.splitn(4, ':');
        f.next() == Some(group) && f.nth(2).is_some_and(|m| m.split(',').any(|u| u == user))
    });
    let mtime = fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64())
        .unwrap_or(0.0);
    (member, mtime)
}

fn propagation(hosts: usize, rounds: usize) {
    say(&format!(
        "propagation: {hosts} host sandboxes, {rounds} approvals"
    ));
    let specs: Vec<HostSpec> = (1..=hosts)
        .map(|i| {
            HostSpec::new(
                &format!("h{i:02}"),
                &[if i % 2 == 1 { "db" } else { "web" }],
            )
        })
        .collect();
    let fleet = Fleet::start_with(&specs, &[("track_commit_timestamp", "on")]);
    fleet.add_group("dbadmin");
    fleet.add_user("alice", &[]);
    let approvers = approvers();
    for a in &approvers {
        fleet.add_user(a, &[]);
    }
    let policy = format!(
        "[daemon]\nadmins = [\"ap01\"]\n\n[roles.dbadmin]\ngroup = \"dbadmin\"\non_end = \"keep\"\n\
         hosts = [\"tag:db\"]\neligible = [\"alice\"]\nrequire_mfa = false\n\
         require_approval = true\napprovers = [{}]\napprovals_required = 1\n\
         max_duration = \"1h\"\n",
        approvers
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    fleet.setup(&policy, "10m");
    // alice files and ends a request a round, more than the 30 calls a minute allowed.
    for h in &fleet.hosts {
        fleet.write_host_config(h, "10m", "\n[daemon]\ncalls_per_minute = 1000\n");
    }
    fleet.start_pimds();
    let filer = &fleet.hosts[0].sb;
    let decider = &fleet.hosts[1].sb;
    let mut phones: Vec<Authenticator> = approvers.iter().map(|a| decider.enroll_mfa(a)).collect();
    let in_scope: Vec<_> = fleet.hosts.iter().filter(|h| h.tags[0] == "db").collect();
    let outside: Vec<_> = fleet.hosts.iter().filter(|h| h.tags[0] != "db").collect();

    let mut per_host = Vec::new();
    let mut all_hosts = Vec::new();
    for round in 0..rounds {
        let asked = filer.run(
            "alice",
            &[
                "pim", "--json", "activate", "dbadmin", "-d", "10m", "-r", REASON,
            ],
        );
        asked.assert_status(3);
        let id = asked.json()["request"]["id"]
            .as_i64()
            .expect("a request id");
        let phone = &mut phones[round % APPROVERS];
        let code = phone.next_code(decider);
        decider
            .run(
                &approvers[round % APPROVERS],
                &[
                    "pim",
                    "approve",
                    &id.to_string(),
                    "-c",
                    "ok",
                    "--code",
                    &code,
                ],
            )
            .assert_success();
        let mut reached: HashMap<String, f64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while reached.len() < in_scope.len() {
            assert!(
                Instant::now() < deadline,
                "round {round}: the grant reached only {reached:?}"
            );
            for h in &in_scope {
                if !reached.contains_key(&h.name) {
                    let (member, mtime) = group_file(h.sb.host_pid(), "alice", "dbadmin");
                    if member {
                        reached.insert(h.name.clone(), mtime);
                    }
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        let committed = commit_time(&fleet, &format!("request_id = {id}"));
        let latencies: Vec<f64> = reached.values().map(|t| (t - committed) * 1000.0).collect();
        all_hosts.push(latencies.iter().copied().fold(f64::MIN, f64::max));
        per_host.extend(latencies);
        for h in &outside {
            assert!(
                !group_file(h.sb.host_pid(), "alice", "dbadmin").0,
                "round {round}: {} is out of scope but got the grant",
                h.name
            );
        }
        filer
            .run("alice", &["pim", "deactivate", "dbadmin"])
            .assert_success();
        fleet.wait_until(
            "alice out of dbadmin everywhere",
            Duration::from_secs(120),
            || {
                in_scope
                    .iter()
                    .all(|h| !group_file(h.sb.host_pid(), "alice", "dbadmin").0)
            },
        );
        say(&format!("round {}/{rounds} done", round + 1));
    }
    println!(
        "propagation, {hosts} host sandboxes ({} in scope), {rounds} approvals:",
        in_scope.len()
    );
    summary("  commit -> gpasswd done, each in-scope host", per_host);
    summary("  commit -> gpasswd done on every in-scope host", all_hosts);
}

/// CPU seconds (user + system) and proportional memory (KiB) of every process in the PID
/// namespace of `pid1`.
fn namespace_usage(pid1: u32) -> (f64, u64) {
    let ns = fs::read_link(format!("/proc/{pid1}/ns/pid")).ok();
    let mut cpu_ticks = 0u64;
    let mut pss = 0u64;
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != ns {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the comm.
            cpu_ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            cpu_ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            pss += rollup
                .lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    // USER_HZ is 100 on Linux.
    (cpu_ticks as f64 / 100.0, pss)
}

fn database_load(simulated: usize, window: u64) {
    say(&format!(
        "database load: {simulated} simulated hosts and one real one, {window} s"
    ));
    let connections = (simulated + 50).to_string();
    let fleet = Fleet::start_with(
        &[HostSpec::new("real1", &["db"])],
        &[
            ("track_commit_timestamp", "on"),
            ("max_connections", &connections),
        ],
    );
    fleet.add_group("ops");
    fleet.add_user("alice", &[]);
    fleet.setup(
        "[daemon]\nadmins = [\"alice\"]\n\n[roles.ops]\ngroup = \"ops\"\nhosts = [\"tag:db\"]\neligible = [\"alice\"]\n\
         require_mfa = false\nrequire_approval = false\nmax_duration = \"1h\"\n",
        "10m",
    );
    say("creating the simulated hosts' logins");
    let logins = fleet.db.admin_sql(&format!(
        "SELECT 'pim_host_' || name FROM (SELECT name, \
             pim.create_host(name, ARRAY['db'], 'bench', 'bench') \
         FROM (SELECT 'sim' || lpad(i::text, 4, '0') AS name \
               FROM generate_series(1, {simulated}) i) s) made"
    ));
    fleet.db.trust_loopback();
    let credentials = std::env::temp_dir().join(format!("pim-bench-fleet-{}", std::process::id()));
    fs::write(&credentials, logins).expect("the list of logins");
    // The simulator runs in the database's network namespace (its address is there).
    let sim = Command::new("nsenter")
        .arg("--target")
        .arg(fleet.db.host_pid().to_string())
        .args(["--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .arg("simulate")
        .arg(&credentials)
        .arg("127.0.0.1")
        .arg(window.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the simulator");
    fleet.db.wait_until(
        "every simulated host to connect",
        Duration::from_secs(900),
        || {
            fleet
                .db
                .admin_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'pim_host_sim%'",
                )
                .trim()
                .parse::<usize>()
                .unwrap_or(0)
                >= simulated
        },
    );
    let sim_started = Instant::now();
    // One period for every simulated host's first snapshot, then two at rest.
    thread::sleep(SNAPSHOT_EVERY);
    let (cpu0, _) = namespace_usage(fleet.db.host_pid());
    let rest_started = Instant::now();
    thread::sleep(SNAPSHOT_EVERY * 2);
    let (cpu1, pss) = namespace_usage(fleet.db.host_pid());
    let rest = rest_started.elapsed().as_secs_f64();
    // Then grants, each waking every simulated host, until 35 s before the end: made by the
    // real host's login through pim_api.activate, as its pimd would.
    let real = &fleet.hosts[0];
    let real_login = real.conninfo(&fleet.db);
    let mut grants = Vec::new();
    while sim_started.elapsed() + Duration::from_secs(35) < Duration::from_secs(window) {
        let made = real.psql(
            &real_login,
            "SELECT pim_api.activate('alice', ARRAY[]::text[], 'ops', 600, \
             'benchmark the database load', '', '', NULL) -> 'granted' ->> 'id'",
        );
        let id: i64 = made
            .assert_success()
            .stdout_trimmed()
            .parse()
            .unwrap_or_else(|_| panic!("pim_api.activate made no grant:\n{made}"));
        grants.push((id, commit_time(&fleet, &format!("id = {id}"))));
        thread::sleep(Duration::from_secs(10));
        real.psql(&real_login, "SELECT pim_api.deactivate('alice', 'ops')")
            .assert_success();
        thread::sleep(Duration::from_secs(5));
    }
    let out = sim.wait_with_output().expect("waiting for the simulator");
    let _ = fs::remove_file(&credentials);
    assert!(
        out.status.success(),
        "the simulator failed: {:?}",
        out.status
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("simulator's report");
    println!(
        "database load, {simulated} simulated hosts + 1 real, {} simulator failures:",
        report["failures"]
    );
    println!(
        "  at rest (snapshot every 30 s + LISTEN): {:.1} % of one core, {:.0} MiB (PSS of the postgres processes)",
        (cpu1 - cpu0) / rest * 100.0,
        pss as f64 / 1024.0
    );
    let ms = |key: &str| -> Vec<f64> {
        report[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default()
    };
    summary("  periodic snapshot call", ms("periodic_ms"));
    summary("  snapshot call after a wake", ms("woken_ms"));
    let seen = &report["seen"];
    let mut fanout = Vec::new();
    let mut last = Vec::new();
    for (id, committed) in &grants {
        let times: Vec<f64> = seen[id.to_string()]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        if times.len() < simulated {
            println!(
                "  grant {id}: seen by {} of {simulated} simulated hosts only",
                times.len()
            );
        }
        let l: Vec<f64> = times.iter().map(|t| (t - committed) * 1000.0).collect();
        last.push(l.iter().copied().fold(f64::MIN, f64::max));
        fanout.extend(l);
    }
    summary("  commit -> in a simulated host's snapshot", fanout);
    summary("  commit -> in every simulated host's snapshot", last);
}

#[derive(Default)]
struct Stats {
    periodic_ms: Vec<f64>,
    woken_ms: Vec<f64>,
    /// grant id -> when each simulated host first saw it (unix seconds).
    seen: HashMap<i64, Vec<f64>>,
    failures: usize,
}

/// `bench_fleet simulate LOGINS ADDRESS SECONDS`: one thread a simulated host, each with
/// its own login (one a line in the file LOGINS; no password: see
/// [`pim_e2e::postgres::Postgres::trust_loopback`]), for SECONDS once all are connected; prints a JSON report on stdout.
fn simulate(args: &[String]) {
    let [credentials, address, seconds] = args else {
        usage("simulate LOGINS ADDRESS SECONDS")
    };
    let window = Duration::from_secs(seconds.parse().unwrap_or_else(|_| usage("SECONDS")));
    let logins: Vec<String> = fs::read_to_string(credentials)
        .expect("the list of logins")
        .lines()
        .map(str::to_string)
        .collect();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // Logins a few at a time: scram-sha-256 costs both sides thousands of hashes, and
    // PostgreSQL drops a login that takes longer than authentication_timeout.
    let connecting = Instant::now();
    let next_login = std::sync::atomic::AtomicUsize::new(0);
    let clients: Mutex<Vec<postgres::Client>> = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..CONNECTING_AT_ONCE {
            s.spawn(|| loop {
                let i = next_login.fetch_add(1, Ordering::Relaxed);
                let Some(user) = logins.get(i) else {
                    break;
                };
                let conninfo =
                    format!("host={address} port=5432 dbname=pim user={user} connect_timeout=30");
                let client = postgres::Client::connect(&conninfo, postgres::NoTls)
                    .and_then(|mut c| c.batch_execute("LISTEN pim_wake").map(|()| c));
                match client {
                    Ok(c) => clients.lock().unwrap().push(c),
                    Err(e) => {
                        eprintln!("simulated host {user}: cannot connect: {e}");
                        stats.lock().unwrap().failures += 1;
                    }
                }
            });
        }
    });
    let clients = clients.into_inner().unwrap();
    eprintln!(
        "bench-fleet: {} simulated hosts connected in {:.1} s",
        clients.len(),
        connecting.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let n = clients.len();
    let mut threads = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let stats = Arc::clone(&stats);
        let stop = Arc::clone(&stop);
        // First periodic snapshot spread over the first period.
        let offset = SNAPSHOT_EVERY.mul_f64(i as f64 / n as f64);
        let t = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || simulated_host(client, offset, &stats, &stop))
            .expect("a thread");
        threads.push(t);
    }
    thread::sleep(window.saturating_sub(started.elapsed()));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let stats = stats.lock().unwrap();
    let report = serde_json::json!({
        "periodic_ms": stats.periodic_ms,
        "woken_ms": stats.woken_ms,
        "seen": stats.seen.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "failures": stats.failures,
    });
    println!("{report}");
}

fn simulated_host(
    mut client: postgres::Client,
    offset: Duration,
    stats: &Mutex<Stats>,
    stop: &AtomicBool,
) {
    let mut seen: Vec<i64> = Vec::new();
    let mut next = Instant::now() + offset;
    while !stop.load(Ordering::Relaxed) {
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        let woken = match client.notifications().timeout_iter(wait).next() {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => {
                stats.lock().unwrap().failures += 1;
                return;
            }
        };
        if !woken && Instant::now() < next {
            continue;
        }
        // Coalesce the wakes that are already there.
        while let Ok(Some(_)) = client.notifications().iter().next() {}
        let asked = Instant::now();
        let now_ms = (now_secs_f64() * 1000.0) as i64;
        let row = match client.query_one("SELECT pim_api.snapshot($1)::text", &[&now_ms]) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("simulated host: snapshot failed: {e}");
                stats.lock().unwrap().failures += 1;
                return;
            }
        };
        let took = asked.elapsed().as_secs_f64() * 1000.0;
        let at = now_secs_f64();
        let text: String = row.get(0);
        let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let ids: Vec<i64> = snapshot["grants"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g["id"].as_i64()).collect())
            .unwrap_or_default();
        let mut s = stats.lock().unwrap();
        if woken {
            s.woken_ms.push(took);
        } else {
            s.periodic_ms.push(took);
            next = Instant::now() + SNAPSHOT_EVERY;
        }
        for id in ids {
            if !seen.contains(&id) {
                seen.push(id);
                s.seen.entry(id).or_default().push(at);
            }
        }
    }
}
