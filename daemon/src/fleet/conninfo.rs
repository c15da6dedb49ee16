//! The `[fleet] database` connection string (libpq `key=value` syntax) made into a
//! connection: the keys tokio-postgres knows pass through; pimd handles the TLS keys
//! (`sslmode` up to `verify-full`, `sslrootcert`, `sslcert`, `sslkey`) and `passfile`, read
//! by pimd itself from a root-only pgpass file so that no password sits in pim.toml. Over
//! TCP only `verify-full` is accepted, against `sslrootcert` (libpq's default file for root when not given)
//! ([`pim_config::conninfo::check_transport`]): anything less lets the network pose as the
//! authority. A dead database must never hang a call: connects, statements and the TCP
//! connection all have timeouts unless the string sets its own.

use openssl::ssl::{SslConnector, SslConnectorBuilder, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use postgres::Config;
use postgres_openssl::MakeTlsConnector;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection attempt may take when the string does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one statement may run in the database (`statement_timeout`).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sent data may stay unacknowledged before the connection counts as dead.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalives: a silent peer is noticed after IDLE + RETRIES * INTERVAL.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
const KEEPALIVE_RETRIES: u32 = 3;

/// What `sslmode` asks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS if the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS, unverified unless `sslrootcert` is given (then as `VerifyCa`), as libpq does.
    Require,
    /// TLS, the chain verified against `sslrootcert`'s certificates (and no others).
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host.
    VerifyFull,
}

/// A parsed connection string, ready to connect.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    config: Config,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    /// Read again at each connection, as libpq does: a new password written there (`pim
    /// admin host enable` gives one) is taken without a restart.
    passfile: Option<PathBuf>,
}

