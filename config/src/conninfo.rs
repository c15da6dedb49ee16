//! libpq `key=value` connection strings, as far as pim-config and pimd both need them: the
//! pairs, and the transport rule for the fleet's database. pimd (daemon/src/fleet/conninfo.rs,
//! for `[fleet] database` and `--fleet-setup`'s administrator string) and the checker
//! (`pimd --check-config`, `pim doctor`) apply this one rule, so they never disagree.

use pim_common::text;

/// The `key=value` pairs of a libpq connection string: values may be single-quoted, and a
/// backslash escapes the next character.
pub fn pairs(conninfo: &str) -> Result<Vec<(String, String)>, String> {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        return Err("give the connection string as key=value pairs, not a URL".into());
    }
    let mut out = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return Err(format!(
                "the connection string is not key=value pairs (at '{}')",
                text::escape(&key)
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of {key} has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        // libpq lets a later key override an earlier one, but the TCP client pimd uses adds
        // up repeated hosts: `host=db host=/run/postgresql` would pass the transport rule
        // on the last and connect to the first. One of each, so every reader agrees.
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!(
                "the connection string gives {} more than once: give each key once",
                text::escape(&key)
            ));
        }
        out.push((key, value));
    }
}

/// The CA file trusted when `sslrootcert` is not given: libpq's default for root
/// (`~/.postgresql/root.crt`, root's home being /root), so that a string written for libpq
/// means the same to pimd. pimd reads no environment to find it.
pub const DEFAULT_SSLROOTCERT: &str = "/root/.postgresql/root.crt";

/// The places the string connects to over TCP: its `hostaddr` addresses and its `host`
/// names that are not socket directories (libpq: hostaddr is always TCP; a host starting
/// with '/' is a socket directory). Empty: a Unix socket only.
pub fn tcp_hosts(pairs: &[(String, String)]) -> Vec<&str> {
    listed(pairs, "hostaddr")
        .into_iter()
        .chain(
            listed(pairs, "host")
                .into_iter()
                .filter(|h| !h.starts_with('/')),
        )
        .collect()
}

/// The value of the last `key` given.
pub fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The comma-separated values of the last `key` (libpq's lists of hosts and addresses).
fn listed<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    last(pairs, key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The fleet's database is reached over a Unix socket (`host=/path`) or over TCP with TLS
/// that verifies the server against a CA file of its own: `sslmode=verify-full` (the chain
/// and the name) with `sslrootcert=FILE`, or [`DEFAULT_SSLROOTCERT`] when it is not given.
/// Anything weaker lets whoever sits on the network pose as the authority and serve a policy
/// and grants of its choosing: root on every host.
pub fn check_transport(pairs: &[(String, String)]) -> Result<(), String> {
    let last = |key: &str| last(pairs, key);
    let tcp = tcp_hosts(pairs);
    let Some(first) = tcp.first() else {
        return Ok(());
    };
    let fix = "the database could be anyone on the network; write sslmode=verify-full \
               sslrootcert=FILE (FILE: the CA certificate that signed the database's \
               certificate, root's, see pim.toml(5)) or connect over a Unix socket (host=/run/postgresql)";
    let mode = last("sslmode").unwrap_or("prefer");
    if mode != "verify-full" {
        return Err(format!(
            "connects over TCP ({}) with sslmode={}: {fix}",
            text::escape(first),
            text::escape(mode)
        ));
    }
    if last("sslrootcert").is_some_and(str::is_empty) {
        return Err(format!(
            "connects over TCP ({}) with sslmode=verify-full but an empty sslrootcert: {fix}",
            text::escape(first)
        ));
    }
    // verify-full checks the certificate against the host name pimd connects to; an address
    // alone (hostaddr without a name in host at its place) leaves no name to check, and
    // any certificate of the CA would do.
    let addresses = listed(pairs, "hostaddr");
    if !addresses.is_empty() {
        let names = last("host")
            .map(|v| v.split(',').map(str::trim).collect::<Vec<_>>())
            .unwrap_or_default();
        let named = names.len() == addresses.len()
            && names.iter().all(|n| !n.is_empty() && !n.starts_with('/'));
        if !named {
            return Err(format!(
                "connects over TCP ({}) by hostaddr without the host name its certificate \
                 must carry: give host=NAME for each hostaddr (as many, in the same order), \
                 so that sslmode=verify-full has a name to check",
                text::escape(first)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
