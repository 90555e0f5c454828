//! The real `lantern` binary under a low descriptor limit (`ulimit -n` in a shell wrapper, so
//! that only the server's process is limited): idle keep-alive connections are shed for new
//! clients, and accept failures are logged at most once a second.

mod support;

use lantern::sim::{SimConfig, Simulator};
use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::binary::{write_config_with, SECRET};
use support::kv::wait_healthy;
use support::{wait_for, DEADLINE};


struct Lantern {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Lantern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lantern {
    /// Starts the binary (one shard) with at most `fds` descriptors and the extra `[server]`
    /// settings; returns once it is healthy.
    fn start(sim: &Simulator, dir: &Path, fds: u32, server: &str) -> Lantern {
        let config = write_config_with(sim, dir, 1, server, "");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {fds} && exec \"$0\" serve --config \"$1\""))
            .arg(env!("CARGO_BIN_EXE_lantern"))
            .arg(&config)
            .current_dir(dir)
            .env("DISCORD_BOT_TOKEN", "sim-token")
            .env("KV_TOKEN_ENCRYPTION_SECRET", SECRET)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lantern starts");
        let stdout = child.stdout.take().unwrap();
        let log: Arc<Mutex<Vec<Value>>> = Arc::default();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    lines.lock().unwrap().push(v);
                }
            }
        });
        let mut server = Lantern { child, port: 0, log };
        assert!(wait_for(DEADLINE, || server.port().is_some()), "the server never logged its port");
        server.port = server.port().unwrap();
        assert!(wait_healthy(server.port), "the server never became healthy");
        server
    }

    fn port(&self) -> Option<u16> {
        let log = self.log.lock().unwrap();
        log.iter().find(|v| v["fields"]["message"] == "listening").and_then(|v| v["fields"]["port"].as_u64()).map(|p| p as u16)
    }

    fn accept_failures(&self) -> Vec<Value> {
        self.log.lock().unwrap().iter().filter(|v| v["fields"]["message"] == "accept failed").map(|v| v["fields"].clone()).collect()
    }

    fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Sends `GET /health` on a keep-alive connection and reads the whole answer; false when the
/// connection ended (or stalled) instead.
fn health(s: &mut TcpStream) -> bool {
    if let Err(e) = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") {
        eprintln!("write: {e}");
        return false;
    }
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => {
                eprintln!("read: {other:?} after {:?}", String::from_utf8_lossy(&raw));
                return false;
            }
        }
    }
    let head = String::from_utf8_lossy(&raw).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).is_ok() && head.starts_with("HTTP/1.1 200")
}

fn sim() -> Simulator {
    Simulator::start(SimConfig { members: 10, seed: 7, heartbeat_interval_ms: 1000, ..SimConfig::default() }).unwrap()
}

#[test]
fn out_of_descriptors_the_longest_idle_keep_alive_connections_make_room_for_new_clients() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let fds = 256;
    let server = Lantern::start(&sim, dir.path(), fds, "max_connections_per_ip = 100000");
    let baseline = server.open_descriptors();
    // Far more keep-alive connections than descriptors, each served and then left idle.
    let total = fds as usize + 64;
    let mut conns = Vec::with_capacity(total);
    for i in 0..total {
        let mut s = connect(server.port);
        assert!(
            health(&mut s),
            "connection {i} was not served ({baseline} descriptors open at start, {} now, limit {fds}); {:?}",
            server.open_descriptors(),
            server.accept_failures()
        );
        conns.push(s);
    }
    // The oldest were closed by the server; the newest are still open and served.
    let mut buf = [0u8; 1];
    match conns[0].read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the longest-idle connection is still open: {other:?}"),
    }
    for (i, s) in conns.iter_mut().enumerate().skip(total - 8) {
        assert!(health(s), "recent connection {i} was shed");
    }
    let reports = server.accept_failures();
    assert!(!reports.is_empty(), "running out of descriptors is logged");
    assert!(reports.iter().map(|r| r["shed_idle"].as_u64().unwrap()).sum::<u64>() > 0, "{reports:?}");
}

/// Opens a WebSocket (the upgrade answered) that then stays silent.
fn websocket(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(
        b"GET /socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("the upgrade is answered");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

#[test]
fn accept_failures_are_logged_at_most_once_a_second_with_their_count() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let fds = 128;
    let server = Lantern::start(
        &sim,
        dir.path(),
        fds,
        "max_connections_per_ip = 100000\nheader_timeout_ms = 120000\n[server.socket]\nmax_connections_per_ip = 100000\ninit_timeout = 120000",
    );
    // WebSockets and requests whose headers are still coming are never shed: once they hold
    // every descriptor, accepting keeps failing.
    let mut held = Vec::new();
    while server.open_descriptors() < fds as usize - 8 {
        held.push(websocket(server.port));
    }
    let mut waiting = Vec::new();
    for _ in 0..20 {
        let mut s = connect(server.port);
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1").unwrap();
        waiting.push(s);
    }
    assert!(wait_for(DEADLINE, || !server.accept_failures().is_empty()), "accept never failed");
    let before = server.accept_failures().len();
    // An observation window, not synchronisation: unlimited logging would write ~100 lines a second.
    std::thread::sleep(Duration::from_secs(3));
    let reports = server.accept_failures();
    let during = reports.len() - before;
    assert!((1..=4).contains(&during), "{during} accept-failure lines in 3 s: {reports:?}");
    assert!(reports.iter().skip(1).all(|r| r["failures"].as_u64().unwrap() > 1), "each line counts the failures since the last: {reports:?}");
    assert!(reports.iter().all(|r| r["shed_idle"] == 0), "WebSockets are not shed: {reports:?}");
    assert!(reports[0]["error"].as_str().unwrap().contains("Too many open files"), "{reports:?}");

    drop(held);
    // The clients that waited are served once descriptors are free again.
    for s in &mut waiting {
        s.write_all(b"\r\nConnection: close\r\n\r\n").unwrap();
    }
    for (i, s) in waiting.iter_mut().enumerate() {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.starts_with(b"HTTP/1.1 200"), "waiting client {i}: {}", String::from_utf8_lossy(&got));
    }
    assert!(wait_healthy(server.port), "the server recovers");
}
