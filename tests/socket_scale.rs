//! 1,000 WebSocket connections on the real server (2 shards), and the memory each idle one
//! costs. Alone in its own test binary so that no other test's allocations pollute the
//! process's RSS.

mod support;

use lantern::discord::{ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::SimConfig;
use serde_json::json;
use support::raw_ws::RawWs;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::Env;

const A: Snowflake = Snowflake(1_300_000_000_000_000_001);

/// Most process RSS growth per idle subscribed connection (server and this test's raw clients
/// together; about 1.5 KB measured). The server's own figure is `tests/socket_memory.rs`'s.
const MAX_BYTES_PER_IDLE_CONNECTION: usize = 4 * 1024;

/// Counts the heap this process holds, so that the test can report the bytes and allocations
/// each idle connection keeps (the README's breakdown).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn env() -> Env {
    Env::start_tweaked(
        SimConfig { members: 20, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() },
        2,
        |sim| {
            let user = User { id: A, username: "alice".into(), discriminator: "0".into(), ..Default::default() };
            sim.add_member(Member { user, ..Default::default() }, None);
        },
        |c| {
            // Every connection of this test comes from 127.0.0.1.
            c.server.max_connections_per_ip = 5000;
            c.server.socket.max_connections_per_ip = 5000;
        },
    )
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

#[test]
fn a_thousand_connections_receive_one_update() {
    let env = env();
    let a = A;
    let init = json!({"op":2,"d":{"user_id": a.to_string()}}).to_string();
    // Warm up allocator pools with a few connections first, then measure the rest.
    let mut conns: Vec<RawWs> = Vec::new();
    for _ in 0..50 {
        let mut c = RawWs::connect(env.port);
        assert_eq!(c.recv()["t"], "HELLO");
        c.send(&init);
        assert_eq!(c.recv()["t"], "INIT_ACK");
        conns.push(c);
    }
    let before = rss_bytes();
    let (heap0, blocks0) = (LIVE_BYTES.load(Ordering::Relaxed), LIVE_BLOCKS.load(Ordering::Relaxed));
    for _ in 0..950 {
        let mut c = RawWs::connect(env.port);
        assert_eq!(c.recv()["t"], "HELLO");
        c.send(&init);
        assert_eq!(c.recv()["t"], "INIT_ACK");
        conns.push(c);
    }
    let per_conn = (rss_bytes().saturating_sub(before)) / 950;
    let heap = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(heap0) / 950;
    let blocks = (LIVE_BLOCKS.load(Ordering::Relaxed).saturating_sub(blocks0)) as f64 / 950.0;
    eprintln!("memory per idle subscribed connection: {per_conn} bytes (process RSS growth / 950); live heap {heap} bytes in {blocks:.1} allocations");
    assert!(per_conn <= MAX_BYTES_PER_IDLE_CONNECTION, "{per_conn} bytes per idle connection (at most {MAX_BYTES_PER_IDLE_CONNECTION})");

    env.sim.set_presence(Presence {
        user: PartialUser { id: a, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        ..Default::default()
    });
    let want = json!("online");
    for c in &mut conns {
        let u = c.recv();
        assert_eq!(u["t"], "PRESENCE_UPDATE");
        assert_eq!(u["d"]["status"], want);
    }
}
