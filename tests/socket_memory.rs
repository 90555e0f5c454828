//! What an idle subscribed WebSocket costs the real server: 2,000 connections, each INIT'ed to
//! one user and then silent, and the growth of the server process's RSS (its own process, so
//! this test's clients do not count). The target is 2 KiB per connection (README, WebSocket
//! memory); the bound here leaves margin for the allocator's pages.

mod support;

use lantern::sim::{SimConfig, Simulator};
use serde_json::json;
use support::binary::{proc_status_bytes, start, write_config_with, Running};
use support::raw_ws::RawWs;

const WARM_UP: usize = 100;
const MEASURED: usize = 2_000;
/// Most server RSS growth per idle subscribed connection.
const MAX_BYTES_PER_IDLE_CONNECTION: usize = 3 * 1024;

#[test]
fn two_thousand_idle_subscribed_connections_cost_the_server_at_most_3_kib_each() {
    let sim = Simulator::start(SimConfig { members: 20, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() }).unwrap();
    let user = sim.members().iter().map(|(m, _)| m.user.id).find(|id| *id != sim.application_id()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        &sim,
        dir.path(),
        1,
        "max_connections_per_ip = 5000",
        "[server.socket]\nmax_connections_per_ip = 5000\nheartbeat_interval = 600000\n",
    );
    let (child, port) = start(&config);
    let server = Running(child);
    let pid = server.0.id();
    let init = json!({"op":2,"d":{"user_id": user.to_string()}}).to_string();
    let connect = || {
        let mut c = RawWs::connect(port);
        assert_eq!(c.recv()["t"], "HELLO");
        c.send(&init);
        assert_eq!(c.recv()["t"], "INIT_ACK");
        c
    };
    let mut conns: Vec<RawWs> = (0..WARM_UP).map(|_| connect()).collect();
    let before = proc_status_bytes(pid, "VmRSS");
    conns.extend((0..MEASURED).map(|_| connect()));
    // Every connection is idle once its INIT_ACK has been read.
    let after = proc_status_bytes(pid, "VmRSS");
    let per_conn = after.saturating_sub(before) / MEASURED;
    eprintln!("server RSS per idle subscribed connection: {per_conn} bytes ({MEASURED} connections)");
    assert!(per_conn <= MAX_BYTES_PER_IDLE_CONNECTION, "{per_conn} bytes per idle connection (at most {MAX_BYTES_PER_IDLE_CONNECTION})");
    drop(conns);
}
