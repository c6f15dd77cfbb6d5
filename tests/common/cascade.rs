//! A national tree on one machine for the cascade tests: a root hub and a provincial hub
//! (Tuyên Quang, province 08) linked to it with a credential from `diemcau node add`, each on
//! its own data directory; a national meeting made and started at the root, and the
//! province's part of it as the provincial hub shows it.

#![allow(dead_code)] // each test uses part of it

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::http;
use super::wait;

/// The national directory the root gets: the province and two of its communes, and a
/// commune of another province.
pub const DIRECTORY: &str = "admin_code,name,level,parent_code,parent_name,delegates\n\
     08,Tuyên Quang,tỉnh,,,0\n\
     02269,Xã Thượng Lâm,xã,08,Tuyên Quang,40\n\
     02266,Xã Lâm Bình,xã,08,Tuyên Quang,35\n\
     02,Hà Giang,tỉnh,,,0\n\
     00694,Xã Lũng Cú,xã,02,Hà Giang,30\n";

/// The root and the provincial hub, running.
pub struct Tree {
    pub dir: PathBuf,
    pub root: diemcau::RunningHub,
    pub province: diemcau::RunningHub,
}

impl Tree {
    /// Starts the root with [`DIRECTORY`], adds the province's node, starts the provincial
    /// hub with its credential and waits until it is linked.
    pub async fn start(name: &str) -> Tree {
        Tree::start_through(name, |root| async move { root }).await
    }

