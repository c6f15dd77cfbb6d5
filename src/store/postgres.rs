//! Where a PostgreSQL database is and how the hub connects to it: the URL (`postgres://user@host:port/db?sslmode=…`),
//! the password from a file (never on the command line, where every user of the machine can
//! read it), and TLS checked against the system's authorities or a CA file of the operator's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::StoreError;
use super::db::Conn;

/// How many connections read beside the one that writes and the recorder's.
pub(super) const READERS: usize = 4;

/// A PostgreSQL database to connect to.
#[derive(Clone)]
pub struct PostgresTarget {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The URL as given, which holds no password.
    url: String,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("url", &self.url)
            .finish()
    }
}

impl std::fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl PostgresTarget {
    /// The database at `url`, with the password in `password_file` (its first line) if the
    /// server asks for one, and TLS checked against `ca_file` (PEM) besides the system's
    /// authorities. A password written in the URL is refused.
    pub fn new(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<PostgresTarget, String> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| format!("the database URL is not one PostgreSQL reads: {e}"))?;
        if config.get_password().is_some() {
            return Err(
                "the database URL holds a password: put it in a file of its own, \
                        readable by the hub's user only, and give it with \
                        --database-password-file"
                    .to_owned(),
            );
        }
        if let Some(file) = password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                format!("cannot read the database password {}: {e}", file.display())
            })?;
            let password = text.lines().next().unwrap_or_default();
            if password.is_empty() {
                return Err(format!(
                    "the database password file {} is empty",
                    file.display()
                ));
            }
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("diemcau");
        Ok(PostgresTarget {
            tls: tls(ca_file)?,
            config,
            url: url.to_owned(),
        })
    }

    /// The same database, naming its tables in `schema` first: each test has its own (and
    /// its connections carry the schema's name, so that a test can find them).
    pub fn in_schema(&self, schema: &str) -> PostgresTarget {
        let mut target = self.clone();
        target
            .config
            .options(&format!("-c search_path={schema}"))
            .application_name(schema);
        target.url = format!("{} (schema {schema})", self.url);
        target
    }

    /// A new connection.
    pub(super) fn connect(&self) -> Result<Conn, StoreError> {
        Ok(Conn::postgres(self.client()?, self.clone()))
    }

    /// A new connection, as the driver gives it.
    pub fn client(&self) -> Result<postgres::Client, StoreError> {
        super::db::outside_runtime(|| self.config.connect(self.tls.clone())).map_err(|e| {
            StoreError::Unreachable(format!(
                "cannot connect to {}: {}",
                self.url,
                super::db::postgres_message(&e)
            ))
        })
    }
}

/// TLS to the database: the server's certificate checked against the system's authorities
/// and the operator's CA file. Whether TLS is used is the URL's `sslmode` (`disable`,
/// `prefer`, the default, or `require`).
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(file) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read the database's CA file {}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", file.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("a certificate of {}: {e}", file.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
