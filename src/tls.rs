//! HTTPS for the web server: browsers allow cameras and microphones only on secure pages, so
//! the hub serves HTTPS by default. A configured certificate and key are used as given; without
//! one, the hub makes a self-signed certificate on first start and keeps it in its data
//! directory (browsers then ask once to accept it).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// PEM certificate chain and private key, and where they came from.
#[derive(Debug)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub origin: TlsOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOrigin {
    /// Given with `--tls-cert` and `--tls-key`.
    Configured,
    /// Self-signed, made earlier and kept at this path.
    SelfSigned(PathBuf),
    /// Self-signed, made now and written at this path.
    Generated(PathBuf),
}

/// Loads the configured pair, or the self-signed one in `data_dir/tls`, making it if needed
/// for the given host names and addresses.
pub fn load_or_create(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    addresses: &[IpAddr],
) -> std::io::Result<TlsFiles> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            return Ok(TlsFiles {
                cert_pem: std::fs::read(cert)?,
                key_pem: std::fs::read(key)?,
                origin: TlsOrigin::Configured,
            });
        }
        (None, None) => {}
        _ => {
            return Err(std::io::Error::other(
                "give both --tls-cert and --tls-key, or neither",
            ));
        }
    }
    let dir = data_dir.join("tls");
    let (cert_path, key_path) = (
        dir.join("self-signed-cert.pem"),
        dir.join("self-signed-key.pem"),
    );
    if cert_path.exists() && key_path.exists() {
        return Ok(TlsFiles {
            cert_pem: std::fs::read(&cert_path)?,
            key_pem: std::fs::read(&key_path)?,
            origin: TlsOrigin::SelfSigned(cert_path),
        });
    }
    let mut names = vec!["localhost".to_owned()];
    names.extend(addresses.iter().map(ToString::to_string));
    names.push("127.0.0.1".to_owned());
    names.sort();
    names.dedup();
    let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(&dir)?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, certified.cert.pem())?;
    Ok(TlsFiles {
        cert_pem: certified.cert.pem().into_bytes(),
        key_pem: certified.signing_key.serialize_pem().into_bytes(),
        origin: TlsOrigin::Generated(cert_path),
    })
}

/// How long before its end the hub warns that its certificate expires.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// When the first certificate of a PEM chain (the hub's own) stops being valid, in seconds
/// since the Unix epoch; `None` when it cannot be read.
pub fn expires_at(cert_pem: &[u8]) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Whether a certificate ending at `expires_at` ends within [`EXPIRY_WARNING_DAYS`] of `now`
/// (both in seconds since the Unix epoch), or has ended.
pub fn expires_soon(expires_at: i64, now: i64) -> bool {
    expires_at - now < EXPIRY_WARNING_DAYS * 86_400
}

/// Logs when the certificate ends, as a warning once it is within [`EXPIRY_WARNING_DAYS`], and
/// again every day while the hub runs.
pub async fn watch_expiry(expires_at: i64) {
    let mut day = tokio::time::interval(std::time::Duration::from_secs(86_400));
    loop {
        day.tick().await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let days_left = (expires_at - now).div_euclid(86_400);
        let date = time::OffsetDateTime::from_unix_timestamp(expires_at)
            .map(|d| d.date().to_string())
            .unwrap_or_default();
        if expires_at <= now {
            tracing::error!(expired = %date, "the TLS certificate has expired: browsers refuse the hub; renew it and restart the hub");
        } else if expires_soon(expires_at, now) {
            tracing::warn!(expires = %date, days_left, "the TLS certificate expires soon: renew it and restart the hub");
        }
    }
}

/// Writes a file readable by its owner only (the private key).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_self_signed_pair_once_and_reuses_it() {
        let dir = std::env::temp_dir().join(format!("diemcau-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(None, None, &dir, &[]).expect("generated");
        assert!(matches!(first.origin, TlsOrigin::Generated(_)));
        assert!(String::from_utf8_lossy(&first.cert_pem).contains("BEGIN CERTIFICATE"));
        let again = load_or_create(None, None, &dir, &[]).expect("reused");
        assert!(matches!(again.origin, TlsOrigin::SelfSigned(_)));
        assert_eq!(again.cert_pem, first.cert_pem);
        assert!(load_or_create(Some(Path::new("/nonexistent")), None, &dir, &[]).is_err());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ends = expires_at(&first.cert_pem).expect("the certificate's end is read");
        assert!(ends > now, "a new certificate is valid");
        assert!(!expires_soon(ends, now), "rcgen's certificates last years");
        assert!(expires_soon(now + 29 * 86_400, now));
        assert!(!expires_soon(now + 31 * 86_400, now));
        assert_eq!(expires_at(b"not a certificate"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
