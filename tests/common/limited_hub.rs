//! The `diemcau` binary as a child process under a limit of open files (as a service manager
//! would start it), over HTTPS or plain HTTP, and clients that reach it from a chosen loopback
//! address (any of 127.0.0.0/8), so that one test can play several client addresses.
//!
//! Include it with `#[path = "common/limited_hub.rs"] mod limited_hub;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A byte stream to the hub, over TLS or not.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A hub child process; killed when dropped.
pub struct LimitedHub {
    pub child: Child,
    pub addr: SocketAddr,
    /// Set for HTTPS: trusts the hub's self-signed certificate.
    pub tls: Option<TlsConnector>,
}

impl Drop for LimitedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the hub binary on a free port of 127.0.0.1 with its soft and hard limit of open
/// files at `open_files`, HTTPS unless `plain_http`, its data in `data_dir`, and `args`
/// added; returns once it listens.
pub fn spawn(data_dir: &Path, open_files: u64, plain_http: bool, args: &[&str]) -> LimitedHub {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={open_files}:{open_files}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_diemcau"))
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--media-bind",
            "127.0.0.1",
            "--media-port",
            "0",
            "--media-tcp-port",
            "0",
        ])
        .args(["--announce-ip", "127.0.0.1", "--workers", "1"])
        .args(["--seed-sites", "false", "--data-dir"])
        .arg(data_dir)
        .args(args);
    if plain_http {
        command.arg("--plain-http");
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("prlimit and the hub binary start");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the hub prints its address")
            .expect("readable stdout");
        if let Some(url) = line.strip_prefix("diemcau: listening on ") {
            let (_, addr) = url.split_once("://").expect("a URL");
            break addr.trim().parse().expect("an address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let tls = (!plain_http).then(|| connector(&self_signed_certificate(data_dir)));
    LimitedHub { child, addr, tls }
}

impl LimitedHub {
    /// A TCP connection from `source` (a loopback address), with nothing sent.
    pub async fn tcp_from(&self, source: IpAddr) -> std::io::Result<TcpStream> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.addr).await
    }

    /// A connection from `source` ready for HTTP: the TLS handshake done over HTTPS.
    pub async fn connect_from(&self, source: IpAddr) -> std::io::Result<Box<dyn Io>> {
        let tcp = self.tcp_from(source).await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let name = ServerName::try_from("localhost").expect("a name");
                Ok(Box::new(tls.connect(name, tcp).await?))
            }
        }
    }

    /// `GET path` from `source` on a fresh connection: the raw response (status line,
    /// headers, body).
    pub async fn get_from(&self, source: IpAddr, path: &str) -> std::io::Result<String> {
        let mut io = self.connect_from(source).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        io.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        // Over TLS the hub may close without `close_notify`: what arrived is the answer.
        let _ = io.read_to_end(&mut response).await;
        Ok(String::from_utf8_lossy(&response).into_owned())
    }
}

/// Where the hub keeps the certificate it made on first start.
fn self_signed_certificate(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("self-signed-cert.pem")
}

fn connector(cert: &Path) -> TlsConnector {
    let pem = std::fs::read(cert).expect("the hub's self-signed certificate");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
        roots.add(cert).expect("a certificate");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}
