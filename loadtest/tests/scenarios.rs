//! Each scenario in a tiny configuration (a few hundred connections, about a second each):
//! the harness runs end to end and its counts are exact. No timing is asserted.

use serde_json::Value;
use std::process::Command;

fn run(scenarios: &str, extra: &[&str]) -> Value {
    let dir = std::env::temp_dir().join(format!("lantern-loadtest-{scenarios}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_lantern-loadtest"))
        .args(["run", "--tiny", "--scenarios", scenarios, "--out-exact"])
        .arg(&dir)
        .args(extra)
        .output()
        .expect("harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("| metric |"), "no table printed:\n{stdout}");
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("results.json")).expect("JSON");
    assert!(std::fs::read_to_string(dir.join("table.md")).expect("table.md").contains("| metric |"));
    assert_eq!(v["errors"], Value::Array(vec![]), "scenario errors:\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    v
}

/// Every run delivered each update to each subscriber exactly once.
fn assert_exact(runs: &Value, what: &str) {
    for r in runs.as_array().unwrap_or(&vec![]) {
        assert!(r["expected"].as_u64().unwrap() > 0, "{what}: nothing expected: {r}");
        assert_eq!(r["received"], r["expected"], "{what}: deliveries ≠ sent × subscribers: {r}");
        assert_eq!(r["lost"], 0, "{what}: {r}");
    }
}

/// True when lantern answered the socket scenarios (the WebSocket may not be there yet).
fn lantern_has_socket(v: &Value) -> bool {
    !v["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap_or("").contains("no usable /socket"))
}

#[test]
fn fanout_counts_every_delivery() {
    let v = run("fanout", &[]);
    let fan = &v["raw"]["fanout/1"];
    let floor = fan["floor"].as_array().unwrap();
    assert_eq!(floor.len(), 1);
    assert_exact(&fan["floor"], "floor");
    assert_eq!(floor[0]["expected"], 3 * 300);
    assert!(floor[0]["server_cpu_s"].as_f64().unwrap() >= 0.0);
    if lantern_has_socket(&v) {
        assert_exact(&fan["lantern"], "lantern");
        assert_eq!(fan["lantern"][0]["min_per_connection"], 3);
    } else {
        eprintln!("lantern has no /socket yet: only the floor was checked");
    }
    assert!(std::path::Path::new(&std::env::temp_dir()).exists());
}

#[test]
fn churn_counts_subset_and_all_subscribers() {
    let v = run("churn", &[]);
    if lantern_has_socket(&v) {
        assert_exact(&v["raw"]["churn"]["runs"], "churn");
    } else {
        eprintln!("lantern has no /socket yet: churn was skipped by the harness");
    }
}

#[test]
fn idle_measures_memory_per_connection() {
    let v = run("idle", &[]);
    let hold = v["raw"]["idle"]["raw_hold"].as_array().unwrap();
    assert_eq!(hold[0]["connections"], 200);
    assert!(hold[0]["rss_per_conn_b"].as_f64().unwrap().is_finite());
    if lantern_has_socket(&v) {
        assert_eq!(v["raw"]["idle"]["lantern"][0]["connections"], 200);
    }
}

#[test]
fn rest_runs_against_hyper_with_no_errors() {
    let v = run("rest", &[]);
    let rest = &v["raw"]["rest"];
    for k in ["single_saturation", "single_fixed", "bulk_saturation", "bulk_fixed"] {
        for side in ["lantern", "hyper_hello"] {
            let r = &rest[k][side][0];
            assert!(r["rps"].as_f64().unwrap() > 0.0, "{k}/{side}: {r}");
            assert_eq!(r["errors"], 0, "{k}/{side}: {r}");
        }
    }
}

#[test]
fn slow_consumers_do_not_cost_healthy_deliveries() {
    let v = run("slow", &[]);
    if lantern_has_socket(&v) {
        assert_exact(&v["raw"]["slow"]["alone"], "slow/alone");
        assert_exact(&v["raw"]["slow"]["with_slow"], "slow/with");
    } else {
        eprintln!("lantern has no /socket yet: slow was skipped by the harness");
    }
}
