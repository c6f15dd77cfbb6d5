//! End-to-end in real headless Chromium: one studio page and four site pages join one meeting
//! on an in-process hub; every site must decode the studio's audio and video, and the studio
//! must decode every site's video in that site's tile.
//!
//! The browser side is `tests/e2e/studio_sites.mjs` (playwright-core driving Debian's
//! `/usr/bin/chromium`); this test starts the hub on 127.0.0.1 port 0, runs the script against
//! it and fails with the script's output when the script fails.
//!
//! Needs `node` and `tests/e2e/node_modules` (run `scripts/test`, which installs it with
//! `npm ci`). Run alone with the browser's progress shown:
//! `cargo test --test browser -- --nocapture`. Set `E2E_SCREENSHOT_DIR` to keep screenshots.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The script has its own 150 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_and_four_sites_decode_each_other_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests").join("e2e");
    assert!(
        e2e.join("node_modules").join("playwright-core").is_dir(),
        "{} is missing playwright-core: run `scripts/test` (or `npm ci` in tests/e2e) before \
         this test",
        e2e.join("node_modules").display()
    );

    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr: std::net::SocketAddr = hub.http_addr();
    let base_url = format!("http://{addr}");
    println!("hub listening on {base_url}; running tests/e2e/studio_sites.mjs");

    let outcome = run_script(root, &base_url).await;
    hub.shutdown().await;

    match outcome {
        Ok(Some(status)) => assert!(
            status.success(),
            "tests/e2e/studio_sites.mjs failed ({status}); its output above says why"
        ),
        Ok(None) => panic!("tests/e2e/studio_sites.mjs did not finish within {SCRIPT_TIMEOUT:?}"),
        Err(error) => panic!("could not run `node tests/e2e/studio_sites.mjs`: {error}"),
    }
}

/// Runs the script, printing its output line by line as it comes (the test harness shows it
/// on failure, or live with `--nocapture`). `None` when it ran over [`SCRIPT_TIMEOUT`] and was
/// killed. The wait polls, so the hub's tasks on this runtime keep running meanwhile.
async fn run_script(root: &Path, base_url: &str) -> std::io::Result<Option<ExitStatus>> {
    let mut child = Command::new("node")
        .arg("tests/e2e/studio_sites.mjs")
        .arg(base_url)
        .current_dir(root)
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
        if started.elapsed() > SCRIPT_TIMEOUT {
            kill(&mut child);
            break None;
        }
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
