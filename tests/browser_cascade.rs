//! End-to-end in real headless Chromium across two hubs: the national studio's page on the
//! root hub, a commune's page on its provincial hub; the commune decodes the national studio's
//! video, relayed by its province (docs/cascade.md). Then the root stops: the commune stays
//! joined to its provincial hub and its page says the province has lost the centre. The
//! national chair's console shows the commune live, marked with its hub, and a menu of the
//! meeting's provinces with their counts that filters the tiles; the chair gives it
//! the floor there, and the studio's page decodes the commune's camera, come up through its
//! provincial hub.
//!
//! A province's organizer opening its part's studio link watches it: the national studio's
//! picture in the preview, its communes on the console, no chair control (the centre chairs).
//!
//! The browser side is `tests/e2e/cascade.mjs` and `tests/e2e/cascade_watch.mjs`. Needs `node` and `tests/e2e/node_modules`
//! (run `scripts/test`). Run alone with the browser's progress shown:
//! `cargo test --test browser_cascade -- --nocapture`.

#![allow(clippy::indexing_slicing)] // JSON lookups

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/cascade_webrtc.rs"]
mod cascade_webrtc;
#[path = "common/http.rs"]
mod http;
#[path = "e2e/node_script.rs"]
mod node_script;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::time::Duration;

/// One Chromium and one tree at a time on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The script has its own 150 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commune_page_on_its_provincial_hub_decodes_the_national_studio_in_chromium() {
    node_script::require_playwright();
    let _one = ONE_AT_A_TIME.lock().await;
    let tree = cascade::Tree::start("browser-cascade").await;
    // Thượng Lâm on its province's hub, and Lũng Cú, whose province has no hub of its own.
    let national = tree.national_meeting(&["02269", "00694"]).await;
    let part = tree.part(national["id"].as_i64().expect("an id")).await;
    let env = [
        ("ROOT_URL", tree.root.base_url()),
        (
            "STUDIO_PATH",
            national["links"]["studio"]
                .as_str()
                .expect("the studio's link")
                .to_owned(),
        ),
        (
            "SITE_PATH",
            part["links"]["sites"]["02269"]
                .as_str()
                .expect("the commune's link on its provincial hub")
                .to_owned(),
        ),
    ];
    let province_ports: Vec<String> = tree
        .province
        .media_addresses()
        .iter()
        .chain(tree.province.media_tcp_addresses())
        .map(|a| a.port().to_string())
        .collect();
    let mut env = env.to_vec();
    env.push(("PROVINCE_MEDIA_PORTS", province_ports.join(",")));
    let mark = tree.dir.join("decoded");
    env.push(("DECODED_MARK", mark.display().to_string()));
    let cascade::Tree {
        dir,
        root,
        province,
    } = tree;
    // Once the commune decodes the studio, the root goes away.
    let stopper = tokio::spawn(async move {
        while !mark.exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        root.shutdown().await;
    });
    node_script::run_against_hub(province, "cascade.mjs", SCRIPT_TIMEOUT, &env).await;
    stopper.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provinces_organizer_watches_its_part_of_the_national_meeting_in_chromium() {
    node_script::require_playwright();
    let _one = ONE_AT_A_TIME.lock().await;
    let tree = cascade::Tree::start("browser-cascade-watch").await;
    let national = tree.national_meeting(&["02269"]).await;
    let studio = cascade_webrtc::studio(tree.root.http_addr(), &national).await;
    let part = tree.part(national["id"].as_i64().expect("an id")).await;
    let env = [(
        "STUDIO_PATH",
        part["links"]["studio"]
            .as_str()
            .expect("the part's studio link")
            .to_owned(),
    )];
    let cascade::Tree {
        dir,
        root,
        province,
    } = tree;
    node_script::run_against_hub(province, "cascade_watch.mjs", SCRIPT_TIMEOUT, &env).await;
    studio.close().await;
    root.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
