//! The orchestrator: starts the simulator (in this process) and the servers (their own
//! processes, pinned to the server CPU), spreads client load over client processes pinned to
//! the client CPU, runs the scenarios A/B/A/B against their comparators, and collects the
//! figures.

use crate::client::{read_samples, ClientSpec, Collected, HttpResult, Ready, Role};
use crate::comparators::{ComparatorSpec, STAMP_PLACEHOLDER};
use crate::procs::{find_lantern, Proc};
use crate::report::{Report, Row, Series};
use crate::util::{cpu_seconds, median, mono_ns, pct, rss_bytes, slab_bytes, stamp_text, wait_for};
use lantern::discord::{Activity, Presence, Snowflake, Status};
use lantern::sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// Scenarios to run, comma-separated: fanout, churn, storm, deflate, cluster, idle, rest, slow.
    #[arg(long, default_value = "fanout,churn,idle,rest,slow", value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Shard counts to run the server with, comma-separated (e.g. `1,2` compares 1 with 2).
    #[arg(long, default_value = "1", value_delimiter = ',')]
    pub shards: Vec<usize>,
    /// Fan-out subscribers (all subscribed to one user).
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Most connections per client process (one process may hold ~20,000 descriptors).
    #[arg(long, default_value_t = 5_000)]
    pub per_process: usize,
    /// A/B rounds per comparison.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Fan-out: presence updates per round.
    #[arg(long, default_value_t = 10)]
    pub bursts: usize,
    /// Fan-out: milliseconds between updates.
    #[arg(long, default_value_t = 400)]
    pub gap_ms: u64,
    /// Churn: users changing presence.
    #[arg(long, default_value_t = 200)]
    pub churn_users: usize,
    /// Churn: presence changes per second (all users together).
    #[arg(long, default_value_t = 200.0)]
    pub churn_rate: f64,
    /// Churn: seconds per round.
    #[arg(long, default_value_t = 3.0)]
    pub churn_secs: f64,
    /// Churn: clients subscribed to a random subset (5 users each).
    #[arg(long, default_value_t = 2_000)]
    pub churn_subset_clients: usize,
    /// Churn: clients subscribed to All.
    #[arg(long, default_value_t = 200)]
    pub churn_all_clients: usize,
    /// Storm: users changing presence.
    #[arg(long, default_value_t = 200)]
    pub storm_users: usize,
    /// Storm: changes per second of each user.
    #[arg(long, default_value_t = 20.0)]
    pub storm_hz: f64,
    /// Storm: clients subscribed to All.
    #[arg(long, default_value_t = 1_000)]
    pub storm_clients: usize,
    /// Storm: seconds per round.
    #[arg(long, default_value_t = 1.0)]
    pub storm_secs: f64,
    /// Storm: frames the one-frame-per-write floor sends per round (back to back).
    #[arg(long, default_value_t = 100)]
    pub storm_floor_frames: usize,
    /// Idle: connections held.
    #[arg(long, default_value_t = 10_000)]
    pub idle_conns: usize,
    /// REST: seconds per run.
    #[arg(long, default_value_t = 3.0)]
    pub rest_secs: f64,
    /// REST: keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub rest_conns: usize,
    /// REST: user ids per bulk GET.
    #[arg(long, default_value_t = 10)]
    pub bulk_ids: usize,
    /// Slow: healthy subscribers.
    #[arg(long, default_value_t = 1_000)]
    pub slow_healthy: usize,
    /// Slow: subscribers that stop reading.
    #[arg(long, default_value_t = 1_000)]
    pub slow_clients: usize,
    /// Slow: updates per second during the storm.
    #[arg(long, default_value_t = 200.0)]
    pub slow_rate: f64,
    /// Slow: storm seconds.
    #[arg(long, default_value_t = 5.0)]
    pub slow_secs: f64,
    /// Members of the simulated guild.
    #[arg(long, default_value_t = 1_000)]
    pub members: usize,
    /// The lantern binary (default: next to this one, or target/release/lantern).
    #[arg(long)]
    pub lantern_bin: Option<PathBuf>,
    /// Attach to a running server at this address instead of starting one (its simulator
    /// must be driven by `--sim-api`; CPU and memory need `--server-pid`).
    #[arg(long, requires = "sim_api")]
    pub server_addr: Option<String>,
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Drive a running simulator through its `/_sim/` control API (e.g. `http://127.0.0.1:8101`)
    /// instead of starting one in this process.
    #[arg(long)]
    pub sim_api: Option<String>,
    /// CPU of the server and comparators.
    #[arg(long, default_value_t = 0)]
    pub server_cpu: usize,
    /// CPU of the clients and the simulator.
    #[arg(long, default_value_t = 1)]
    pub client_cpu: usize,
    /// Results folder (a timestamped folder is made inside).
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Write straight into this folder instead of a timestamped one.
    #[arg(long)]
    pub out_exact: Option<PathBuf>,
}

impl Opts {
    /// A small configuration: a few hundred connections, seconds per scenario (tests, smoke).
    pub fn tiny(mut self) -> Opts {
        self.subscribers = 300;
        self.per_process = 150;
        self.rounds = 1;
        self.bursts = 3;
        self.gap_ms = 100;
        self.churn_users = 20;
        self.churn_rate = 50.0;
        self.churn_secs = 1.0;
        self.churn_subset_clients = 100;
        self.churn_all_clients = 20;
        self.storm_users = 20;
        self.storm_hz = 5.0;
        self.storm_clients = 50;
        self.storm_secs = 1.0;
        self.storm_floor_frames = 20;
        self.idle_conns = 200;
        self.rest_secs = 0.5;
        self.rest_conns = 8;
        self.slow_healthy = 100;
        self.slow_clients = 50;
        self.slow_rate = 50.0;
        self.slow_secs = 1.0;
        self.members = 200;
        self
    }
}

// ---- the simulator, in-process or over its control API ----

enum Sim {
    /// The in-process simulator, and when each stamped dispatch was written to the gateway.
    Local(Simulator, GatewayWrites),
    Remote { api: String },
}

/// Send stamp → CLOCK_MONOTONIC ns when the simulator wrote the frame carrying it.
type GatewayWrites = Arc<Mutex<HashMap<u64, u64>>>;

/// Most gateway writes remembered (a fan-out run looks up a few dozen).
const MAX_GATEWAY_WRITES: usize = 65_536;

impl Sim {
    /// Starts the in-process simulator, recording when each stamped dispatch is written.
    fn local(cfg: SimConfig) -> std::io::Result<Sim> {
        let s = Simulator::start(cfg)?;
        let writes = GatewayWrites::default();
        let w = writes.clone();
        s.observe_dispatches(move |frame| {
            let at = mono_ns();
            if let Some(stamp) = crate::util::find_stamp(frame.as_bytes()) {
                let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                // Only fan-out runs look writes up (and forget them); the storm and churn
                // stamp many more, so the record is bounded.
                if w.len() >= MAX_GATEWAY_WRITES {
                    w.clear();
                }
                w.entry(stamp).or_insert(at);
            }
        });
        Ok(Sim::Local(s, writes))
    }

    /// When the dispatch carrying `stamp` was written to the gateway (the in-process simulator
    /// only); forgets it.
    fn written_at(&self, stamp: u64) -> Option<u64> {
        match self {
            Sim::Local(_, w) => w.lock().unwrap_or_else(|p| p.into_inner()).remove(&stamp),
            Sim::Remote { .. } => None,
        }
    }

    fn set_presence(&self, p: Presence) {
        match self {
            Sim::Local(s, _) => s.set_presence(p),
            Sim::Remote { api } => {
                let body = serde_json::to_vec(&p).unwrap_or_default();
                let _ = http_request(api, "POST", "/_sim/presence", &body);
            }
        }
    }