impl ConnInfo {
    /// Parses `text`; reads the password from `passfile=` when the string has none (and
    /// again at each connection).
    pub fn parse(text: &str) -> Result<ConnInfo, String> {
        let pairs = pim_config::conninfo::pairs(text)?;
        pim_config::conninfo::check_transport(&pairs)?;
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let (mut cert, mut key) = (None, None);
        let mut passfile = None;
        let mut rest = String::new();
        for (key_name, value) in pairs {
            match key_name.as_str() {
                "sslmode" => tls = tls_mode(&value)?,
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                "sslcert" => cert = Some(PathBuf::from(value)),
                "sslkey" => key = Some(PathBuf::from(value)),
                "passfile" => passfile = Some(PathBuf::from(value)),
                _ => {
                    let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                    rest.push_str(&format!("{key_name}='{quoted}' "));
                }
            }
        }
        if matches!(tls, TlsMode::VerifyCa | TlsMode::VerifyFull) && root_cert.is_none() {
            // As libpq: the CA certificate(s) that signed the database's certificate are in
            // root's ~/.postgresql/root.crt; pimd trusts those only, never the system's CAs.
            root_cert = Some(PathBuf::from(pim_config::conninfo::DEFAULT_SSLROOTCERT));
        }
        let client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("sslcert and sslkey go together: give both or neither".into()),
        };
        let mut config: Config = rest
            .parse()
            .map_err(|e| format!("the connection string is not valid: {e}"))?;
        config.ssl_mode(match tls {
            TlsMode::Disable => postgres::config::SslMode::Disable,
            TlsMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        let passfile = passfile.filter(|_| config.get_password().is_none());
        if let Some(file) = &passfile {
            config.password(read_passfile(file, &config)?);
        }
        apply_timeouts(&mut config);
        Ok(ConnInfo {
            config,
            tls,
            root_cert,
            client_cert,
            passfile,
        })
    }

    /// Opens a connection (blocking, within the connect timeout). The error says why, down
    /// to its cause (a certificate from an unknown CA, a name mismatch): what pimd logs.
    pub fn connect(&self) -> Result<postgres::Client, String> {
        let tls = self.tls_connector()?;
        let mut config = self.config.clone();
        // A passfile caught half-written, or replaced with the wrong mode, leaves the
        // password read before in place rather than stopping every reconnection.
        if let Some(password) = self
            .passfile
            .as_ref()
            .and_then(|file| read_passfile(file, &config).ok())
        {
            config.password(password);
        }
        config.connect(tls).map_err(|e| with_causes(&e))
    }

    /// The database user the string names (for messages).
    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    fn tls_connector(&self) -> Result<MakeTlsConnector, String> {
        let mut builder = self.ssl_builder()?;
        let verify_chain = match self.tls {
            TlsMode::VerifyCa | TlsMode::VerifyFull => true,
            TlsMode::Require => self.root_cert.is_some(),
            TlsMode::Disable | TlsMode::Prefer => false,
        };
        builder.set_verify(if verify_chain {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        let mut connector = MakeTlsConnector::new(builder.build());
        let verify_host = self.tls == TlsMode::VerifyFull;
        connector.set_callback(move |config, domain| {
            // OpenSSL takes an empty name for "no name to check": verify-full without a
            // name would verify the chain only. The transport rule refuses such strings;
            // this holds whatever reaches here.
            if verify_host && domain.is_empty() {
                return Err(openssl::error::ErrorStack::get());
            }
            config.set_verify_hostname(verify_host);
            Ok(())
        });
        Ok(connector)
    }

    /// The TLS client settings: the server is trusted on `sslrootcert`'s certificates only,
    /// as libpq does, never on the system's CAs (any public CA could then pose as the
    /// authority).
    fn ssl_builder(&self) -> Result<SslConnectorBuilder, String> {
        let setup = |e: openssl::error::ErrorStack| format!("TLS setup: {e}");
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
        let mut store = X509StoreBuilder::new().map_err(setup)?;
        if let Some(root) = &self.root_cert {
            let pem = read_root_only(root)?;
            let shown = root.display();
            let certs = X509::stack_from_pem(&pem)
                .map_err(|e| format!("sslrootcert {shown} is not PEM certificates: {e}"))?;
            for cert in certs {
                store.add_cert(cert).map_err(setup)?;
            }
        }
        builder.set_cert_store(store.build());
        if let Some((cert, key)) = &self.client_cert {
            builder.set_certificate_chain_file(cert).map_err(setup)?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(setup)?;
        }
        Ok(builder)
    }
}

/// The CA file's contents, read from the file whose owner and mode were checked (opened once,
/// no link followed), in directories only root can change: whoever can change it, or put
/// another file in its place, chooses whom pimd trusts as the fleet's database.
fn read_root_only(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let shown = path.display();
    let unsafe_place = |what: String| {
        format!(
            "sslrootcert {shown}: {what}; it must be root's and writable by root only (chmod \
             644), in directories only root can write"
        )
    };
    for dir in path
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
    {
        let meta = std::fs::metadata(dir).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
        // A sticky directory (/tmp) lets nobody but root move root's files in it.
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(unsafe_place(format!(
                "{} is not root's alone",
                dir.display()
            )));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(unsafe_place("it is not a file of root's alone".into()));
    }
    let mut pem = Vec::new();
    file.read_to_end(&mut pem)
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    Ok(pem)
}

/// `error` and its sources, each once ("error performing TLS handshake: ...: hostname
/// mismatch"): tokio-postgres's message alone leaves the cause out.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

fn tls_mode(value: &str) -> Result<TlsMode, String> {
    Ok(match value {
        "disable" => TlsMode::Disable,
        "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        other => {
            return Err(format!(
            "sslmode '{}' is not supported: use disable, prefer, require, verify-ca or verify-full",
            pim_common::text::escape(other)
        ))
        }
    })
}

/// Our timeouts, where the string sets none of its own.
fn apply_timeouts(config: &mut Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config.keepalives(true);
    if config.get_keepalives_idle() > KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    let options = config.get_options().unwrap_or("").to_string();
    if !options.contains("statement_timeout") {
        let ms = STATEMENT_TIMEOUT.as_millis();
        config.options(format!("{options} -c statement_timeout={ms}").trim());
    }
    if config.get_application_name().is_none() {
        config.application_name("pimd");
    }
}

/// The password for `config`'s host, port, database and user from a pgpass file, which
/// must be root's and unreadable by others: it holds the host's database password.
fn read_passfile(path: &Path, config: &Config) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("passfile {shown}: {e}"))?;
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "passfile {shown} must be owned by root and readable by root only (chmod 600)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("passfile {shown}: {e}"))?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(name)) => name.clone(),
        Some(postgres::config::Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or("");
    let dbname = config.get_dbname().unwrap_or(user);
    passfile_password(&text, [&host, &port, dbname, user])
        .ok_or_else(|| format!("no line of passfile {shown} matches {host}:{port}:{dbname}:{user}"))
}

/// The password of the first pgpass line whose four fields match `wanted` (`*` matches
/// anything; `\:` and `\\` are escapes); comments start with `#`.
pub(crate) fn passfile_password(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            let [host, port, db, user, password] = fields.as_slice() else {
                return None;
            };
            let matches = [host, port, db, user]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
            matches.then(|| password.clone())
        })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests;
