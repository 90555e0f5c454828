//! Cluster test harness: a real `nats-server` per test (free port, temp store, killed by a
//! guard) and in-process lantern nodes in cluster mode against the shared simulator.

use super::{wait_for, DEADLINE};
use lantern::cluster::ClusterConfig;
use lantern::server::Server;
use lantern::sim::Simulator;
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `nats-server -js` on loopback; killed and reaped when dropped.
pub struct Nats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    /// A configuration file passed with `-c`, if any.
    config: Option<PathBuf>,
}

/// `/health` of the node on `port`: its status and body; `(0, null)` if no answer came.
fn health(port: u16) -> (u16, Value) {
    match super::kv::try_request(port, "GET", "/health", &[], b"") {
        Some(r) => (r.status, r.json()),
        None => (0, Value::Null),
    }
}

/// SIGKILL, then reaped.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

pub fn nats_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("nats-server")).find(|p| p.is_file())
}

impl Nats {
    /// Starts a NATS server; fails the test, saying what to install, where the binary is
    /// missing.
    pub fn start() -> Nats {
        Nats::start_configured(None)
    }

    /// Starts a NATS server with `config` (nats-server's configuration syntax) beside the
    /// command-line settings, e.g. `max_payload: 4096`.
    pub fn start_with_config(config: &str) -> Nats {
        Nats::start_configured(Some(config))
    }

    pub fn start_configured(config: Option<&str>) -> Nats {
        let bin = nats_binary().expect("nats-server is not on PATH: install the nats-server package (Debian) to run the cluster tests");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let path = store.path().join("nats.conf");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut nats = Nats { child: None, port, store, config };
        nats.child = Some(nats.spawn(&bin));
        nats.wait_up();
        nats
    }

    fn spawn(&self, bin: &PathBuf) -> Child {
        let mut cmd = Command::new(bin);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts")
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn wait_up(&self) {
        assert!(
            wait_for(DEADLINE, || TcpStream::connect(("127.0.0.1", self.port)).is_ok()),
            "nats-server never listened on {}",
            self.port
        );
    }

    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let bin = nats_binary().unwrap();
        self.child = Some(self.spawn(&bin));
        self.wait_up();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cluster_config(nats: &str, node: &str) -> ClusterConfig {
    ClusterConfig {
        nats_url: nats.to_owned(),
        node_id: node.to_owned(),
        lease_bucket: "lantern_lease".into(),
        presence_bucket: "lantern_presence".into(),
        storage_bucket: "lantern_storage".into(),
        replicas: 1,
        lease_ttl: Duration::from_millis(900),
    }
}

/// Three `nats-server`s clustered over routes, JetStream on each (buckets with three replicas
/// survive the loss of any one server); each killed and reaped when dropped.
pub struct NatsCluster {
    pub servers: Vec<Nats>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let routes: Vec<u16> = (0..3).map(|_| free()).collect();
        let all_routes = routes.iter().map(|r| format!("nats-route://127.0.0.1:{r}")).collect::<Vec<_>>().join(", ");
        let servers = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                Nats::start_configured(Some(&format!(
                    "server_name: n{i}\ncluster {{\n  name: lantern\n  listen: 127.0.0.1:{route}\n  routes: [{all_routes}]\n}}\n"
                )))
            })
            .collect();
        NatsCluster { servers }
    }

    /// Every server's URL, comma-separated (how a node is given several).
    pub fn urls(&self) -> String {
        self.servers.iter().map(Nats::url).collect::<Vec<_>>().join(",")
    }
}

/// The token secret every node of a test cluster shares.
pub const CLUSTER_KV_SECRET: &str = "5f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";

/// One in-process node: its own data dir and port, the shared simulator and NATS.
pub struct Node {
    pub server: Option<Server>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn start(sim: &Simulator, nats: &str, node: &str) -> Node {
        Node::start_with(sim, cluster_config(nats, node))
    }

