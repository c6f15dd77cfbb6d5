//! The built `diemcau` binary as a child process on free ports of 127.0.0.1, for tests that
//! need a real process to signal, kill or restart on the same data directory.
//!
//! Include it with `#[path = "common/hub_binary.rs"] mod hub_binary;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The hub binary on free ports, one media worker, plain HTTP, no seeded sites, the short
/// intervals of `Config::for_tests`, its data in `data_dir`; stdio is left for the caller to
/// set.
pub fn command(data_dir: &Path) -> Command {
    let interval = diemcau::config::TEST_INTERVAL_MS.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_diemcau"));
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(["--liveness-interval-ms", &interval])
        .args(["--console-interval-ms", &interval])
        .args(["--login-check-interval-ms", &interval])
        .args([
            "--media-bind",
            "127.0.0.1",
            "--media-port",
            "0",
            "--media-tcp-port",
            "0",
        ])
        .args(["--announce-ip", "127.0.0.1", "--workers", "1"])
        // Tests record only where they say so (with `--recording auto`).
        .env("DIEMCAU_RECORDING", "manual")
        .args(["--plain-http", "--seed-sites", "false", "--data-dir"])
        .arg(data_dir);
    command
}

/// Starts the hub binary with the test organizer's account in `data_dir` (added as an operator
/// would, unless there already) and returns it with its HTTP address, once it listens.
pub fn spawn(data_dir: &Path) -> (Child, SocketAddr) {
    spawn_with(data_dir, &[])
}

/// [`spawn`] with the hub's log (its standard error) on a pipe, for the test to read.
pub fn spawn_logged(data_dir: &Path) -> (Child, SocketAddr) {
    add_test_organizer(data_dir);
    let mut command = command(data_dir);
    command.stderr(Stdio::piped());
    run(command)
}

/// [`spawn`] with more arguments (a parent to link to, say).
pub fn spawn_with(data_dir: &Path, args: &[String]) -> (Child, SocketAddr) {
    spawn_on(data_dir, None, args)
}

/// [`spawn_with`], its data in the PostgreSQL database at `database` if given (its files,
/// the TLS certificate and first passwords, still in `data_dir`).
pub fn spawn_on(data_dir: &Path, database: Option<&str>, args: &[String]) -> (Child, SocketAddr) {
    add_organizer_on(data_dir, database);
    let mut command = command(data_dir);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    command.args(args);
    run(command)
}

/// [`spawn_on`] with the files the hub writes limited to `kib` KiB each (`ulimit -f`, with
/// `SIGXFSZ` ignored as a service manager's `LimitFSIZE` would leave it): a write past the
/// limit fails as on a full disk, without root.
#[allow(dead_code)] // not every test binary uses it
pub fn spawn_with_file_limit(
    data_dir: &Path,
    database: Option<&str>,
    args: &[String],
    kib: u64,
) -> (Child, SocketAddr) {
    add_organizer_on(data_dir, database);
    let hub = command(data_dir);
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$@\""))
        .arg("bash")
        .arg(hub.get_program())
        .args(hub.get_args());
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    command.args(args);
    run(command)
}

/// Runs a hub command and returns it with its HTTP address, once it listens.
fn run(mut command: Command) -> (Child, SocketAddr) {
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("hub binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the hub prints its address")
            .expect("readable stdout");
        if let Some(url) = line.strip_prefix("diemcau: listening on http://") {
            break url.trim().parse().expect("an address");
        }
    };
    // Keep draining stdout so the hub never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Adds the test organizer's account to a hub binary's data directory with
/// `diemcau account add --password-stdin`, unless it is there already (a restart).
pub fn add_test_organizer(data_dir: &Path) {
    add_organizer_on(data_dir, None);
}

/// [`add_test_organizer`] with the data in the PostgreSQL database at `database` if given.
pub fn add_organizer_on(data_dir: &Path, database: Option<&str>) {
    let (username, password) = diemcau::config::TEST_ORGANIZER;
    let mut args = vec!["add", username, "--role", "organizer", "--password-stdin"];
    if let Some(url) = database {
        args.extend(["--database", url]);
    }
    let added = account(data_dir, &args, password);
    let stderr = String::from_utf8_lossy(&added.stderr);
    assert!(
        added.status.success() || stderr.contains("exists already"),
        "{stderr}"
    );
}

/// Runs `diemcau account ARGS --data-dir DATA_DIR` with `stdin` as its standard input; returns
/// its exit status and outputs.
pub fn account(data_dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diemcau"))
        .arg("account")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("diemcau account runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to diemcau account");
    child.wait_with_output().expect("diemcau account ends")
}

/// A hub process killed when the test ends, passed or not.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
