//! A national tree on one machine (`--provinces N`, with `--spawn-hub`): the spawned hub is
//! the root, and N provincial hubs are started beside it, each linked to it with a node
//! credential from `diemcau node add` (docs/cascade.md). The synthetic sites are spread over
//! the provinces as their communes; the meeting is made and started at the root, and each site
//! joins its own provincial hub with the code of that hub's part of the meeting, while the
//! studio publishes at the root. What the run then measures at the root is the cost of N node
//! links, whatever the number of communes below.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::http::{self, HubUrl};
use crate::hub_process::{SpawnConfig, SpawnedHub};
use crate::setup::{FIRST_SITE_CODE, JoinRequest};

/// The code of province `p` (from 1): 900 + p, three digits where the official codes have two.
fn province_code(p: usize) -> String {
    format!("{}", 900 + p)
}

/// The province of site `i` (from 1): round robin.
pub fn province_of_site(i: usize, provinces: usize) -> usize {
    1 + (i - 1) % provinces.max(1)
}

/// The directory's CSV for a tree: the provinces, and site `i` as a commune of its province.
pub fn sites_csv(sites: usize, provinces: usize) -> String {
    let mut csv = String::from("admin_code,name,level,parent_code,parent_name,delegates\n");
    for p in 1..=provinces {
        csv.push_str(&format!(
            "{},Tỉnh Thử Nghiệm {p},tỉnh,,,0\n",
            province_code(p)
        ));
    }
    for i in 1..=sites {
        let p = province_of_site(i, provinces);
        csv.push_str(&format!(
            "{},Xã Thử Nghiệm {i},xã,{},Tỉnh Thử Nghiệm {p},{}\n",
            FIRST_SITE_CODE + i as u32,
            province_code(p),
            40 + i % 60
        ));
    }
    csv
}

/// One provincial hub of the tree.
#[derive(Debug)]
pub struct Province {
    pub name: String,
    pub hub: SpawnedHub,
}

/// The provincial hubs, stopped when dropped.
#[derive(Debug)]
pub struct Tree {
    pub provinces: Vec<Province>,
    token_dir: PathBuf,
}

/// What one provincial hub cost over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProvinceCost {
    pub name: String,
    pub sites: usize,
    pub cpu_seconds: f64,
    pub cores_busy: f64,
    pub rss_bytes: Option<u64>,
}

impl Tree {
    /// Adds `count` nodes on the root's data directory and starts a provincial hub for each,
    /// configured as `config` (CPUs, workers, log) with its parent and credential added.
    pub fn start(
        root: &HubUrl,
        root_dir: Option<&std::path::Path>,
        config: &SpawnConfig,
        count: usize,
    ) -> Result<Tree, String> {
        let root_dir = root_dir.ok_or("the root hub has no data directory of the generator's")?;
        let token_dir =
            std::env::temp_dir().join(format!("diemcau-loadgen-tree-{}", std::process::id()));
        std::fs::create_dir_all(&token_dir)
            .map_err(|e| format!("cannot create {}: {e}", token_dir.display()))?;
        let mut provinces = Vec::with_capacity(count);
        for p in 1..=count {
            let name = format!("tinh-{p}");
            let output = Command::new(&config.binary)
                .args([
                    "node",
                    "add",
                    &name,
                    "--province",
                    &province_code(p),
                    "--data-dir",
                ])
                .arg(root_dir)
                .output()
                .map_err(|e| format!("diemcau node add: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "diemcau node add {name}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            let token = String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|line| line.strip_prefix("    "))
                .map(|t| t.trim().to_owned())
                .ok_or("diemcau node add printed no credential")?;
            let token_file = token_dir.join(&name);
            std::fs::write(&token_file, format!("{token}\n"))
                .map_err(|e| format!("cannot write {}: {e}", token_file.display()))?;
            let mut province = config.clone();
            province.extra_args.extend([
                "--parent".to_owned(),
                format!("http://{}", root.authority),
                "--node-token-file".to_owned(),
                token_file.display().to_string(),
            ]);
            let hub = SpawnedHub::start(&province)?;
            provinces.push(Province { name, hub });
        }
        Ok(Tree {
            provinces,
            token_dir,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.provinces.iter().map(|p| p.hub.pid).collect()
    }

    /// Each site's join and hub: the code of its province's part of root meeting `meeting`,
    /// waiting until every province has its part in progress.
    pub async fn joins(
        &self,
        meeting: u64,
        sites: usize,
        timeout: Duration,
    ) -> Result<Vec<(JoinRequest, HubUrl)>, String> {
        let deadline = Instant::now() + timeout;
        let mut codes_by_province = Vec::with_capacity(self.provinces.len());
        for province in &self.provinces {
            let hub = &province.hub.url;
            let credentials = hub
                .credentials
                .clone()
                .ok_or("a provincial hub without the generator's account")?;
            let login = http::login(hub, &credentials).await?;
            let part = loop {
                let response =
                    http::request_as(hub, Some(&login), "GET", "/api/meetings", None, b"")
                        .await
                        .map_err(|e| format!("{}: GET /api/meetings: {e}", province.name))?;
                let found = response.json().ok().and_then(|list: Value| {
                    list.as_array()?
                        .iter()
                        .find(|m| {
                            m.get("parent_meeting").and_then(Value::as_u64) == Some(meeting)
                                && m.get("state").and_then(Value::as_str) == Some("in_progress")
                        })
                        .cloned()
                });
                if let Some(part) = found {
                    break part;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{} has no part of meeting {meeting} in progress after {timeout:?}",
                        province.name
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            codes_by_province.push(part.get("site_codes").cloned().unwrap_or_default());
        }
        (1..=sites)
            .map(|i| {
                let p = province_of_site(i, self.provinces.len());
                let admin = (FIRST_SITE_CODE + i as u32).to_string();
                let code = codes_by_province
                    .get(p - 1)
                    .and_then(|codes| codes.get(&admin))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("province {p} has no code for site {admin}"))?;
                let hub = self
                    .provinces
                    .get(p - 1)
                    .map(|province| province.hub.url.clone())
                    .ok_or("no such province")?;
                Ok((JoinRequest::Code(code.to_owned()), hub))
            })
            .collect()
    }

    pub fn stop(&mut self) {
        for province in &mut self.provinces {
            province.hub.stop();
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.token_dir);
    }
}
