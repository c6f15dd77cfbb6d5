//! The hub serves HTTPS by default: with no certificate configured it makes a self-signed one
//! (kept for the next start), and pages, API and signalling all answer over TLS.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};

async fn get_over_tls(addr: std::net::SocketAddr, roots: RootCertStore, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    send_over_tls(addr, roots, &request).await
}

/// Sends one raw HTTP/1.1 request over TLS and reads the whole response.
async fn send_over_tls(addr: std::net::SocketAddr, roots: RootCertStore, request: &str) -> String {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the hub's certificate");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate() {
    let data = std::env::temp_dir().join(format!("diemcau-https-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = diemcau::Config::for_tests_in(data.clone());
    config.plain_http = false;
    let hub = diemcau::start(config.clone()).await.expect("hub starts");
    assert!(hub.base_url().starts_with("https://"), "{}", hub.base_url());
    let cert_path = data.join("tls").join("self-signed-cert.pem");
    let pem = std::fs::read(&cert_path).expect("the self-signed certificate is kept");
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("a certificate");
    }
    let health = get_over_tls(hub.http_addr(), roots.clone(), "/api/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let page = get_over_tls(hub.http_addr(), roots.clone(), "/site.html").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=31536000"),
        "HSTS over HTTPS: {page}"
    );
    assert!(
        lower.contains("content-security-policy: default-src 'self'; script-src 'self';"),
        "a strict CSP: {page}"
    );

    // A state change whose Origin names this host over plain HTTP is another site's page.
    let port = hub.http_addr().port();
    let login = |origin: String| {
        let body = r#"{"username":"organizer","password":"organizer-password-for-tests"}"#;
        format!(
            "POST /api/login HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: {origin}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let plain = send_over_tls(
        hub.http_addr(),
        roots.clone(),
        &login(format!("http://localhost:{port}")),
    )
    .await;
    assert!(
        plain.starts_with("HTTP/1.1 403"),
        "http:// origin refused: {plain}"
    );
    let same = send_over_tls(
        hub.http_addr(),
        roots.clone(),
        &login(format!("https://localhost:{port}")),
    )
    .await;
    assert!(
        same.starts_with("HTTP/1.1 200"),
        "https:// origin accepted: {same}"
    );

    // A plain-HTTP request to the HTTPS port gets no page.
    let mut tcp = tokio::net::TcpStream::connect(hub.http_addr())
        .await
        .expect("connect");
    tcp.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("\"status\""),
        "no plain HTTP"
    );
    hub.shutdown().await;

    // Started again, the hub keeps the same certificate (browsers accepted it once).
    let hub = diemcau::start(config).await.expect("hub starts again");
    let again = get_over_tls(hub.http_addr(), roots, "/api/health").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

/// The DER certificates in a PEM file.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// A certificate for `localhost` that ends `days` days from now, written to `dir` as PEM files.
fn certificate_ending_in(
    days: i64,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("certificate params");
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("a certificate");
    std::fs::create_dir_all(dir).expect("dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_when_the_certificate_ends_and_flag_one_ending_within_30_days() {
    for (days, soon) in [(10, "1"), (90, "0")] {
        let data = std::env::temp_dir().join(format!(
            "diemcau-https-expiry-{days}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&data);
        let (cert, key) = certificate_ending_in(days, &data.join("given"));
        let mut config = diemcau::Config::for_tests_in(data.clone());
        config.plain_http = false;
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key);
        let hub = diemcau::start(config).await.expect("hub starts");
        let mut roots = RootCertStore::empty();
        for c in rustls_pemfile_certs(&std::fs::read(&cert).expect("read")) {
            roots.add(c).expect("a certificate");
        }
        let metrics = get_over_tls(hub.http_addr(), roots, "/metrics").await;
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .map(str::to_owned)
        };
        let ends: i64 = value("diemcau_tls_certificate_expiry_timestamp_seconds")
            .expect("the expiry is on /metrics")
            .parse()
            .expect("a number");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (ends - now - days * 86_400).abs() < 120,
            "ends {ends}, expected about {days} days after {now}"
        );
        assert_eq!(
            value("diemcau_tls_certificate_expires_soon").as_deref(),
            Some(soon),
            "{days} days left"
        );
        hub.shutdown().await;
        let _ = std::fs::remove_dir_all(&data);
    }
}
