//! Starting the hub as a child process (optionally pinned to CPUs with `taskset`), with an
//! organizer account of its own for the generator to log in with, learning its address from
//! its first line of output, and stopping it at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::http::{Credentials, HubUrl};

const LISTENING: &str = "diemcau: listening on ";

/// How to start the hub.
#[derive(Debug, Clone)]
pub struct SpawnConfig {
    pub binary: PathBuf,
    /// `taskset -c` CPU list, e.g. `0` or `0,1`.
    pub cpus: Option<String>,
    pub workers: Option<usize>,
    /// `RUST_LOG` for the hub.
    pub log: String,
    /// A file for the hub's log lines; `None`: read and dropped.
    pub log_file: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

/// A hub started by the generator; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct SpawnedHub {
    child: Child,
    pub url: HubUrl,
    pub pid: u32,
    data_dir: Option<PathBuf>,
}

impl SpawnedHub {
    pub fn start(config: &SpawnConfig) -> Result<SpawnedHub, String> {
        let binary = &config.binary;
        let help = Command::new(binary)
            .arg("--help")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let help = String::from_utf8_lossy(&help.stdout);
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--media-bind",
            "127.0.0.1",
            "--media-port",
            "0",
            "--announce-ip",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Plain HTTP: the generator speaks neither TLS nor WSS. All sites connect from one
        // address, so the per-address connection limit must let them all in.
        let supports = |flag: &str| {
            help.contains(flag) && !config.extra_args.iter().any(|a| a.as_str() == flag)
        };
        if supports("--plain-http") {
            args.push("--plain-http".to_owned());
        }
        if supports("--max-connections-per-address") {
            args.extend([
                "--max-connections-per-address".to_owned(),
                "100000".to_owned(),
            ]);
        }
        // Any free TCP media port: several hubs may run at once.
        if supports("--media-tcp-port") {
            args.extend(["--media-tcp-port".to_owned(), "0".to_owned()]);
        }
        // Every simulated hall comes from one address.
        if supports("--media-tcp-max-per-address") {
            args.extend([
                "--media-tcp-max-per-address".to_owned(),
                "100000".to_owned(),
            ]);
        }
        if supports("--seed-sites") {
            args.extend(["--seed-sites".to_owned(), "false".to_owned()]);
        }
        if let Some(workers) = config.workers {
            args.extend(["--workers".to_owned(), workers.to_string()]);
        }
        let mut data_dir = None;
        if help.contains("--data-dir") && !config.extra_args.iter().any(|a| a == "--data-dir") {
            let dir = std::env::temp_dir().join(format!(
                "diemcau-loadgen-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            args.extend(["--data-dir".to_owned(), dir.display().to_string()]);
            data_dir = Some(dir);
        }
        // A hub with accounts: the generator's own organizer account in the fresh data.
        let credentials = match &data_dir {
            Some(dir) if help.contains("account") => Some(add_account(binary, dir)?),
            _ => None,
        };
        args.extend(config.extra_args.iter().cloned());
        let mut command = match &config.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        // The hub logs to its standard error, and prints its address and links on its
        // standard output; with a log file both go there.
        let log_file = match &config.log_file {
            Some(path) => Some(
                std::fs::File::create(path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let stderr = match &log_file {
            Some(file) => Stdio::from(
                file.try_clone()
                    .map_err(|e| format!("cannot share the log file: {e}"))?,
            ),
            None => Stdio::inherit(),
        };
        command
            .args(&args)
            .env("RUST_LOG", &config.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout from the hub")?;
        let (found, listening) = mpsc::channel();
        let mut log = log_file.map(std::io::LineWriter::new);
        // Drains the hub's stdout for its whole life, so its logging never blocks on a pipe.
        std::thread::Builder::new()
            .name("hub-stdout".to_owned())
            .spawn(move || {
                let mut found = Some(found);
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix(LISTENING)
                        && let Some(found) = found.take()
                    {
                        let _ = found.send(url.trim().to_owned());
                    }
                    if let Some(file) = &mut log
                        && writeln!(file, "{line}").is_err()
                    {
                        log = None;
                    }
                }
            })
            .map_err(|e| format!("cannot read the hub's output: {e}"))?;
        let mut hub = SpawnedHub {
            child,
            url: HubUrl {
                authority: String::new(),
                credentials: None,
            },
            pid,
            data_dir,
        };
        let url = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let status = hub.child.try_wait().ok().flatten();
                return Err(format!(
                    "the hub printed no `{LISTENING}...` line within 30 s (exit status: {status:?})"
                ));
            }
        };
        hub.url = HubUrl::parse(&url)?;
        hub.url.credentials = credentials.or_else(Credentials::from_env);
        Ok(hub)
    }

    /// The data directory the generator made for it, if it did.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// Asks the hub to stop (SIGTERM, as an operator would) and waits; kills it after 10 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `diemcau account add loadgen --role organizer --password-stdin` with a random password.
fn add_account(
    binary: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<Credentials, String> {
    let mut random = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("no random bytes for the generator's password: {e}"))?;
    let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new(binary)
        .args([
            "account",
            "add",
            "loadgen",
            "--role",
            "organizer",
            "--password-stdin",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {} account add: {e}", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(password.as_bytes())
            .map_err(|e| format!("cannot pass the password to account add: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("account add did not finish: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "account add failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Credentials {
        username: "loadgen".to_owned(),
        password,
    })
}

impl Drop for SpawnedHub {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