    /// [`Tree::start`], the province reaching the root at the address `through` gives for the
    /// root's (a relay the test controls, say).
    pub async fn start_through<F, Fut>(name: &str, through: F) -> Tree
    where
        F: FnOnce(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = SocketAddr>,
    {
        Tree::start_with(name, through, |_| {}, |_| {}).await
    }

    /// [`Tree::start_through`], the root's configuration changed by `configure_root` and the
    /// provincial hub's by `configure`.
    pub async fn start_with<F, Fut>(
        name: &str,
        through: F,
        configure_root: impl FnOnce(&mut diemcau::Config),
        configure: impl FnOnce(&mut diemcau::Config),
    ) -> Tree
    where
        F: FnOnce(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = SocketAddr>,
    {
        let dir = std::env::temp_dir().join(format!("diemcau-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut root_config = diemcau::Config::for_tests_in(dir.join("root"));
        configure_root(&mut root_config);
        let root = diemcau::start(root_config).await.expect("the root starts");
        let imported =
            http::post(root.http_addr(), "/api/sites/import", DIRECTORY.as_bytes()).await;
        assert_eq!(imported.status, 200, "{}", imported.text());
        let parent = through(root.http_addr()).await;
        let province =
            start_province(&dir, parent, "province", "tuyen-quang", "08", configure).await;
        Tree {
            dir,
            root,
            province,
        }
    }

    /// A second provincial hub, Hà Giang (province 02), linked to the root.
    pub async fn add_ha_giang(&self) -> diemcau::RunningHub {
        start_province(
            &self.dir,
            self.root.http_addr(),
            "ha-giang",
            "ha-giang",
            "02",
            |_| {},
        )
        .await
    }

    /// The root's data directory (for a restart on it).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// A national meeting inviting `sites` (codes of [`DIRECTORY`]), made and started at the
    /// root; the API's view of it.
    pub async fn national_meeting(&self, sites: &[&str]) -> Value {
        let root = self.root.http_addr();
        let now = diemcau::store::now_millis();
        let body = serde_json::json!({
            "title": "Hội nghị toàn quốc",
            "studio_name": "Trường quay Chính phủ",
            "scheduled_start": now,
            "scheduled_end": now + 3_600_000,
            "sites": sites.iter().map(|code| serde_json::json!({"code": code})).collect::<Vec<_>>(),
        });
        let created = http::post(root, "/api/meetings", body.to_string().as_bytes()).await;
        assert_eq!(created.status, 201, "{}", created.text());
        let meeting = created.json();
        let id = meeting["id"].as_i64().expect("an id");
        let started = http::post(root, &format!("/api/meetings/{id}/start"), b"").await;
        assert_eq!(started.status, 200, "{}", started.text());
        meeting
    }

    /// The province's part of national meeting `national`, once in progress there.
    pub async fn part(&self, national: i64) -> Value {
        province_part(self.province.http_addr(), national).await
    }

    pub async fn shutdown(self) {
        self.province.shutdown().await;
        self.root.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds node `node` for `province` at the root (data in `dir/root`), then starts its hub
/// in `dir/name` with the credential (its configuration changed by `configure`), linked to the
/// root at `parent`, and waits for the link.
async fn start_province(
    dir: &Path,
    parent: SocketAddr,
    name: &str,
    node: &str,
    province: &str,
    configure: impl FnOnce(&mut diemcau::Config),
) -> diemcau::RunningHub {
    let token = add_named_node(&dir.join("root"), node, province);
    let province_dir = dir.join(name);
    std::fs::create_dir_all(&province_dir).expect("dir");
    let token_file = province_dir.join("node-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("the credential file");
    let mut config = diemcau::Config::for_tests_in(province_dir.join("data"));
    config.parent = Some(format!("http://{parent}"));
    config.node_token_file = Some(token_file);
    configure(&mut config);
    let hub = diemcau::start(config).await.expect("the province starts");
    let addr = hub.http_addr();
    wait::until_some(
        "the province to be linked",
        Duration::from_secs(15),
        || async {
            let health = http::get(addr, "/api/health").await.json();
            (health["parent"]["state"] == "connected").then_some(())
        },
    )
    .await;
    hub
}

/// The part of national meeting `national` that the hub at `province` shows, once in
/// progress there.
pub async fn province_part(province: SocketAddr, national: i64) -> Value {
    wait::until_some(
        "the province's part of the meeting in progress",
        Duration::from_secs(15),
        || async {
            let meetings = http::get(province, "/api/meetings").await.json();
            meetings
                .as_array()?
                .iter()
                .find(|m| m["parent_meeting"] == national && m["state"] == "in_progress")
                .cloned()
        },
    )
    .await
}

/// `diemcau ARGS --data-dir DATA_DIR`, as an operator runs it; its output, once it succeeded.
pub fn diemcau(args: &[&str], data_dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_diemcau"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("the diemcau binary runs");
    assert!(
        output.status.success(),
        "diemcau {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `diemcau node add tuyen-quang --province 08` on the root's data directory, as its operator
/// runs it; the credential it shows once.
pub fn add_node(root_dir: &Path) -> String {
    add_named_node(root_dir, "tuyen-quang", "08")
}

/// `diemcau node add NAME --province PROVINCE` on the root's data directory; the credential.
pub fn add_named_node(root_dir: &Path, name: &str, province: &str) -> String {
    let token = diemcau(&["node", "add", name, "--province", province], root_dir)
        .lines()
        .find_map(|line| line.strip_prefix("    "))
        .expect("the credential on its own line")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64, "a credential of 64 characters");
    token
}

/// The row of `site` in a report's `sites` (null when absent).
pub fn row<'a>(report: &'a Value, site: &str) -> &'a Value {
    report["sites"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["code"] == site))
        .unwrap_or(&Value::Null)
}

/// The communes' facts of a report, in order, as (at, kind, site, reason): what a provincial
/// hub sends up, to compare the root's report with the province's event for event.
pub fn site_events(report: &Value) -> Vec<(i64, String, String, String)> {
    report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            [
                "site_joined",
                "site_reconnected",
                "site_left",
                "media_changed",
                "head_count",
            ]
            .contains(&e["kind"].as_str().unwrap_or(""))
        })
        .map(|e| {
            (
                e["at"].as_i64().unwrap_or(0),
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["site"].as_str().unwrap_or("").to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}
