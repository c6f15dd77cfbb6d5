//! Runs one of the Node scripts of `tests/e2e` (playwright-core driving Debian's
//! `/usr/bin/chromium`) against a hub started by the test, echoing the script's output line by
//! line as it comes (the harness shows it on failure, or live with `--nocapture`).
//!
//! Shared by the browser tests through `#[path = "e2e/node_script.rs"] mod node_script;`.

#![allow(dead_code)] // each browser test uses part of it

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The repository root, where the scripts are run from.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Panics with what to do when playwright-core has not been installed.
pub fn require_playwright() {
    let modules = root().join("tests").join("e2e").join("node_modules");
    assert!(
        modules.join("playwright-core").is_dir(),
        "{} is missing playwright-core: run `scripts/test` (or `npm ci` in tests/e2e) before \
         this test",
        modules.display()
    );
}

/// A data directory of the test's own, removed when dropped.
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(name: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!("diemcau-{name}-{}", std::process::id()));
        // A leftover of an earlier run with the same process id would hold its meetings.
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    pub fn path(&self) -> PathBuf {
        self.0.clone()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `script` against a hub of `Config::for_tests` on a data directory of its own (named
/// after `name`), as [`run_against_hub`] does; first checks that playwright-core is installed.
pub async fn run_on_test_hub(name: &str, script: &str, timeout: Duration) {
    require_playwright();
    let data = DataDir::new(name);
    let hub = diemcau::start(diemcau::Config::for_tests_in(data.path()))
        .await
        .expect("hub starts");
    run_against_hub(hub, script, timeout, &[]).await;
}

/// Runs `node tests/e2e/<script> <hub's base URL>`, with `env` added (what the test set up for
/// the script, such as relay ports), then shuts the hub down; panics with a reason unless the
/// script exited 0 within `timeout`. The wait polls, so the hub's tasks keep running.
pub async fn run_against_hub(
    hub: diemcau::RunningHub,
    script: &str,
    timeout: Duration,
    env: &[(&str, String)],
) {
    let base_url = hub.base_url();
    let path = format!("tests/e2e/{script}");
    println!("hub listening on {base_url}; running {path}");
    let outcome = run(&path, &base_url, timeout, env).await;
    hub.shutdown().await;
    match outcome {
        Ok(Some(status)) => assert!(
            status.success(),
            "{path} failed ({status}); its output above says why"
        ),
        Ok(None) => panic!("{path} did not finish within {timeout:?}"),
        Err(error) => panic!("could not run `node {path}`: {error}"),
    }
}

/// Runs `node tests/e2e/<script> <base_url>` with `env` added, against hubs the test started
/// itself (processes, say); panics with a reason unless the script exited 0 within `timeout`.
#[allow(dead_code)]
pub async fn run_against(base_url: &str, script: &str, timeout: Duration, env: &[(&str, String)]) {
    let path = format!("tests/e2e/{script}");
    println!("running {path} against {base_url}");
    match run(&path, base_url, timeout, env).await {
        Ok(Some(status)) => assert!(
            status.success(),
            "{path} failed ({status}); its output above says why"
        ),
        Ok(None) => panic!("{path} did not finish within {timeout:?}"),
        Err(error) => panic!("could not run `node {path}`: {error}"),
    }
}

/// `None` when the script ran over `timeout` and was killed.
async fn run(
    path: &str,
    base_url: &str,
    timeout: Duration,
    env: &[(&str, String)],
) -> std::io::Result<Option<ExitStatus>> {
    let mut command = Command::new("node");
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    if base_url.starts_with("https://") {
        // The hub's self-signed certificate: accepted on purpose, by node's fetch and Chromium.
        command
            .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
            .env("NODE_NO_WARNINGS", "1")
            .env("E2E_IGNORE_HTTPS_ERRORS", "1");
    }
    let mut child = command
        .arg(path)
        .arg(base_url)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let echoes = [
        child.stdout.take().map(echo_lines),
        child.stderr.take().map(echo_lines),
    ];

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            kill(&mut child);
            break None;
        }
        // A polling period: the loop ends as soon as the script exits.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for echo in echoes.into_iter().flatten() {
        // An echo thread ends when its pipe closes; a panic there only loses output lines.
        let _ = echo.join();
    }
    Ok(status)
}

fn kill(child: &mut Child) {
    // The child may have exited between the check and the kill; either way it is gone.
    let _ = child.kill();
    let _ = child.wait();
}

/// Prints each line of `pipe` on a thread of its own (std threads inherit the test's output
/// capture).
fn echo_lines<R: Read + Send + 'static>(pipe: R) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            println!("{line}");
        }
    })
}
