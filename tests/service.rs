//! The hub as a province's service: the Debian package builds and installs into a scratch
//! root (files in place, the settings file kept across an upgrade, the data directory kept
//! after removal and purge), systemd accepts the unit, and under systemd the log is in the
//! journal's format, with a first line saying version, data directory, addresses and the
//! certificate's end.

#[path = "common/hub_binary.rs"]
mod hub_binary;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `dpkg` on the scratch root `root`, as a user without root may run it, maintainer scripts
/// run outside it (they see `DPKG_ROOT`), and the host's packages not asked for.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args))
}

#[test]
fn the_debian_package_installs_upgrades_and_removes_keeping_the_data() {
    let scratch = std::env::temp_dir().join(format!("diemcau-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let built = run(Command::new(repository().join("packaging/build-deb.sh"))
        .args(["--fast", "--binary", env!("CARGO_BIN_EXE_diemcau"), "--out"])
        .arg(scratch.join("out")));
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert!(deb.is_file(), "the package at {}", deb.display());
    let fields = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Depends"]));
    let fields = String::from_utf8_lossy(&fields.stdout);
    assert!(fields.contains("Package: diemcau"), "{fields}");

    let root = scratch.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).expect("dpkg's database");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), b"").expect("dpkg's status");
    let deb_arg = deb.to_str().expect("a UTF-8 path");
    dpkg(&root, &["-i", deb_arg]);
    for file in [
        "usr/bin/diemcau",
        "lib/systemd/system/diemcau.service",
        "etc/diemcau/diemcau.env",
        "usr/share/doc/diemcau/operations.md",
    ] {
        assert!(root.join(file).is_file(), "{file} installed");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &str| {
            std::fs::metadata(root.join(path))
                .expect("installed")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("usr/bin/diemcau"), 0o755);
        assert_eq!(
            mode("var/lib/diemcau"),
            0o700,
            "the data directory is private"
        );
        assert_eq!(mode("etc/diemcau/diemcau.env"), 0o640);
    }
    let version = run(Command::new(root.join("usr/bin/diemcau")).arg("--version"));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("diemcau "));

    // An upgrade (the same package again) keeps the operator's settings and the data.
    let settings = root.join("etc/diemcau/diemcau.env");
    std::fs::write(&settings, "DIEMCAU_LISTEN=0.0.0.0:8443\n").expect("edit the settings");
    let record = root.join("var/lib/diemcau/diemcau.sqlite3");
    std::fs::write(&record, b"the attendance record").expect("a record");
    dpkg(&root, &["--force-confold", "-i", deb_arg]);
    assert_eq!(
        std::fs::read_to_string(&settings).expect("settings"),
        "DIEMCAU_LISTEN=0.0.0.0:8443\n"
    );
    assert!(record.is_file(), "the data survives an upgrade");

    // Removal takes the program away and keeps the settings and the data; so does a purge for
    // the data, an official record.
    dpkg(&root, &["-r", "diemcau"]);
    assert!(
        !root.join("usr/bin/diemcau").exists(),
        "the binary is removed"
    );
    assert!(settings.is_file(), "settings are kept until a purge");
    assert!(record.is_file(), "the data survives a removal");
    dpkg(&root, &["-P", "diemcau"]);
    assert!(record.is_file(), "the data survives a purge");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn systemd_accepts_the_unit() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit is checked where systemd is");
        return;
    };
    assert!(probe.status.success());
    // The unit as installed, its program where this build put it.
    let unit =
        std::fs::read_to_string(repository().join("packaging/diemcau.service")).expect("the unit");
    let unit = unit.replace(
        "ExecStart=/usr/bin/diemcau",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_diemcau")),
    );
    let dir = std::env::temp_dir().join(format!("diemcau-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("diemcau.service");
    std::fs::write(&path, unit).expect("write the unit");
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(verified.status.success(), "{said}");
    // verify only warns about a line it cannot read: any word about the unit is a defect.
    assert!(!said.contains("diemcau.service"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_systemd_the_log_is_in_the_journal_format_with_a_first_line_that_says_it_all() {
    let data = std::env::temp_dir().join(format!("diemcau-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut hub = hub_binary::command(&data)
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hub starts");
    let stderr = hub.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("a line");
        let started = line.contains("diemcau started");
        lines.push(line);
        if started {
            break;
        }
    }
    hub.kill().expect("stop");
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&data);
    let started = lines.last().expect("a log");
    assert!(started.contains("diemcau started"), "{lines:#?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "no colour codes: {line:?}");
        let level = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&level),
            "a syslog level first: {line:?}"
        );
    }
    assert!(started.starts_with("<6>"), "{started}");
    for part in [
        format!("version={}", env!("CARGO_PKG_VERSION")),
        format!("data_dir={}", data.display()),
        "web=http://127.0.0.1:".to_owned(),
        "media_udp=127.0.0.1:".to_owned(),
        "certificate_expires=none".to_owned(),
    ] {
        assert!(started.contains(&part), "{part} in {started}");
    }
}
