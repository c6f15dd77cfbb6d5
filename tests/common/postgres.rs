//! The throwaway PostgreSQL cluster `scripts/test` starts (its URL in `DIEMCAU_TEST_POSTGRES`):
//! a fresh database for each test, and reads of what the hub wrote there.
//!
//! Include it with `#[path = "common/postgres.rs"] mod postgres;`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster's `postgres` database, as `scripts/test` gives it.
pub fn admin_url() -> String {
    std::env::var("DIEMCAU_TEST_POSTGRES").expect(
        "DIEMCAU_TEST_POSTGRES names the test PostgreSQL cluster: run the tests with \
         scripts/test, which starts one",
    )
}

/// A new, empty database of the cluster; returns its URL.
pub async fn fresh_database(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let database = format!(
        "{name}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(&admin_url()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("a database for the test");
    admin_url().replacen("/postgres?", &format!("/{database}?"), 1)
}

/// A connection to the database at `url`.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test cluster answers");
    tokio::spawn(connection);
    client
}

/// The one integer `sql` answers.
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    connect(url)
        .await
        .query_one(sql, &[])
        .await
        .expect("the query runs")
        .get(0)
}

/// A PostgreSQL cluster of a test's own, which it may stop and start again (the shared one of
/// `scripts/test` serves other tests meanwhile): its own directory and port on loopback, run
/// as the `postgres` user when the test runs as root, stopped and removed when dropped.
pub struct OwnCluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    pub port: u16,
}

impl OwnCluster {
    /// A new cluster, started.
    pub fn start(name: &str) -> OwnCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/test installs it)")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("pg_ctl").exists())
            .max_by_key(|bin| {
                bin.parent()
                    .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .expect("a PostgreSQL version under /usr/lib/postgresql");
        let dir = std::env::temp_dir().join(format!("diemcau-{name}-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = OwnCluster { dir, bin, port };
        if cluster.as_root() {
            cluster.run(
                "chown",
                &["-R", "postgres:", cluster.dir.to_str().expect("a path")],
            );
        }
        let data = cluster.dir.join("data");
        cluster.postgres(
            "initdb",
            &[
                "-D",
                data.to_str().expect("a path"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        cluster.resume();
        cluster
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Stops the server (its clients' connections end).
    pub fn stop(&self) {
        self.run("sh", &["-c", &self.stop_command()]);
    }

    /// Starts the server (again).
    pub fn resume(&self) {
        self.run("sh", &["-c", &self.start_command()]);
    }

    /// The shell command that stops the server.
    pub fn stop_command(&self) -> String {
        self.shell(&format!(
            "{} -D {} -m fast -w stop",
            self.bin.join("pg_ctl").display(),
            self.dir.join("data").display()
        ))
    }

    /// The shell command that starts the server (again).
    pub fn start_command(&self) -> String {
        self.shell(&format!(
            "{} -D {} -l {} -w -t 60 -o '-p {} -k {} -c listen_addresses=127.0.0.1' start",
            self.bin.join("pg_ctl").display(),
            self.dir.join("data").display(),
            self.dir.join("server.log").display(),
            self.port,
            self.dir.display()
        ))
    }

    fn shell(&self, command: &str) -> String {
        if self.as_root() {
            format!("runuser -u postgres -- {command}")
        } else {
            command.to_owned()
        }
    }

    fn as_root(&self) -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
    }

    fn postgres(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let path = path.to_str().expect("a path");
        if self.as_root() {
            let mut all = vec!["-u", "postgres", "--", path];
            all.extend_from_slice(args);
            self.run("runuser", &all);
        } else {
            self.run(path, args);
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .expect("a PostgreSQL program runs");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            std::process::Command::new(path)
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
