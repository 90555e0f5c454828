//! `deploy/lantern.service` is a unit systemd accepts: `systemd-analyze verify` passes on it
//! (with `ExecStart` pointed at the binary this build made, since verify checks that the
//! program exists). Where systemd-analyze is absent the test says so and passes.

use std::process::Command;

const UNIT: &str = include_str!("../deploy/lantern.service");

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("SKIPPED: systemd-analyze is not installed; deploy/lantern.service was not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("lantern.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/lantern", env!("CARGO_BIN_EXE_lantern"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).current_dir(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{text}");
    assert!(!text.contains("Unknown key") && !text.contains("nknown lvalue"), "systemd ignores some lines:\n{text}");
}

#[test]
fn the_service_unit_is_hardened() {
    let lines: Vec<&str> = UNIT.lines().map(str::trim).collect();
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=lantern lantern/shards lantern/backups",
        "WorkingDirectory=/var/lib/lantern",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "LimitNOFILE=1048576",
        "MemoryDenyWriteExecute=yes",
        "KillSignal=SIGTERM",
    ] {
        assert!(lines.contains(&setting), "deploy/lantern.service lacks {setting}");
    }
    // glommio pins each shard with sched_setaffinity and uses io_uring: the filter must allow both.
    assert!(lines.iter().any(|l| l.starts_with("SystemCallFilter=@system-service") && l.contains("io_uring_setup")));
    assert!(!UNIT.contains("@resources"), "denying @resources would forbid sched_setaffinity");
}