    /// A node with its own cluster settings (several NATS servers, replicas).
    pub fn start_with(sim: &Simulator, cluster: ClusterConfig) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut config = lantern::demo::config_for(sim, dir.path(), 0, 1).unwrap();
        config.cluster = Some(cluster);
        // Every node of a cluster opens the tokens the others sealed.
        config.kv_secret = lantern::config::parse_kv_secret(CLUSTER_KV_SECRET).unwrap();
        let server = Server::start(config).expect("node starts");
        Node { port: server.port(), server: Some(server), _dir: dir }
    }

    /// `/health`: its status and body; `(0, null)` if no answer came (a busy machine).
    pub fn health(&self) -> (u16, Value) {
        health(self.port)
    }

    pub fn cluster(&self) -> Value {
        self.health().1["cluster"].clone()
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}


/// A node as its own process: the real binary, with a config file in its own directory (kept
/// across a restart, with its data).
pub struct ProcessNode {
    child: Option<Child>,
    pub port: u16,
    pub node_id: String,
    config: PathBuf,
    /// Its log messages (JSON lines' `fields`), for a failing test to show.
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Starts the binary on `config`, keeping its log; returns once it is healthy.
fn spawn_node(config: &std::path::Path, logs: &std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> (Child, u16) {
    let (child, rx) = super::binary::spawn_logged(super::binary::command(config, Some(super::binary::SECRET)));
    let (lines, port) = super::binary::wait_listening(&rx);
    let keep = logs.clone();
    let push = move |line: Value| keep.lock().unwrap_or_else(|p| p.into_inner()).push(line["fields"].to_string());
    lines.into_iter().for_each(&push);
    std::thread::spawn(move || rx.iter().for_each(push));
    assert!(super::kv::wait_healthy(port), "the node never became healthy");
    (child, port)
}

impl ProcessNode {
    /// Starts `lantern serve` in cluster mode and returns once it is healthy.
    pub fn start(sim: &Simulator, nats: &str, node: &str) -> ProcessNode {
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("[cluster]\nnats_url = '{nats}'\nnode_id = '{node}'\n");
        let config = super::binary::write_config_sharded(sim, dir.path(), 2, &extra);
        let logs = Default::default();
        let (child, port) = spawn_node(&config, &logs);
        ProcessNode { child: Some(child), port, node_id: node.to_owned(), config, logs, _dir: dir }
    }

    /// SIGKILL: no gateway close, no lease release, nothing flushed.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts it again on its config and data, once healthy.
    pub fn restart(&mut self) {
        self.kill();
        let (child, port) = spawn_node(&self.config, &self.logs);
        self.child = Some(child);
        self.port = port;
    }

    pub fn health(&self) -> (u16, Value) {
        health(self.port)
    }

    pub fn cluster(&self) -> Value {
        self.health().1["cluster"].clone()
    }

    /// Its last `n` log messages, one a line.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let from = logs.len().saturating_sub(n);
        format!("--- {} ---\n{}", self.node_id, logs[from..].join("\n"))
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The gateway session the cluster's leader last stored for the next one (the key `gateway`
/// of the session bucket), read straight from NATS.
pub fn stored_session(nats: &str) -> Option<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    runtime.block_on(async {
        let client = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(nats)).await.ok()?.ok()?;
        let kv = async_nats::jetstream::new(client).get_key_value("lantern_lease_session").await.ok()?;
        let bytes = kv.get("gateway").await.ok()??;
        serde_json::from_slice(&bytes).ok()
    })
}

/// `/storage create token` for `user`, asked again while the node answers that storage is
/// unavailable (as a user would: a node that has just joined may not have opened the storage
/// bucket yet, and on a NATS cluster its replicas may still be electing a leader).
pub fn create_token_once_writable(sim: &Simulator, user: lantern::discord::Snowflake, deadline: Duration) -> String {
    let mut token = None;
    let answered = wait_for(deadline, || {
        let content = super::kv::slash(sim, user, &["create", "token"], &[]);
        if content == lantern::bot::interactions::UNAVAILABLE {
            return false;
        }
        token = Some(super::kv::token_from_reply(&content));
        true
    });
    assert!(answered, "storage stayed unavailable for {deadline:?}");
    token.unwrap()
}