    /// Non-bot members that have a presence, in id order.
    fn users(&self) -> Vec<Presence> {
        match self {
            Sim::Local(s, _) => s
                .members()
                .into_iter()
                .filter(|(m, p)| !m.user.bot && p.is_some())
                .filter_map(|(m, p)| p.map(|mut p| {
                    p.user.id = m.user.id;
                    p
                }))
                .collect(),
            Sim::Remote { api } => {
                let body = http_request(api, "GET", "/_sim/members", b"").map(|(_, b)| b).unwrap_or_default();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|e| e["member"]["user"]["bot"].as_bool() != Some(true) && !e["presence"].is_null())
                            .filter_map(|e| {
                                let mut p: Presence = serde_json::from_value(e["presence"].clone()).ok()?;
                                p.user.id = serde_json::from_value(e["member"]["user"]["id"].clone()).ok()?;
                                Some(p)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }
}

/// A presence for `user` whose one activity carries the send stamp.
fn stamped(user: Snowflake, state: String) -> Presence {
    let mut p = Presence { status: Status::Online, ..Presence::default() };
    p.user.id = user;
    p.client_status.desktop = Some(Status::Online);
    p.activities = vec![Activity { name: "Load test".into(), kind: 0, state: Some(state.into()), created_at: Some(1_700_000_000_000), ..Activity::default() }];
    p
}

/// A tiny blocking HTTP/1.1 client (Connection: close), for set-up and control calls.
pub fn http_request(base: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).and_then(|_| s.write_all(body)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = crate::ws::head_end(&out).ok_or("no HTTP head")?;
    let status = std::str::from_utf8(&out[..head]).ok().and_then(|t| t.split_whitespace().nth(1)?.parse().ok()).ok_or("bad status")?;
    let head_text = String::from_utf8_lossy(&out[..head]).to_ascii_lowercase();
    let mut body = out[head..].to_vec();
    if head_text.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = crate::util::memfind(b, b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

// ---- servers ----

/// A server under test: lantern or a comparator.
struct Target {
    name: String,
    addr: String,
    pid: Option<u32>,
    proc: Option<Proc>,
}

impl Target {
    fn cpu(&self) -> f64 {
        self.pid.and_then(cpu_seconds).unwrap_or(f64::NAN)
    }
    fn rss(&self) -> f64 {
        self.pid.and_then(rss_bytes).map(|b| b as f64).unwrap_or(f64::NAN)
    }
    fn stop(mut self) {
        if let Some(p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }
}

struct Ctx {
    opts: Opts,
    sim: Sim,
    sim_guild: Option<(String, String, String, String, String)>,
    dir: PathBuf,
    lantern_bin: Option<PathBuf>,
    report: Report,
    seq: usize,
}

impl Ctx {
    fn samples_path(&mut self) -> String {
        self.seq += 1;
        self.dir.join(format!("samples-{}.bin", self.seq)).display().to_string()
    }

    fn start_lantern(&mut self, shards: usize) -> Result<Target, String> {
        if let Some(addr) = &self.opts.server_addr {
            return Ok(Target { name: "lantern".into(), addr: addr.clone(), pid: self.opts.server_pid, proc: None });
        }
        self.start_lantern_with(shards, "", "")
    }

    /// [`Ctx::start_lantern`] with `socket` (lines of `[server.socket]`) and `extra` (tables
    /// after the rest) added to its configuration.
    fn start_lantern_with(&mut self, shards: usize, socket: &str, extra: &str) -> Result<Target, String> {
        let (guild, app, gw, api, token) = self.sim_guild.clone().ok_or("no simulator to point the server at")?;
        self.seq += 1;
        let data = self.dir.join(format!("lantern-data-{}", self.seq));
        let port = free_port()?;
        let toml = format!(
            "base_guild_id = '{guild}'\napplication_id = '{app}'\n[server]\nhost = '127.0.0.1'\nport = {port}\nshards = {shards}\nmax_connections_per_ip = 1000000\n\
             [server.socket]\nmax_connections_per_ip = 1000000\n{socket}[storage]\ndir = {dir:?}\n[discord]\ngateway_url = '{gw}'\napi_url = '{api}'\ncdn_url = '{api}/cdn'\n[log]\nformat = 'human'\nlevel = 'warn'\n{extra}",
            dir = data.display().to_string(),
        );
        let cfg = self.dir.join(format!("lantern-{}.toml", self.seq));
        std::fs::write(&cfg, toml).map_err(|e| e.to_string())?;
        let mut cmd = match &self.lantern_bin {
            Some(bin) => {
                let mut c = Command::new(bin);
                c.arg("serve");
                c
            }
            None => {
                let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
                c.arg("server");
                c
            }
        };
        // A throw-away storage key: the load test writes no tokens worth keeping.
        let kv_secret = "0123456789abcdef".repeat(4);
        cmd.arg("--config")
            .arg(&cfg)
            .env("DISCORD_BOT_TOKEN", token)
            .env("KV_TOKEN_ENCRYPTION_SECRET", kv_secret)
            .env_remove("RUST_LOG");
        // One shard: the whole process on the server CPU. More: lantern pins its shards itself.
        let cpu = (shards == 1).then_some(self.opts.server_cpu);
        let proc = Proc::spawn("lantern", cmd, cpu)?;
        let addr = format!("127.0.0.1:{port}");
        let base = format!("http://{addr}");
        if !wait_for(Duration::from_secs(60), || matches!(http_request(&base, "GET", "/health", b""), Ok((200, _)))) {
            return Err(format!("lantern never became healthy on {addr}"));
        }
        Ok(Target { name: format!("lantern ({shards} shard{})", if shards == 1 { "" } else { "s" }), addr, pid: Some(proc.pid()), proc: Some(proc) })
    }

    /// A `nats-server -js` (found on PATH) on a free port, pinned to the server CPU.
    fn start_nats(&mut self) -> Result<(Proc, String), String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bin = std::env::split_paths(&path).map(|d| d.join("nats-server")).find(|p| p.is_file()).ok_or("nats-server is not on PATH (Debian package nats-server)")?;
        self.seq += 1;
        let store = self.dir.join(format!("nats-{}", self.seq));
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        // Its log goes to a file beside its store: the harness's output is the table.
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-l"]).arg(self.dir.join(format!("nats-{}.log", self.seq))).arg("-sd").arg(&store);
        let proc = Proc::spawn("nats-server", cmd, Some(self.opts.server_cpu))?;
        if !wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            return Err(format!("nats-server never listened on {port}"));
        }
        Ok((proc, format!("nats://127.0.0.1:{port}")))
    }

    /// The Node 20 + `ws` peer (`loadtest/node-peer`), installed on first use with `npm ci`
    /// against its committed lock file; `None` (with a note) where Node or npm is missing.
    fn start_node_peer(&mut self, spec: &ComparatorSpec) -> Result<Option<Target>, String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node-peer");
        static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        let installed = INSTALLED.get_or_init(|| {
            let node = std::process::Command::new("node").arg("--version").output().map_err(|e| format!("no node: {e}"))?;
            let version = String::from_utf8_lossy(&node.stdout).trim().to_string();
            if !version.starts_with("v2") {
                return Err(format!("node {version} is older than Node 20"));
            }
            let st = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                // The harness's stdout is the table.
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("no npm: {e}"))?;
            if st.success() { Ok(()) } else { Err(format!("npm ci failed: {st}")) }
        });
        if let Err(e) = installed {
            self.report.note(format!("Node peer skipped: {e}"));
            return Ok(None);
        }
        let mut cmd = std::process::Command::new("node");
        cmd.arg("server.js").current_dir(&dir);
        let mut p = Proc::spawn("node-peer", cmd, Some(self.opts.server_cpu))?;
        p.send(&serde_json::to_string(spec).map_err(|e| e.to_string())?)?;
        let v: Value = p.recv(Duration::from_secs(20))?;
        let port = v["port"].as_u64().ok_or("node peer gave no port")?;
        Ok(Some(Target { name: "node-peer".into(), addr: format!("127.0.0.1:{port}"), pid: Some(p.pid()), proc: Some(p) }))
    }

    fn start_comparator(&self, sub: &str, spec: &ComparatorSpec) -> Result<Target, String> {
        let mut p = Proc::spawn_self(sub, spec, Some(self.opts.server_cpu))?;
        let v: Value = p.recv(Duration::from_secs(20))?;
        let port = v["port"].as_u64().ok_or("comparator gave no port")?;
        Ok(Target { name: sub.into(), addr: format!("127.0.0.1:{port}"), pid: Some(p.pid()), proc: Some(p) })
    }

    /// Spreads WebSocket (or TCP) connections over client processes and waits until all are
    /// connected. Returns the processes with how many connections each holds.
    fn connect(&mut self, target: &Target, role: Role, inits: Vec<String>, count: usize, slow: bool) -> Result<(Vec<(Proc, usize, String)>, Ready), String> {
        self.connect_with(target, role, inits, count, slow, false)
    }

    /// As [`Ctx::connect`]; with `deflate`, WebSocket clients negotiate permessage-deflate.
    fn connect_with(&mut self, target: &Target, role: Role, inits: Vec<String>, count: usize, slow: bool, deflate: bool) -> Result<(Vec<(Proc, usize, String)>, Ready), String> {
        let n = if role == Role::Ws { inits.len() } else { count };
        let per = self.opts.per_process.max(1);
        let procs_n = n.div_ceil(per).max(1);
        let mut procs = Vec::new();
        for i in 0..procs_n {
            let lo = i * n / procs_n;
            let hi = (i + 1) * n / procs_n;
            let samples_path = self.samples_path();
            let spec = ClientSpec {
                role,
                addr: target.addr.clone(),
                cpu: Some(self.opts.client_cpu),
                samples_path: samples_path.clone(),
                path: "/socket".into(),
                inits: if role == Role::Ws { inits[lo..hi].to_vec() } else { vec![] },
                count: hi - lo,
                slow,
                deflate,
                ..ClientSpec::default_http()
            };
            procs.push((Proc::spawn_self("client", &spec, Some(self.opts.client_cpu))?, hi - lo, samples_path));
        }
        let mut total = Ready::default();
        for (p, _, _) in procs.iter_mut() {
            let r: Ready = p.recv(Duration::from_secs(180))?;
            total.ready += r.ready;
            total.failed += r.failed;
            if total.first_error.is_none() {
                total.first_error = r.first_error;
            }
        }
        Ok((procs, total))
    }
}

impl ClientSpec {
    fn default_http() -> ClientSpec {
        ClientSpec {
            role: Role::Http,
            addr: String::new(),
            cpu: None,
            samples_path: String::new(),
            path: String::new(),
            inits: vec![],
            count: 0,
            slow: false,
            deflate: false,
            paths: vec![],
            connections: 0,
            duration_ms: 0,
            rate: 0.0,
            max_requests: 0,
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn stop_all(procs: Vec<(Proc, usize, String)>) {
    for (p, _, _) in procs {
        p.stop(Duration::from_secs(5));
    }
}

/// Collects from every client process: totals, and all `(stamp, receive)` samples.
fn collect(procs: &mut [(Proc, usize, String)], expect_per_conn: u64, timeout: Duration) -> Result<(Collected, Vec<(u64, u64)>), String> {
    let mut total = Collected { min_per_conn: u64::MAX, ..Collected::default() };
    let mut samples = Vec::new();
    for (p, conns, _) in procs.iter_mut() {
        p.send(&format!("collect {} {}", timeout.as_millis(), expect_per_conn * *conns as u64))?;
    }
    for (p, _, path) in procs.iter_mut() {
        let c: Collected = p.recv(timeout + Duration::from_secs(30))?;
        total.received += c.received;
        total.stamped += c.stamped;
        total.bytes += c.bytes;
        total.closed += c.closed;
        total.min_per_conn = total.min_per_conn.min(c.min_per_conn);
        total.max_per_conn = total.max_per_conn.max(c.max_per_conn);
        samples.extend(read_samples(path));
    }
    if total.min_per_conn == u64::MAX {
        total.min_per_conn = 0;
    }
    Ok((total, samples))
}

/// How a server gets a presence change: lantern through the simulator's gateway, the floor
/// through its control line.
enum Sender<'a> {
    Gateway(&'a Sim, Snowflake),
    Floor(&'a mut Proc),
}

impl Sender<'_> {
    fn send(&mut self, stamp: u64) -> Result<(), String> {
        match self {
            Sender::Gateway(sim, user) => {
                sim.set_presence(stamped(*user, stamp_text(stamp)));
                Ok(())
            }
            Sender::Floor(p) => {
                p.send(&format!("burst {stamp}"))?;
                let _: Value = p.recv(Duration::from_secs(30))?;
                Ok(())
            }
        }
    }

    /// When the server's input carrying `stamp` was written: the gateway frame's write for
    /// lantern (the in-process simulator records it), the control line's (the stamp itself)
    /// for the floor.
    fn input_written_at(&self, stamp: u64) -> Option<u64> {
        match self {
            Sender::Gateway(sim, _) => sim.written_at(stamp),
            Sender::Floor(_) => Some(stamp),
        }
    }
}

/// One fan-out run: `bursts` updates `gap` apart, every subscriber expected to get each.
#[derive(Debug, Clone, Default)]
struct FanRun {
    subscribers: usize,
    sent: usize,
    received: u64,
    expected: u64,
    min_per_conn: u64,
    closed: u64,
    cpu_s: f64,
    /// Bytes on the wire of the frames received.
    bytes: u64,
    latencies_ns: Vec<u64>,
    /// Per update: time until the last subscriber had it.
    last_ns: Vec<u64>,
    /// Per update: time until the first subscriber had it.
    first_ns: Vec<u64>,
    /// Per update: the same, from when the server's input was written (for lantern, the
    /// gateway frame's write, which leaves out the simulator's own scheduling); empty when
    /// that is not known (a remote simulator).
    first_from_input_ns: Vec<u64>,
    /// Receive times relative to the first send (for the deliveries/s plot).
    timeline_ns: Vec<u64>,
}

impl FanRun {
    fn cpu_us_per_delivery(&self) -> f64 {
        self.cpu_s * 1e6 / self.received.max(1) as f64
    }
    fn lat_pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        pct(&v, p) as f64 / 1e6
    }
    fn last_median_ms(&self) -> f64 {
        median(&self.last_ns.iter().map(|&n| n as f64 / 1e6).collect::<Vec<_>>())
    }
    fn first_median_ms(&self) -> f64 {
        median(&self.first_ns.iter().map(|&n| n as f64 / 1e6).collect::<Vec<_>>())
    }
    fn first_from_input_median_ms(&self) -> f64 {
        if self.first_from_input_ns.is_empty() {
            return f64::NAN;
        }
        median(&self.first_from_input_ns.iter().map(|&n| n as f64 / 1e6).collect::<Vec<_>>())
    }
    fn last_pct_ms(&self, p: f64) -> f64 {
        let mut v = self.last_ns.clone();
        v.sort_unstable();
        pct(&v, p) as f64 / 1e6
    }
    /// Deliveries per second of wall time while draining one update.
    fn deliveries_per_s(&self) -> f64 {
        self.subscribers as f64 / (self.last_median_ms() / 1e3)
    }
}

fn fan_run(pid: Option<u32>, sender: &mut Sender, procs: &mut [(Proc, usize, String)], subscribers: usize, bursts: usize, gap: Duration, rate_gap: bool) -> Result<FanRun, String> {
    fan_run_on(&pid.into_iter().collect::<Vec<_>>(), sender, procs, subscribers, bursts, gap, rate_gap)
}

/// [`fan_run`] with the server CPU summed over several processes (the nodes of a cluster).
fn fan_run_on(pids: &[u32], sender: &mut Sender, procs: &mut [(Proc, usize, String)], subscribers: usize, bursts: usize, gap: Duration, rate_gap: bool) -> Result<FanRun, String> {
    let cpu = || if pids.is_empty() { f64::NAN } else { pids.iter().map(|&p| cpu_seconds(p).unwrap_or(f64::NAN)).sum::<f64>() };
    let cpu0 = cpu();
    let mut stamps = Vec::with_capacity(bursts);
    let start = Instant::now();
    for i in 0..bursts {
        let s = mono_ns();
        stamps.push(s);
        sender.send(s)?;
        let next = start + gap * (i as u32 + 1);
        if rate_gap || i + 1 < bursts {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    let (c, samples) = collect(procs, bursts as u64, Duration::from_secs(10) + gap * 2)?;
    let cpu1 = cpu();
    let first = stamps.first().copied().unwrap_or(0);
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut first_of: HashMap<u64, u64> = HashMap::new();
    let mut latencies = Vec::with_capacity(samples.len());
    let mut timeline = Vec::with_capacity(samples.len());
    for &(stamp, recv) in &samples {
        let l = recv.saturating_sub(stamp);
        latencies.push(l);
        timeline.push(recv.saturating_sub(first));
        let e = last.entry(stamp).or_insert(0);
        *e = (*e).max(l);
        let f = first_of.entry(stamp).or_insert(u64::MAX);
        *f = (*f).min(l);
    }
    Ok(FanRun {
        subscribers,
        sent: bursts,
        received: c.received,
        expected: (bursts * subscribers) as u64,
        min_per_conn: c.min_per_conn,
        closed: c.closed,
        cpu_s: cpu1 - cpu0,
        bytes: c.bytes,
        latencies_ns: latencies,
        last_ns: stamps.iter().filter_map(|s| last.get(s).copied()).collect(),
        first_ns: stamps.iter().filter_map(|s| first_of.get(s).copied()).collect(),
        first_from_input_ns: stamps
            .iter()
            .filter_map(|s| Some((*s + first_of.get(s)?).saturating_sub(sender.input_written_at(*s)?)))
            .collect(),
        timeline_ns: timeline,
    })
}

fn vals<T>(runs: &[T], f: impl Fn(&T) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// Entry point of `lantern-loadtest run`.
pub fn run(opts: Opts) -> Result<Report, String> {
    let out = match &opts.out_exact {
        Some(d) => d.clone(),
        None => {
            let ts = time_stamp();
            opts.out.join(ts)
        }
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let dir = out.join("work");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    crate::util::pin_to_cpu(opts.client_cpu);
    let (sim, sim_guild) = match &opts.sim_api {
        Some(api) => (Sim::Remote { api: api.clone() }, None),
        None => {
            let sim = Sim::local(SimConfig { members: opts.members.max(opts.churn_users.max(opts.storm_users) + 10), ..SimConfig::default() }).map_err(|e| format!("simulator: {e}"))?;
            let Sim::Local(s, _) = &sim else { unreachable!("Sim::local makes a local simulator") };
            let g = (s.guild_id().to_string(), s.application_id().to_string(), s.gateway_url(), s.api_url(), s.token());
            (sim, Some(g))
        }
    };
    let lantern_bin = find_lantern(opts.lantern_bin.as_deref());
    let mut report = Report::new(&opts);
    report.note(format!(
        "server: {}",
        match &lantern_bin {
            Some(b) => format!("`{}` (its own process)", b.display()),
            None => "no lantern binary found: the harness's own `server` subcommand, its own process".into(),
        }
    ));
    let mut ctx = Ctx { opts: opts.clone(), sim, sim_guild, dir: dir.clone(), lantern_bin, report, seq: 0 };
    let users = ctx.sim.users();
    if users.is_empty() {
        return Err("the simulated guild has no member with a presence".into());
    }
    let started = Instant::now();
    for sc in opts.scenarios.clone() {
        let t = Instant::now();
        let r = match sc.as_str() {
            "fanout" => scenario_fanout(&mut ctx, &users),
            "churn" => scenario_churn(&mut ctx, &users),
            "storm" => scenario_storm(&mut ctx, &users),
            "deflate" => scenario_deflate(&mut ctx, &users),
            "cluster" => scenario_cluster(&mut ctx, &users),
            "idle" => scenario_idle(&mut ctx, &users),
            "rest" => scenario_rest(&mut ctx, &users),
            "slow" => scenario_slow(&mut ctx, &users),
            other => Err(format!("unknown scenario {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("lantern-loadtest: {sc}: {e}");
            ctx.report.error(&sc, e);
        }
        eprintln!("lantern-loadtest: {sc} done in {:.1} s", t.elapsed().as_secs_f64());
    }
    ctx.report.wall_s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    ctx.report.write(&out)?;
    Ok(ctx.report)
}

fn time_stamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    lantern::time_fmt::iso_ms(now).replace([':', '.'], "-")
}

/// Sets the user's presence to the placeholder stamp and reads back the user object.
fn user_template(ctx: &Ctx, lantern: &Target, user: Snowflake) -> Result<String, String> {
    ctx.sim.set_presence(stamped(user, STAMP_PLACEHOLDER.into()));
    let base = format!("http://{}", lantern.addr);
    let mut body = String::new();
    let ok = wait_for(Duration::from_secs(10), || match http_request(&base, "GET", &format!("/api/v1/users/{user}"), b"") {
        Ok((200, b)) => {
            body = String::from_utf8_lossy(&b).into_owned();
            body.contains(STAMP_PLACEHOLDER)
        }
        _ => false,
    });
    if !ok {
        return Err(format!("lantern never showed the stamped presence of {user}"));
    }
    Ok(body)
}

fn ws_unsupported(ready: &Ready) -> Option<String> {
    (ready.ready == 0).then(|| ready.first_error.clone().unwrap_or_else(|| "no connection succeeded".into()))
}

/// The heartbeat interval the fan-out scenario's servers announce (10 minutes).
const FANOUT_HEARTBEAT_MS: u64 = 600_000;

fn scenario_fanout(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let user = users[0].user.id;
    let k = ctx.opts.subscribers;
    let gap = Duration::from_millis(ctx.opts.gap_ms);
    let mut by_shards: Vec<(usize, Vec<FanRun>)> = Vec::new();
    for shards in ctx.opts.shards.clone() {
        // Every server announces a heartbeat interval longer than the scenario, so that no
        // heartbeat falls inside a measured window: the floor answers none, and what
        // heartbeats cost is the idle scenario's measure.
        let lantern = ctx.start_lantern_with(shards, &format!("heartbeat_interval = {FANOUT_HEARTBEAT_MS}\n"), "")?;
        let body = user_template(ctx, &lantern, user)?;
        let floor = ctx.start_comparator(
            "floor",
            &ComparatorSpec { cpu: Some(ctx.opts.server_cpu), init_ack: body.clone(), template: format!("{{\"t\":\"PRESENCE_UPDATE\",\"op\":6,\"d\":{body}}}"), batch: 1, heartbeat_interval_ms: Some(FANOUT_HEARTBEAT_MS), ..Default::default() },
        )?;
        let node_spec = ComparatorSpec { init_ack: body.clone(), template: format!("{{\"t\":\"PRESENCE_UPDATE\",\"op\":6,\"d\":{body}}}"), heartbeat_interval_ms: Some(FANOUT_HEARTBEAT_MS), ..Default::default() };
        let mut node = ctx.start_node_peer(&node_spec)?;
        let inits = vec![format!("{{\"user_id\":\"{user}\"}}"); k];
        let (mut lp, lready) = ctx.connect(&lantern, Role::Ws, inits.clone(), 0, false)?;
        let (mut fp, fready) = ctx.connect(&floor, Role::Ws, inits.clone(), 0, false)?;
        let mut np = match &node {
            Some(n) => {
                let (np, nready) = ctx.connect(n, Role::Ws, inits, 0, false)?;
                if nready.ready != k {
                    ctx.report.note(format!("fan-out: only {} of {k} Node peer subscribers connected ({:?})", nready.ready, nready.first_error));
                }
                Some((np, nready.ready))
            }
            None => None,
        };
        let mut nruns = Vec::new();
        if fready.ready != k {
            return Err(format!("floor: {} of {k} subscribers connected ({:?})", fready.ready, fready.first_error));
        }
        let unsupported = ws_unsupported(&lready);
        if let Some(e) = &unsupported {
            ctx.report.note(format!("fan-out: lantern has no usable /socket yet ({e}); lantern rows are empty"));
        } else if lready.ready != k {
            ctx.report.note(format!("fan-out: only {} of {k} lantern subscribers connected ({:?})", lready.ready, lready.first_error));
        }
        // Drop what the connections received so far (INIT traffic).
        collect(&mut lp, 0, Duration::from_millis(10))?;
        collect(&mut fp, 0, Duration::from_millis(10))?;
        let mut lruns = Vec::new();
        let mut fruns = Vec::new();
        let mut floor = floor;
        for round in 0..ctx.opts.rounds {
            if unsupported.is_none() {
                let mut s = Sender::Gateway(&ctx.sim, user);
                let r = fan_run(lantern.pid, &mut s, &mut lp, lready.ready, ctx.opts.bursts, gap, false)?;
                eprintln!("  fan-out round {round}: {} {}/{} deliveries, {:.2} µs CPU each, last subscriber {:.1} ms", lantern.name, r.received, r.expected, r.cpu_us_per_delivery(), r.last_median_ms());
                lruns.push(r);
            }
            let fl = floor.proc.as_mut().ok_or("floor gone")?;
            let mut s = Sender::Floor(fl);
            let r = fan_run(floor.pid, &mut s, &mut fp, fready.ready, ctx.opts.bursts, gap, false)?;
            eprintln!("  fan-out round {round}: floor {}/{} deliveries, {:.2} µs CPU each, last subscriber {:.1} ms", r.received, r.expected, r.cpu_us_per_delivery(), r.last_median_ms());
            fruns.push(r);
            if let (Some(n), Some((np, ready))) = (node.as_mut(), np.as_mut()) {
                let pid = n.pid;
                let mut s = Sender::Floor(n.proc.as_mut().ok_or("node peer gone")?);
                let r = fan_run(pid, &mut s, np, *ready, ctx.opts.bursts, gap, false)?;
                eprintln!("  fan-out round {round}: node peer {}/{} deliveries, {:.2} µs CPU each, last subscriber {:.1} ms", r.received, r.expected, r.cpu_us_per_delivery(), r.last_median_ms());
                nruns.push(r);
            }
        }
        stop_all(lp);
        stop_all(fp);
        if let Some((np, _)) = np {
            stop_all(np);
        }
        lantern.stop();
        floor.stop();
        if let Some(n) = node {
            n.stop();
        }
        let tag = format!("fanout/{shards}");
        fan_rows(ctx, &tag, &format!("fan-out, {k} subscribers, {shards} shard(s)"), &lruns, &fruns);
        if !nruns.is_empty() {
            let r = &mut ctx.report;
            r.raw(&format!("{tag}/node"), json!({"node_peer": nruns.iter().map(fan_json).collect::<Vec<_>>()}));
            r.section(&format!("fan-out, {k} subscribers, {shards} shard(s): lantern vs the Node 20 + ws peer"));
            r.row(Row::ab("server CPU µs per delivery (vs Node peer)", &vals(&lruns, FanRun::cpu_us_per_delivery), &vals(&nruns, FanRun::cpu_us_per_delivery), "below the Node peer", |ratio| ratio < 1.0));
            r.row(Row::ab("Node peer: server CPU µs per delivery (vs floor)", &vals(&nruns, FanRun::cpu_us_per_delivery), &vals(&fruns, FanRun::cpu_us_per_delivery), "", |_| true));
            r.row(Row::ab("last-subscriber latency p50 (ms) (vs Node peer)", &vals(&lruns, FanRun::last_median_ms), &vals(&nruns, FanRun::last_median_ms), "", |_| true));
            r.row(Row::ab("first-subscriber latency p50 (ms), from the input's write (vs Node peer)", &vals(&lruns, FanRun::first_from_input_median_ms), &vals(&nruns, FanRun::first_from_input_median_ms), "", |_| true));
        }
        if shards == ctx.opts.shards[0] {
            if let (Some(l), Some(f)) = (lruns.last(), fruns.last()) {
                ctx.report.latency_series.push(Series::cdf("lantern", &l.latencies_ns));
                ctx.report.latency_series.push(Series::cdf("floor-fanout", &f.latencies_ns));
                ctx.report.timeline_series.push(Series::timeline("lantern", &l.timeline_ns));
                ctx.report.timeline_series.push(Series::timeline("floor-fanout", &f.timeline_ns));
            } else if let Some(f) = fruns.last() {
                ctx.report.latency_series.push(Series::cdf("floor-fanout", &f.latencies_ns));
                ctx.report.timeline_series.push(Series::timeline("floor-fanout", &f.timeline_ns));
            }
        }
        by_shards.push((shards, lruns));
    }
    if by_shards.len() >= 2 {
        let (s1, one) = &by_shards[0];
        for (sn, many) in &by_shards[1..] {
            if one.is_empty() || many.is_empty() {
                continue;
            }
            let d1 = median(&vals(one, FanRun::deliveries_per_s));
            let dn = median(&vals(many, FanRun::deliveries_per_s));
            let c1 = median(&vals(one, |r| 1.0 / r.cpu_us_per_delivery()));
            let cn = median(&vals(many, |r| 1.0 / r.cpu_us_per_delivery()));
            ctx.report.row(Row::ratio("scaling", &format!("deliveries/s, {sn} shards vs {s1}"), dn, d1, "≥ 1.7×", dn / d1 >= 1.7));
            ctx.report.row(Row::ratio("scaling", &format!("deliveries per CPU-second, {sn} shards vs {s1}"), cn * 1e6, c1 * 1e6, "≥ 0.9×", cn / c1 >= 0.9));
        }
    }
    Ok(())
}

/// Fan-out with the subscribers spread over a three-node cluster (one NATS server, one gateway
/// session held by the leader, presence replicated to the followers through JetStream) beside
/// the same subscribers on one node running alone. Every node runs one shard on the server
/// CPU, NATS too; the cluster's CPU is the three nodes' (NATS reported apart).
fn scenario_cluster(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    const NODES: usize = 3;
    // Each side follows its own user: both are connected to the simulator's gateway, and
    // neither's subscribers may count the other's updates.
    let (user, alone) = match users {
        [a, b, ..] => (a.user.id, b.user.id),
        _ => return Err("the cluster scenario needs two members with a presence".into()),
    };
    let k = ctx.opts.subscribers;
    let gap = Duration::from_millis(ctx.opts.gap_ms);
    let inits = vec![format!("{{\"user_id\":\"{user}\"}}"); k];

    let single = ctx.start_lantern(1)?;
    user_template(ctx, &single, alone)?;
    let (mut sp, sready) = ctx.connect(&single, Role::Ws, vec![format!("{{\"user_id\":\"{alone}\"}}"); k], 0, false)?;
    if sready.ready != k {
        return Err(format!("one node: {} of {k} subscribers connected ({:?})", sready.ready, sready.first_error));
    }

    let (nats, nats_url) = ctx.start_nats()?;
    let nats_pid = nats.pid();
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        nodes.push(ctx.start_lantern_with(1, "", &format!("[cluster]\nnats_url = '{nats_url}'\nnode_id = 'node-{i}'\n"))?);
    }
    let body = user_template(ctx, &nodes[0], user)?;
    // Every node serves the user as the first does before anyone subscribes.
    for node in &nodes {
        let base = format!("http://{}", node.addr);
        if !wait_for(Duration::from_secs(30), || matches!(http_request(&base, "GET", &format!("/api/v1/users/{user}"), b""), Ok((200, b)) if b == body.as_bytes())) {
            return Err(format!("cluster node {} never served the user as one node does", node.addr));
        }
    }
    let mut cp = Vec::new();
    let mut cready = 0;
    for (i, node) in nodes.iter().enumerate() {
        let (procs, ready) = ctx.connect(node, Role::Ws, inits[i * k / NODES..(i + 1) * k / NODES].to_vec(), 0, false)?;
        cready += ready.ready;
        cp.extend(procs);
    }
    if cready != k {
        return Err(format!("cluster: {cready} of {k} subscribers connected"));
    }
    collect(&mut sp, 0, Duration::from_millis(10))?;
    collect(&mut cp, 0, Duration::from_millis(10))?;
    let pids: Vec<u32> = nodes.iter().filter_map(|n| n.pid).collect();
    let (mut cruns, mut sruns, mut nats_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ctx.opts.rounds {
        let n0 = cpu_seconds(nats_pid).unwrap_or(f64::NAN);
        let r = fan_run_on(&pids, &mut Sender::Gateway(&ctx.sim, user), &mut cp, k, ctx.opts.bursts, gap, false)?;
        nats_cpu.push((cpu_seconds(nats_pid).unwrap_or(f64::NAN) - n0) * 1e6 / r.received.max(1) as f64);
        eprintln!("  cluster round {round}: {NODES} nodes {}/{} deliveries, {:.2} µs CPU each, last subscriber {:.1} ms", r.received, r.expected, r.cpu_us_per_delivery(), r.last_median_ms());
        cruns.push(r);
        let r = fan_run(single.pid, &mut Sender::Gateway(&ctx.sim, alone), &mut sp, k, ctx.opts.bursts, gap, false)?;
        eprintln!("  cluster round {round}: one node {}/{} deliveries, {:.2} µs CPU each, last subscriber {:.1} ms", r.received, r.expected, r.cpu_us_per_delivery(), r.last_median_ms());
        sruns.push(r);
    }
    stop_all(cp);
    stop_all(sp);
    for node in nodes {
        node.stop();
    }
    nats.stop(Duration::from_secs(5));
    single.stop();

    let r = &mut ctx.report;
    r.raw("cluster", json!({
        "nodes": NODES, "subscribers": k,
        "cluster": cruns.iter().map(fan_json).collect::<Vec<_>>(),
        "one_node": sruns.iter().map(fan_json).collect::<Vec<_>>(),
        "nats_cpu_us_per_delivery": nats_cpu,
    }));
    r.section(&format!("cluster: {k} subscribers over {NODES} nodes (one NATS) vs one node"));
    let sum = |runs: &[FanRun]| runs.iter().map(|x| (x.received, x.expected)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let lost: u64 = cruns.iter().map(|x| x.expected.saturating_sub(x.received)).sum();
    r.row(Row::counts("deliveries received / expected", sum(&cruns), sum(&sruns), lost == 0 && !cruns.is_empty()));
    r.row(Row::ab("server CPU µs per delivery, all nodes", &vals(&cruns, FanRun::cpu_us_per_delivery), &vals(&sruns, FanRun::cpu_us_per_delivery), "", |_| true));
    r.row(Row::ab("NATS CPU µs per delivery (vs one node's lantern)", &nats_cpu, &vals(&sruns, FanRun::cpu_us_per_delivery), "", |_| true));
    r.row(Row::ab("last-subscriber latency p50 (ms)", &vals(&cruns, FanRun::last_median_ms), &vals(&sruns, FanRun::last_median_ms), "", |_| true));
    r.row(Row::ab("first-subscriber latency p50 (ms)", &vals(&cruns, FanRun::first_median_ms), &vals(&sruns, FanRun::first_median_ms), "", |_| true));
    r.row(Row::ab("delivery latency p99 (ms)", &vals(&cruns, |x| x.lat_pct(99.0)), &vals(&sruns, |x| x.lat_pct(99.0)), "", |_| true));
    Ok(())
}

fn fan_rows(ctx: &mut Ctx, tag: &str, title: &str, l: &[FanRun], f: &[FanRun]) {
    let r = &mut ctx.report;
    r.raw(tag, json!({
        "lantern": l.iter().map(fan_json).collect::<Vec<_>>(),
        "floor": f.iter().map(fan_json).collect::<Vec<_>>(),
    }));
    r.section(title);
    let lost_l: u64 = l.iter().map(|x| x.expected.saturating_sub(x.received)).sum();
    let lost_f: u64 = f.iter().map(|x| x.expected.saturating_sub(x.received)).sum();
    r.row(Row::counts("deliveries received / expected", l.iter().map(|x| (x.received, x.expected)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)), f.iter().map(|x| (x.received, x.expected)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)), lost_l == 0 && !l.is_empty()));
    r.row(Row::ab("server CPU µs per delivery", &vals(l, FanRun::cpu_us_per_delivery), &vals(f, FanRun::cpu_us_per_delivery), "≤ 1.1× floor", |ratio| ratio <= 1.1));
    r.row(Row::ab("last-subscriber latency p50 (ms)", &vals(l, FanRun::last_median_ms), &vals(f, FanRun::last_median_ms), "≤ 1.2× floor", |ratio| ratio <= 1.2));
    r.row(Row::ab("first-subscriber latency p50 (ms), from the harness's send", &vals(l, FanRun::first_median_ms), &vals(f, FanRun::first_median_ms), "", |_| true));
    r.row(Row::ab("first-subscriber latency p50 (ms), from the input's write", &vals(l, FanRun::first_from_input_median_ms), &vals(f, FanRun::first_from_input_median_ms), "≤ 1.3× floor", |ratio| ratio <= 1.3));
    r.row(Row::ab("last-subscriber latency p99 (ms)", &vals(l, |x| x.last_pct_ms(99.0)), &vals(f, |x| x.last_pct_ms(99.0)), "≤ 1.5× floor", |ratio| ratio <= 1.5));
    r.row(Row::ab("delivery latency p50 (ms)", &vals(l, |x| x.lat_pct(50.0)), &vals(f, |x| x.lat_pct(50.0)), "", |_| true));
    r.row(Row::ab("delivery latency p99 (ms)", &vals(l, |x| x.lat_pct(99.0)), &vals(f, |x| x.lat_pct(99.0)), "", |_| true));
    r.row(Row::ab("delivery latency p99.9 (ms)", &vals(l, |x| x.lat_pct(99.9)), &vals(f, |x| x.lat_pct(99.9)), "", |_| true));
    r.row(Row::ab("delivery latency max (ms)", &vals(l, |x| x.lat_pct(100.0)), &vals(f, |x| x.lat_pct(100.0)), "", |_| true));
    r.row(Row::ab("deliveries/s (subscribers ÷ last-subscriber latency)", &vals(l, FanRun::deliveries_per_s), &vals(f, FanRun::deliveries_per_s), "", |_| true));
    let _ = lost_f;
}

fn fan_json(r: &FanRun) -> Value {
    json!({
        "subscribers": r.subscribers, "updates": r.sent, "received": r.received, "expected": r.expected,
        "lost": r.expected.saturating_sub(r.received), "min_per_connection": r.min_per_conn, "closed": r.closed,
        "server_cpu_s": r.cpu_s, "cpu_us_per_delivery": r.cpu_us_per_delivery(),
        "latency_ms": {"p50": r.lat_pct(50.0), "p99": r.lat_pct(99.0), "p99_9": r.lat_pct(99.9), "max": r.lat_pct(100.0)},
        "first_subscriber_ms": {"p50": r.first_median_ms(), "p50_from_input_write": r.first_from_input_median_ms()}, "last_subscriber_ms": {"p50": r.last_median_ms(), "p99": r.last_pct_ms(99.0), "each": r.last_ns.iter().map(|n| *n as f64 / 1e6).collect::<Vec<_>>()},
        "deliveries_per_s": r.deliveries_per_s(),
    })
}

fn scenario_churn(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let n_users = ctx.opts.churn_users.min(users.len()).max(1);
    let ids: Vec<Snowflake> = users[..n_users].iter().map(|p| p.user.id).collect();
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut subs_of = vec![0u64; n_users];
    let mut inits = Vec::new();
    for _ in 0..ctx.opts.churn_subset_clients {
        let mut pick: Vec<usize> = (0..5.min(n_users)).map(|_| (next() % n_users as u64) as usize).collect();
        pick.sort_unstable();
        pick.dedup();
        for &i in &pick {
            subs_of[i] += 1;
        }
        let list: Vec<String> = pick.iter().map(|&i| format!("\"{}\"", ids[i])).collect();
        inits.push(format!("{{\"user_ids\":[{}]}}", list.join(",")));
    }
    let all = ctx.opts.churn_all_clients as u64;
    for _ in 0..all {
        inits.push("{\"user_id\":\"All\"}".into());
    }
    let shards = ctx.opts.shards[0];
    let lantern = ctx.start_lantern(shards)?;
    let total = inits.len();
    let (mut procs, ready) = ctx.connect(&lantern, Role::Ws, inits, 0, false)?;
    if let Some(e) = ws_unsupported(&ready) {
        stop_all(procs);
        lantern.stop();
        ctx.report.section("churn");
        ctx.report.note(format!("churn: lantern has no usable /socket yet ({e})"));
        return Ok(());
    }
    collect(&mut procs, 0, Duration::from_millis(10))?;
    let mut runs = Vec::new();
    for round in 0..ctx.opts.rounds {
        let cpu0 = lantern.cpu();
        let count = (ctx.opts.churn_rate * ctx.opts.churn_secs).round().max(1.0) as usize;
        let period = Duration::from_secs_f64(1.0 / ctx.opts.churn_rate.max(0.1));
        let start = Instant::now();
        let mut expected = 0u64;
        for i in 0..count {
            let u = i % n_users;
            expected += subs_of[u] + all;
            ctx.sim.set_presence(stamped(ids[u], stamp_text(mono_ns())));
            std::thread::sleep((start + period * (i as u32 + 1)).saturating_duration_since(Instant::now()));
        }
        let wall = start.elapsed().as_secs_f64();
        // Wait for every expected delivery (each process knows only its own share, so ask
        // for "at least all" and rely on the timeout for the last one).
        let (c, samples) = collect_until(&mut procs, expected, Duration::from_secs(10))?;
        let cpu = lantern.cpu() - cpu0;
        let mut lat: Vec<u64> = samples.iter().map(|(s, r)| r.saturating_sub(*s)).collect();
        lat.sort_unstable();
        eprintln!("  churn round {round}: {}/{} deliveries, {:.2} µs CPU each", c.received, expected, cpu * 1e6 / c.received.max(1) as f64);
        runs.push(json!({
            "updates": count, "received": c.received, "expected": expected, "lost": expected.saturating_sub(c.received),
            "server_cpu_s": cpu, "cpu_us_per_delivery": cpu * 1e6 / c.received.max(1) as f64,
            "deliveries_per_s": c.received as f64 / wall,
            "latency_ms": {"p50": pct(&lat, 50.0) as f64 / 1e6, "p99": pct(&lat, 99.0) as f64 / 1e6, "p99_9": pct(&lat, 99.9) as f64 / 1e6, "max": pct(&lat, 100.0) as f64 / 1e6},
        }));
    }
    stop_all(procs);
    lantern.stop();
    let f = |k: &str| -> Vec<f64> { runs.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect() };
    let fl = |k: &str| -> Vec<f64> { runs.iter().map(|r| r["latency_ms"][k].as_f64().unwrap_or(f64::NAN)).collect() };
    let r = &mut ctx.report;
    r.raw("churn", json!({"clients": total, "users": n_users, "all_clients": all, "runs": runs}));
    r.section(&format!("churn, {n_users} users at {}/s, {} subset + {all} All clients", ctx.opts.churn_rate, ctx.opts.churn_subset_clients));
    let received: u64 = runs.iter().map(|r| r["received"].as_u64().unwrap_or(0)).sum();
    let expected: u64 = runs.iter().map(|r| r["expected"].as_u64().unwrap_or(0)).sum();
    r.row(Row::counts("deliveries received / expected", (received, expected), (0, 0), received == expected));
    r.row(Row::single("server CPU µs per delivery", &f("cpu_us_per_delivery")));
    r.row(Row::single("deliveries/s", &f("deliveries_per_s")));
    r.row(Row::single("delivery latency p50 (ms)", &fl("p50")));
    r.row(Row::single("delivery latency p99 (ms)", &fl("p99")));
    r.row(Row::single("delivery latency max (ms)", &fl("max")));
    Ok(())
}

/// A storm: `storm_users` users each changing `storm_hz` times a second, to `storm_clients`
/// All subscribers. Lantern's deliveries per second of its CPU beside the floor's when it writes
/// one frame per `write()` and socket (what a server without batching pays for every frame).
fn scenario_storm(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let n_users = ctx.opts.storm_users.min(users.len()).max(1);
    let ids: Vec<Snowflake> = users[..n_users].iter().map(|p| p.user.id).collect();
    let k = ctx.opts.storm_clients;
    let rate = (n_users as f64 * ctx.opts.storm_hz).max(1.0);
    let count = (rate * ctx.opts.storm_secs).round().max(1.0) as usize;
    let lantern = ctx.start_lantern(ctx.opts.shards[0])?;
    let body = user_template(ctx, &lantern, ids[0])?;
    let floor = ctx.start_comparator(
        "floor",
        &ComparatorSpec { cpu: Some(ctx.opts.server_cpu), init_ack: body.clone(), template: format!("{{\"t\":\"PRESENCE_UPDATE\",\"op\":6,\"d\":{body}}}"), batch: 1, ..Default::default() },
    )?;
    let inits = vec!["{\"user_id\":\"All\"}".to_string(); k];
    let (mut lp, lready) = ctx.connect(&lantern, Role::Ws, inits.clone(), 0, false)?;
    let (mut fp, fready) = ctx.connect(&floor, Role::Ws, inits, 0, false)?;
    if let Some(e) = ws_unsupported(&lready) {
        stop_all(lp);
        stop_all(fp);
        lantern.stop();
        floor.stop();
        ctx.report.section("storm");
        ctx.report.note(format!("storm: lantern has no usable /socket yet ({e})"));
        return Ok(());
    }
    if lready.ready != k || fready.ready != k {
        return Err(format!("storm: {} lantern and {} floor subscribers of {k} connected", lready.ready, fready.ready));
    }
    collect(&mut lp, 0, Duration::from_millis(10))?;
    collect(&mut fp, 0, Duration::from_millis(10))?;
    let mut floor = floor;
    let (mut lruns, mut fruns) = (Vec::new(), Vec::new());
    let per_cpu_s = |received: u64, cpu: f64| received as f64 / cpu.max(1e-9);
    for round in 0..ctx.opts.rounds {
        // A: lantern, paced at the storm's rate through the simulator's gateway.
        let cpu0 = lantern.cpu();
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        for i in 0..count {
            ctx.sim.set_presence(stamped(ids[i % n_users], stamp_text(mono_ns())));
            std::thread::sleep((start + period * (i as u32 + 1)).saturating_duration_since(Instant::now()));
        }
        let expected = (count * k) as u64;
        let (c, _) = collect_until(&mut lp, expected, Duration::from_secs(60))?;
        let cpu = lantern.cpu() - cpu0;
        eprintln!("  storm round {round}: lantern {}/{expected} deliveries, {:.0} per CPU-second", c.received, per_cpu_s(c.received, cpu));
        lruns.push(json!({"updates": count, "received": c.received, "expected": expected, "server_cpu_s": cpu, "deliveries_per_cpu_s": per_cpu_s(c.received, cpu)}));
        // B: the floor, its frames back to back (it cannot keep the storm's rate).
        let fcpu0 = floor.cpu();
        let frames = ctx.opts.storm_floor_frames.max(1);
        let mut s = Sender::Floor(floor.proc.as_mut().ok_or("floor gone")?);
        for _ in 0..frames {
            s.send(mono_ns())?;
        }
        let expected = (frames * k) as u64;
        let (c, _) = collect_until(&mut fp, expected, Duration::from_secs(60))?;
        let cpu = floor.cpu() - fcpu0;
        eprintln!("  storm round {round}: floor {}/{expected} deliveries, {:.0} per CPU-second", c.received, per_cpu_s(c.received, cpu));
        fruns.push(json!({"frames": frames, "received": c.received, "expected": expected, "server_cpu_s": cpu, "deliveries_per_cpu_s": per_cpu_s(c.received, cpu)}));
    }
    stop_all(lp);
    stop_all(fp);
    lantern.stop();
    floor.stop();
    let f = |runs: &[Value], key: &str| -> Vec<f64> { runs.iter().map(|r| r[key].as_f64().unwrap_or(f64::NAN)).collect() };
    let sum = |runs: &[Value], key: &str| -> u64 { runs.iter().map(|r| r[key].as_u64().unwrap_or(0)).sum() };
    let r = &mut ctx.report;
    r.raw("storm", json!({"users": n_users, "hz": ctx.opts.storm_hz, "clients": k, "lantern": lruns, "floor": fruns}));
    r.section(&format!("storm: {n_users} users × {} Hz to {k} All subscribers; comparator: one frame per write", ctx.opts.storm_hz));
    let (lr, le) = (sum(&lruns, "received"), sum(&lruns, "expected"));
    let (fr, fe) = (sum(&fruns, "received"), sum(&fruns, "expected"));
    r.row(Row::counts("deliveries received / expected", (lr, le), (fr, fe), lr == le && fr == fe));
    r.row(Row::ab("deliveries per server CPU-second", &f(&lruns, "deliveries_per_cpu_s"), &f(&fruns, "deliveries_per_cpu_s"), "≥ 5× the floor", |ratio| ratio >= 5.0));
    Ok(())
}

/// Fan-out with permessage-deflate: the same server, alternately to `subscribers` clients that
/// negotiated compression and to as many that did not. The compressed frame is made once per
/// change and shared, so its CPU per delivery should stay close to the plain one.
fn scenario_deflate(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let user = users[0].user.id;
    let k = ctx.opts.subscribers;
    let gap = Duration::from_millis(ctx.opts.gap_ms);
    let lantern = ctx.start_lantern(ctx.opts.shards[0])?;
    let inits = vec![format!("{{\"user_id\":\"{user}\"}}"); k];
    let mut zruns = Vec::new();
    let mut pruns = Vec::new();
    // Each run has only its own clients connected (a delivery goes to every subscriber of the
    // user): A with compressing clients, then B with plain ones.
    for round in 0..ctx.opts.rounds {
        for deflate in [true, false] {
            let (mut procs, ready) = ctx.connect_with(&lantern, Role::Ws, inits.clone(), 0, false, deflate)?;
            if ready.ready != k {
                stop_all(procs);
                lantern.stop();
                return Err(format!("deflate: {} of {k} subscribers (compressing: {deflate}) connected ({:?})", ready.ready, ready.first_error));
            }
            collect(&mut procs, 0, Duration::from_millis(10))?;
            let mut s = Sender::Gateway(&ctx.sim, user);
            let r = fan_run(lantern.pid, &mut s, &mut procs, k, ctx.opts.bursts, gap, false)?;
            stop_all(procs);
            let kind = if deflate { "compressed" } else { "plain" };
            eprintln!("  deflate round {round}: {kind} {}/{} deliveries, {:.2} µs CPU each, {} B each", r.received, r.expected, r.cpu_us_per_delivery(), r.bytes / r.received.max(1));
            if deflate { zruns.push(r) } else { pruns.push(r) }
        }
    }
    lantern.stop();
    let per = |r: &FanRun| r.bytes as f64 / r.received.max(1) as f64;
    let r = &mut ctx.report;
    r.raw("deflate", json!({
        "subscribers": k,
        "compressed": zruns.iter().map(|x| json!({"received": x.received, "expected": x.expected, "cpu_us_per_delivery": x.cpu_us_per_delivery(), "bytes": x.bytes})).collect::<Vec<_>>(),
        "plain": pruns.iter().map(|x| json!({"received": x.received, "expected": x.expected, "cpu_us_per_delivery": x.cpu_us_per_delivery(), "bytes": x.bytes})).collect::<Vec<_>>(),
    }));
    r.section(&format!("permessage-deflate fan-out, {k} subscribers; comparator: the same server, uncompressed"));
    let sum = |v: &[FanRun], f: fn(&FanRun) -> u64| v.iter().map(f).sum::<u64>();
    let (zr, ze) = (sum(&zruns, |x| x.received), sum(&zruns, |x| x.expected));
    let (pr, pe) = (sum(&pruns, |x| x.received), sum(&pruns, |x| x.expected));
    r.row(Row::counts("deliveries received / expected", (zr, ze), (pr, pe), zr == ze && pr == pe));
    r.row(Row::ab("server CPU µs per delivery", &vals(&zruns, FanRun::cpu_us_per_delivery), &vals(&pruns, FanRun::cpu_us_per_delivery), "≤ 1.2× uncompressed", |ratio| ratio <= 1.2));
    r.row(Row::ab("bytes on the wire per delivery", &vals(&zruns, per), &vals(&pruns, per), "", |_| true));
    Ok(())
}

/// Like [`collect`] but waits for a total over all processes (their shares are unequal).
fn collect_until(procs: &mut [(Proc, usize, String)], expected: u64, timeout: Duration) -> Result<(Collected, Vec<(u64, u64)>), String> {
    let end = Instant::now() + timeout;
    let mut total = Collected::default();
    let mut samples = Vec::new();
    loop {
        let (c, s) = collect(procs, 0, Duration::from_millis(50))?;
        total.received += c.received;
        total.stamped += c.stamped;
        total.bytes += c.bytes;
        total.closed = c.closed;
        samples.extend(s);
        if total.received >= expected || Instant::now() >= end {
            return Ok((total, samples));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU µs per heartbeat: `cpu_s` spent over `secs` while `connections` beat every 0.8 ×
/// `interval_ms` (the clients' pace).
fn per_heartbeat_us(cpu_s: f64, connections: usize, secs: f64, interval_ms: f64) -> f64 {
    let beats = connections as f64 * secs / (0.8 * interval_ms / 1000.0);
    cpu_s / beats.max(1.0) * 1e6
}

fn scenario_idle(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let k = ctx.opts.idle_conns;
    let user = users[0].user.id;
    let mut lan = Vec::new();
    let mut hold = Vec::new();
    // Idle CPU is what heartbeats cost. At the default interval (30 s; clients beat at 0.8 of
    // it, staggered from half a period on) a few seconds hold almost no beat, so the cost is
    // measured with a 2 s interval, once every connection beats, and scaled to the default:
    // per beat × connections ÷ 30 s.
    let beat_ms = 2000.0;
    let idle_secs = 3.0;
    for round in 0..ctx.opts.rounds.clamp(1, 3) {
        // A: lantern, fresh each round so that the allocator starts from the same place.
        let lantern = ctx.start_lantern(ctx.opts.shards[0])?;
        std::thread::sleep(Duration::from_millis(300));
        let (rss0, slab0) = (lantern.rss(), slab_bytes().unwrap_or(0) as f64);
        let (procs, ready) = ctx.connect(&lantern, Role::Ws, vec![format!("{{\"user_id\":\"{user}\"}}"); k], 0, false)?;
        if let Some(e) = ws_unsupported(&ready) {
            stop_all(procs);
            lantern.stop();
            ctx.report.note(format!("idle: lantern has no usable /socket yet ({e})"));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let (rss1, slab1) = (lantern.rss(), slab_bytes().unwrap_or(0) as f64);
        let n = ready.ready.max(1) as f64;
        stop_all(procs);
        lantern.stop();
        let lantern = ctx.start_lantern_with(ctx.opts.shards[0], &format!("heartbeat_interval = {beat_ms}\n"), "")?;
        let (procs, beating) = ctx.connect(&lantern, Role::Ws, vec![format!("{{\"user_id\":\"{user}\"}}"); k], 0, false)?;
        std::thread::sleep(Duration::from_millis(beat_ms as u64));
        let cpu0 = lantern.cpu();
        std::thread::sleep(Duration::from_secs_f64(idle_secs));
        let per_beat_us = per_heartbeat_us(lantern.cpu() - cpu0, beating.ready, idle_secs, beat_ms);
        let default_pct = per_beat_us / 1e6 * beating.ready as f64 / 30.0 * 100.0;
        eprintln!("  idle round {round}: lantern {:.0} B user-space per connection, {per_beat_us:.1} µs CPU per heartbeat", (rss1 - rss0) / n);
        lan.push(json!({"connections": ready.ready, "rss_per_conn_b": (rss1 - rss0) / n, "slab_per_conn_b": (slab1 - slab0) / n, "cpu_per_heartbeat_us": per_beat_us, "idle_cpu_pct": default_pct}));
        stop_all(procs);
        lantern.stop();
    }
    for _ in 0..ctx.opts.rounds.clamp(1, 3) {
        let holder = ctx.start_comparator("hold", &ComparatorSpec { cpu: Some(ctx.opts.server_cpu), ..Default::default() })?;
        std::thread::sleep(Duration::from_millis(200));
        let (rss0, slab0) = (holder.rss(), slab_bytes().unwrap_or(0) as f64);
        let (procs, ready) = ctx.connect(&holder, Role::Tcp, vec![], k, false)?;
        std::thread::sleep(Duration::from_millis(500));
        let (rss1, slab1) = (holder.rss(), slab_bytes().unwrap_or(0) as f64);
        let n = ready.ready.max(1) as f64;
        hold.push(json!({"connections": ready.ready, "rss_per_conn_b": (rss1 - rss0) / n, "slab_per_conn_b": (slab1 - slab0) / n}));
        stop_all(procs);
        holder.stop();
    }
    let mut node = Vec::new();
    for _ in 0..ctx.opts.rounds.clamp(1, 3) {
        let Some(peer) = ctx.start_node_peer(&ComparatorSpec { init_ack: "null".into(), template: "{}".into(), ..Default::default() })? else { break };
        std::thread::sleep(Duration::from_millis(300));
        let rss0 = peer.rss();
        let (procs, ready) = ctx.connect(&peer, Role::Ws, vec![format!("{{\"user_id\":\"{user}\"}}"); k], 0, false)?;
        std::thread::sleep(Duration::from_millis(500));
        let n = ready.ready.max(1) as f64;
        let per = (peer.rss() - rss0) / n;
        stop_all(procs);
        peer.stop();
        // Its heartbeat cost, measured as lantern's is (above).
        let Some(peer) = ctx.start_node_peer(&ComparatorSpec { init_ack: "null".into(), template: "{}".into(), heartbeat_interval_ms: Some(beat_ms as u64), ..Default::default() })? else { break };
        let (procs, beating) = ctx.connect(&peer, Role::Ws, vec![format!("{{\"user_id\":\"{user}\"}}"); k], 0, false)?;
        std::thread::sleep(Duration::from_millis(beat_ms as u64));
        let cpu0 = peer.cpu();
        std::thread::sleep(Duration::from_secs_f64(idle_secs));
        let per_beat_us = per_heartbeat_us(peer.cpu() - cpu0, beating.ready, idle_secs, beat_ms);
        eprintln!("  idle round: node peer {per:.0} B user-space per connection, {per_beat_us:.1} µs CPU per heartbeat");
        node.push(json!({"connections": ready.ready, "rss_per_conn_b": per, "cpu_per_heartbeat_us": per_beat_us}));
        stop_all(procs);
        peer.stop();
    }
    let g = |v: &[Value], k: &str| -> Vec<f64> { v.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect() };
    let r = &mut ctx.report;
    r.raw("idle", json!({"lantern": lan, "raw_hold": hold, "node_peer": node}));
    if !node.is_empty() {
        r.section(&format!("idle, {k} connections: lantern vs the Node 20 + ws peer"));
        r.row(Row::ab_abs("user-space memory per subscribed connection (B) (vs Node peer)", &g(&lan, "rss_per_conn_b"), &g(&node, "rss_per_conn_b"), "≤ 2048 B", |v| v <= 2048.0));
        r.row(Row::ab("server CPU per heartbeat (µs), every connection beating (vs Node peer)", &g(&lan, "cpu_per_heartbeat_us"), &g(&node, "cpu_per_heartbeat_us"), "", |_| true));
    }
    r.section(&format!("idle, {k} connections"));
    r.row(Row::ab_abs("user-space memory per connection (B)", &g(&lan, "rss_per_conn_b"), &g(&hold, "rss_per_conn_b"), "≤ 2048 B", |v| v <= 2048.0));
    r.row(Row::ab("kernel slab per connection, both ends (B)", &g(&lan, "slab_per_conn_b"), &g(&hold, "slab_per_conn_b"), "(outside our control)", |_| true));
    r.row(Row::single_target("server CPU per heartbeat (µs), every connection beating", &g(&lan, "cpu_per_heartbeat_us"), "", |_| true));
    r.row(Row::single_target("idle CPU with heartbeats at the default 30 s interval (% of a core)", &g(&lan, "idle_cpu_pct"), "≤ 1%", |v| v <= 1.0));
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct HttpRun {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    cpu_pct: f64,
}

fn http_run(ctx: &mut Ctx, target: &Target, paths: &[String], rate: f64) -> Result<HttpRun, String> {
    let samples_path = ctx.samples_path();
    let duration_ms = (ctx.opts.rest_secs * 1000.0) as u64;
    let spec = ClientSpec {
        addr: target.addr.clone(),
        cpu: Some(ctx.opts.client_cpu),
        samples_path: samples_path.clone(),
        paths: paths.to_vec(),
        connections: ctx.opts.rest_conns,
        duration_ms,
        rate,
        // A bound on the count too: 2M requests per second of run at most.
        max_requests: 2_000_000 * duration_ms / 1000 + 1000,
        ..ClientSpec::default_http()
    };
    let mut p = Proc::spawn_self("client", &spec, Some(ctx.opts.client_cpu))?;
    std::thread::sleep(Duration::from_millis(100));
    let cpu0 = target.cpu();
    let t0 = Instant::now();
    p.send("go")?;
    let r: HttpResult = p.recv(Duration::from_millis(duration_ms) + Duration::from_secs(60))?;
    let cpu = (target.cpu() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    p.stop(Duration::from_secs(2));
    let mut lat: Vec<u64> = read_samples(&samples_path).iter().map(|(a, b)| b.saturating_sub(*a)).collect();
    lat.sort_unstable();
    Ok(HttpRun {
        rps: r.ok as f64 / (duration_ms as f64 / 1000.0),
        p50_ms: pct(&lat, 50.0) as f64 / 1e6,
        p99_ms: pct(&lat, 99.0) as f64 / 1e6,
        p999_ms: pct(&lat, 99.9) as f64 / 1e6,
        errors: r.errors + r.connect_failed,
        cpu_pct: cpu,
    })
}

fn scenario_rest(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let shards = ctx.opts.shards[0];
    let lantern = ctx.start_lantern(shards)?;
    let base = format!("http://{}", lantern.addr);
    let one = format!("/api/v1/users/{}", users[0].user.id);
    let ids: Vec<String> = users.iter().take(ctx.opts.bulk_ids.clamp(1, 50)).map(|p| p.user.id.to_string()).collect();
    let bulk = format!("/api/v1/users?user_ids={}", ids.join(","));
    let (s1, b1) = http_request(&base, "GET", &one, b"")?;
    let (s2, b2) = http_request(&base, "GET", &bulk, b"")?;
    if s1 != 200 || s2 != 200 {
        return Err(format!("lantern answered {s1} / {s2} to the REST paths"));
    }
    let mut bodies = HashMap::new();
    bodies.insert(one.clone(), String::from_utf8_lossy(&b1).into_owned());
    bodies.insert(bulk.clone(), String::from_utf8_lossy(&b2).into_owned());
    let hyper = ctx.start_comparator("hyper-hello", &ComparatorSpec { cpu: Some(ctx.opts.server_cpu), bodies, ..Default::default() })?;
    let mut raw = serde_json::Map::new();
    let run_pair = |ctx: &mut Ctx, label: &str, paths: &[String], rate_of: &dyn Fn(&[HttpRun]) -> f64, hyper_first: &[HttpRun]| -> Result<(Vec<HttpRun>, Vec<HttpRun>), String> {
        let rate = rate_of(hyper_first);
        let (mut l, mut h) = (Vec::new(), Vec::new());
        for round in 0..ctx.opts.rounds {
            let a = http_run(ctx, &lantern, paths, rate)?;
            let b = http_run(ctx, &hyper, paths, rate)?;
            eprintln!("  rest {label} round {round}: lantern {:.0} req/s p99 {:.3} ms ({:.0}% CPU) | hyper {:.0} req/s p99 {:.3} ms ({:.0}% CPU)", a.rps, a.p99_ms, a.cpu_pct, b.rps, b.p99_ms, b.cpu_pct);
            l.push(a);
            h.push(b);
        }
        Ok((l, h))
    };
    let saturate = |_: &[HttpRun]| 0.0;
    let (ls, hs) = run_pair(ctx, "single, saturation", std::slice::from_ref(&one), &saturate, &[])?;
    let half = |h: &[HttpRun]| (median(&vals(h, |r| r.rps)) * 0.5).max(100.0);
    let (lf, hf) = run_pair(ctx, "single, fixed rate", std::slice::from_ref(&one), &half, &hs)?;
    let (lb, hb) = run_pair(ctx, "bulk, saturation", std::slice::from_ref(&bulk), &saturate, &[])?;
    let (lbf, hbf) = run_pair(ctx, "bulk, fixed rate", std::slice::from_ref(&bulk), &half, &hb)?;
    lantern.stop();
    hyper.stop();
    let js = |v: &[HttpRun]| -> Value { v.iter().map(|r| json!({"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "p99_9_ms": r.p999_ms, "errors": r.errors, "server_cpu_pct": r.cpu_pct})).collect() };
    for (k, l, h) in [("single_saturation", &ls, &hs), ("single_fixed", &lf, &hf), ("bulk_saturation", &lb, &hb), ("bulk_fixed", &lbf, &hbf)] {
        raw.insert(k.into(), json!({"lantern": js(l), "hyper_hello": js(h)}));
    }
    let rate1 = half(&hs);
    let rate2 = half(&hb);
    let r = &mut ctx.report;
    r.raw("rest", Value::Object(raw));
    r.section(&format!("REST, {} connections, {} s runs, {shards} shard(s); comparator: hyper-hello with the same bodies", ctx.opts.rest_conns, ctx.opts.rest_secs));
    r.row(Row::ab("GET /users/:id req/s at saturation", &vals(&ls, |x| x.rps), &vals(&hs, |x| x.rps), "≥ 1.0× hyper (at least 0.9×)", |ratio| ratio >= 0.9));
    r.row(Row::ab("  server CPU during it (%)", &vals(&ls, |x| x.cpu_pct), &vals(&hs, |x| x.cpu_pct), "", |_| true));
    r.row(Row::ab(&format!("GET /users/:id p50 at {rate1:.0} req/s (ms)"), &vals(&lf, |x| x.p50_ms), &vals(&hf, |x| x.p50_ms), "", |_| true));
    r.row(Row::ab(&format!("GET /users/:id p99 at {rate1:.0} req/s (ms)"), &vals(&lf, |x| x.p99_ms), &vals(&hf, |x| x.p99_ms), "≤ 1.2× hyper", |ratio| ratio <= 1.2));
    r.row(Row::ab(&format!("GET /users/:id p99.9 at {rate1:.0} req/s (ms)"), &vals(&lf, |x| x.p999_ms), &vals(&hf, |x| x.p999_ms), "≤ 2× hyper", |ratio| ratio <= 2.0));
    r.row(Row::ab(&format!("bulk GET ({} ids) req/s at saturation", ids.len()), &vals(&lb, |x| x.rps), &vals(&hb, |x| x.rps), "≥ 0.8× hyper", |ratio| ratio >= 0.8));
    r.row(Row::ab(&format!("bulk GET p99 at {rate2:.0} req/s (ms)"), &vals(&lbf, |x| x.p99_ms), &vals(&hbf, |x| x.p99_ms), "", |_| true));
    let errors: u64 = [&ls, &lf, &lb, &lbf].iter().flat_map(|v| v.iter().map(|x| x.errors)).sum();
    if errors > 0 {
        r.note(format!("REST: lantern answered {errors} requests with errors or dropped connections"));
    }
    Ok(())
}

fn scenario_slow(ctx: &mut Ctx, users: &[Presence]) -> Result<(), String> {
    let user = users[0].user.id;
    let shards = ctx.opts.shards[0];
    let lantern = ctx.start_lantern(shards)?;
    let init = format!("{{\"user_id\":\"{user}\"}}");
    let (mut healthy, ready) = ctx.connect(&lantern, Role::Ws, vec![init.clone(); ctx.opts.slow_healthy], 0, false)?;
    if let Some(e) = ws_unsupported(&ready) {
        stop_all(healthy);
        lantern.stop();
        ctx.report.section("slow consumers");
        ctx.report.note(format!("slow: lantern has no usable /socket yet ({e})"));
        return Ok(());
    }
    collect(&mut healthy, 0, Duration::from_millis(10))?;
    let count = (ctx.opts.slow_rate * ctx.opts.slow_secs).round().max(1.0) as usize;
    let gap = Duration::from_secs_f64(1.0 / ctx.opts.slow_rate.max(0.1));
    let (mut base, mut with) = (Vec::new(), Vec::new());
    let mut rss_peaks = Vec::new();
    let mut rss_base = Vec::new();
    for round in 0..ctx.opts.rounds.clamp(1, 3) {
        // A: healthy subscribers only.
        let rss0 = lantern.rss();
        let mut s = Sender::Gateway(&ctx.sim, user);
        let a = fan_run(lantern.pid, &mut s, &mut healthy, ready.ready, count, gap, true)?;
        rss_base.push(lantern.rss() - rss0);
        // B: the same with slow consumers subscribed too.
        let (slow, sready) = ctx.connect(&lantern, Role::Ws, vec![init.clone(); ctx.opts.slow_clients], 0, true)?;
        collect(&mut healthy, 0, Duration::from_millis(10))?;
        let rss0 = lantern.rss();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let pid = lantern.pid;
        let (st, pk) = (stop.clone(), peak.clone());
        let sampler = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(r) = pid.and_then(rss_bytes) {
                    pk.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut s = Sender::Gateway(&ctx.sim, user);
        let b = fan_run(lantern.pid, &mut s, &mut healthy, ready.ready, count, gap, true)?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = sampler.join();
        let growth = peak.load(std::sync::atomic::Ordering::Relaxed) as f64 - rss0;
        eprintln!(
            "  slow round {round}: healthy p99 {:.2} ms alone, {:.2} ms with {} slow; RSS grew {:.1} MiB",
            a.lat_pct(99.0),
            b.lat_pct(99.0),
            sready.ready,
            growth / 1048576.0
        );
        rss_peaks.push(growth);
        base.push(a);
        with.push(b);
        stop_all(slow);
    }
    stop_all(healthy);
    lantern.stop();
    let r = &mut ctx.report;
    r.raw("slow", json!({
        "healthy": ctx.opts.slow_healthy, "slow": ctx.opts.slow_clients, "updates": count,
        "alone": base.iter().map(fan_json).collect::<Vec<_>>(), "with_slow": with.iter().map(fan_json).collect::<Vec<_>>(),
        "rss_growth_with_slow_b": rss_peaks, "rss_growth_alone_b": rss_base,
    }));
    r.section(&format!("slow consumers: {} healthy + {} that stop reading, {count} updates at {}/s", ctx.opts.slow_healthy, ctx.opts.slow_clients, ctx.opts.slow_rate));
    r.row(Row::counts(
        "healthy deliveries received / expected (with slow)",
        with.iter().map(|x| (x.received, x.expected)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        base.iter().map(|x| (x.received, x.expected)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        with.iter().all(|x| x.received == x.expected),
    ));
    r.row(Row::ab("healthy latency p50 (ms), with slow vs alone", &vals(&with, |x| x.lat_pct(50.0)), &vals(&base, |x| x.lat_pct(50.0)), "", |_| true));
    r.row(Row::ab("healthy latency p99 (ms), with slow vs alone", &vals(&with, |x| x.lat_pct(99.0)), &vals(&base, |x| x.lat_pct(99.0)), "≤ 1.2×", |ratio| ratio <= 1.2));
    r.row(Row::single("server RSS growth during the storm with slow consumers (MiB)", &rss_peaks.iter().map(|b| b / 1048576.0).collect::<Vec<_>>()));
    Ok(())
}
