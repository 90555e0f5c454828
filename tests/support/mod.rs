//! Shared test harness: a simulator, a real server against it, and a small raw HTTP client
//! (raw so that tests see exactly what goes over the wire: status, headers, encoding).

#![allow(dead_code)]

pub mod binary;
pub mod cluster;
pub mod kv;
pub mod raw_ws;

use lantern::config::Config;
use lantern::server::Server;
use lantern::sim::{SimConfig, Simulator};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Env {
    pub sim: Simulator,
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub shards: usize,
    pub port: u16,
    /// Applied to the parsed config before every server start (short intervals in tests).
    pub tweak: Option<Box<dyn Fn(&mut Config)>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Polls `f` every few milliseconds until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub const DEADLINE: Duration = Duration::from_secs(15);

impl Env {
    pub fn start(sim: SimConfig, shards: usize) -> Env {
        Env::start_with(sim, shards, |_| {})
    }

    /// Starts the simulator, lets `setup` shape its guild, then starts the server.
    pub fn start_with(sim: SimConfig, shards: usize, setup: impl FnOnce(&Simulator)) -> Env {
        Env::start_tweaked(sim, shards, setup, |_| {})
    }

    /// Like [`Env::start_with`], with `tweak` applied to the server's config.
    pub fn start_tweaked(sim: SimConfig, shards: usize, setup: impl FnOnce(&Simulator), tweak: impl Fn(&mut Config) + 'static) -> Env {
        let sim = Simulator::start(sim).expect("simulator starts");
        setup(&sim);
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env { sim, server: None, dir, shards, port: 0, tweak: Some(Box::new(tweak)) };
        env.start_server();
        env
    }

    pub fn config(&self) -> Config {
        let mut config = lantern::demo::config_for(&self.sim, self.dir.path(), 0, self.shards).unwrap();
        if let Some(tweak) = &self.tweak {
            tweak(&mut config);
        }
        config
    }

    pub fn start_server(&mut self) {
        let server = Server::start(self.config()).expect("server starts");
        self.port = server.port();
        self.server = Some(server);
        assert!(wait_for(DEADLINE, || self.get("/health").status == 200), "server never became healthy: {}", self.get("/health").text());
    }

    pub fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.port, method, path, headers, body)
    }

    /// GETs until `f` accepts the response, or fails the test with the last response.
    pub fn get_until(&self, path: &str, f: impl Fn(&Resp) -> bool) -> Resp {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self.get(path);
            if f(&r) {
                return r;
            }
            if Instant::now() > deadline {
                panic!("GET {path}: condition never held; last response {} {}", r.status, r.text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    parse_response(&exchange(port, method, path, headers, body).expect("request and response"))
}

/// Sends one request and reads the connection to its end.
pub fn exchange(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp { status, headers, body: raw[split + 4..].to_vec() }
}

/// Lints a Prometheus exposition with `promtool check metrics` (Debian's `prometheus`
/// package); without promtool it says so and passes, except under CI, where it fails.
pub fn promtool_check(text: &str) {
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() else {
        assert!(std::env::var_os("CI").is_none(), "CI needs promtool (apt-get install prometheus)");
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus); the exposition was not linted");
        return;
    };
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}\n--- exposition ---\n{text}");
}
