//! Demo mode: the Discord simulator and the server in one process, no token or setup needed.

use crate::config::{Config, Overrides, Secret};
use crate::server::Server;
use crate::sim::{SimConfig, Simulator};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Members in the synthetic guild.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Random presence changes per second.
    #[arg(long, default_value_t = 3.0)]
    pub churn: f64,
    /// HTTP/WebSocket port of the server.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Shards (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Data directory (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the synthetic guild.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Run this many cluster nodes (ports `--port` upwards) sharing one gateway session
    /// through a `nats-server` started for the demo.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub cluster: Option<u16>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    #[arg(long, default_value_t = 3.0)]
    pub churn: f64,
    /// Gateway port.
    #[arg(long, default_value_t = 8100)]
    pub gateway_port: u16,
    /// REST, CDN and control API port.
    #[arg(long, default_value_t = 8101)]
    pub http_port: u16,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// The server configuration that talks to a running simulator.
pub fn config_for(sim: &Simulator, data_dir: &std::path::Path, port: u16, shards: usize) -> Result<Config, String> {
    config_with(sim, data_dir, port, shards, "")
}

/// [`config_for`] for a cluster node named `node_id` on the NATS server at `nats_url`.
pub fn cluster_config_for(sim: &Simulator, data_dir: &std::path::Path, port: u16, shards: usize, nats_url: &str, node_id: &str) -> Result<Config, String> {
    config_with(sim, data_dir, port, shards, &format!("[cluster]\nnats_url = '{nats_url}'\nnode_id = '{node_id}'\n"))
}

fn config_with(sim: &Simulator, data_dir: &std::path::Path, port: u16, shards: usize, extra: &str) -> Result<Config, String> {
    let toml = format!(
        "base_guild_id = '{guild}'\napplication_id = '{app}'\n[server]\nhost = '127.0.0.1'\nport = {port}\nshards = {shards}\n\
         [storage]\ndir = {dir:?}\n[discord]\ngateway_url = '{gw}'\napi_url = '{api}'\ncdn_url = '{cdn}'\n\
         [card.image_hosts]\n'media.discordapp.net' = '{cdn}'\n'i.scdn.co' = '{cdn}'\n'i.ytimg.com' = '{cdn}'\n'static-cdn.jtvnw.net' = '{cdn}'\n{extra}",
        guild = sim.guild_id(),
        app = sim.application_id(),
        dir = data_dir.display().to_string(),
        gw = sim.gateway_url(),
        api = sim.api_url(),
        cdn = sim.cdn_url(),
    );
    let mut config = Config::from_toml(&toml, Secret::new(sim.token()), &Overrides::default()).map_err(|e| e.to_string())?;
    config.kv_secret = demo_kv_secret(data_dir)?;
    Ok(config)
}

/// The storage token secret of a demo data directory: generated on first use and kept in
/// `<dir>/demo-kv-secret` (owner-only), so tokens stay valid across restarts on the same data.
/// Only demo mode and tests use this; `serve` takes `KV_TOKEN_ENCRYPTION_SECRET`.
pub fn demo_kv_secret(data_dir: &std::path::Path) -> Result<Secret, String> {
    let path = data_dir.join("demo-kv-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(secret) = crate::config::parse_kv_secret(&text) {
            return Ok(secret);
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let secret = crate::storage::token::generate_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Secret::new(secret))
}

pub fn run_demo(args: DemoArgs) -> Result<(), String> {
    if let Some(nodes) = args.cluster {
        return run_cluster_demo(args.clone(), nodes as usize);
    }
    let sim = Simulator::start(SimConfig { members: args.members, seed: args.seed, churn_per_sec: args.churn, ..SimConfig::default() })
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let dir = demo_dir(&args);
    let config = config_for(&sim, &dir, args.port, args.shards)?;
    let server = Server::start(config).map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{}", server.port());
    let ids: Vec<String> = sim.members().iter().filter(|(m, p)| !m.user.bot && p.is_some()).take(3).map(|(m, _)| m.user.id.to_string()).collect();
    println!("\nlantern demo: {} simulated members, {} presence changes/s\n", args.members, args.churn);
    println!("  page       {base}/   (open in a browser: live state, user lookup, card configurator)");
    println!("  info       {base}/   (JSON for curl and API clients)");
    println!("  health     {base}/health");
    for id in &ids {
        println!("  user       {base}/api/v1/users/{id}");
    }
    println!("  bulk       {base}/api/v1/users?user_ids={}", ids.join(","));
    println!("  websocket  ws://127.0.0.1:{}/socket", server.port());
    println!("  card       {base}/api/v1/users/{}?svg=1", ids.first().map(String::as_str).unwrap_or("<id>"));
    println!("  simulator  {}/_sim/  (control API: POST presence, members, faults)", sim.api_url());
    println!("  data       {}\n\nCtrl-C stops.", dir.display());
    server.run_until_signal().map_err(|e| e.to_string())?;
    drop(sim);
    Ok(())
}

fn demo_dir(args: &DemoArgs) -> PathBuf {
    match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("lantern-demo-{}", std::process::id())),
    }
}

/// A `nats-server -js` for the demo, on loopback with its store in the demo's directory;
/// stopped when dropped (and by the kernel if the demo dies first).
struct NatsServer {
    child: std::process::Child,
    port: u16,
}

impl NatsServer {
    fn start(store: &std::path::Path) -> Result<NatsServer, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bin = std::env::split_paths(&path).map(|d| d.join("nats-server")).find(|p| p.is_file()).ok_or(
            "`demo --cluster` needs nats-server (2.9 or later) on PATH: install the Debian package nats-server (apt install nats-server)",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| format!("cannot find a free port: {e}"))?.port();
        std::fs::create_dir_all(store).map_err(|e| format!("cannot create {}: {e}", store.display()))?;
        let mut command = std::process::Command::new(&bin);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut nats = NatsServer { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nats.child.try_wait() {
                return Err(format!("nats-server exited at start-up ({status})"));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("nats-server did not listen on port {port} within 10 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `demo --cluster N`: the simulator, a NATS server and N cluster nodes in this process.
fn run_cluster_demo(args: DemoArgs, nodes: usize) -> Result<(), String> {
    let dir = demo_dir(&args);
    let nats = NatsServer::start(&dir.join("nats"))?;
    let sim = Simulator::start(SimConfig { members: args.members, seed: args.seed, churn_per_sec: args.churn, ..SimConfig::default() })
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let mut servers = Vec::with_capacity(nodes);
    for i in 1..=nodes {
        let port = if args.port == 0 { 0 } else { args.port.checked_add(i as u16 - 1).ok_or("--port is too high for the cluster")? };
        let name = format!("node-{i}");
        let config = cluster_config_for(&sim, &dir.join(&name), port, args.shards, &nats.url(), &name)?;
        servers.push((name, Server::start(config).map_err(|e| e.to_string())?));
    }
    let ids: Vec<String> = sim.members().iter().filter(|(m, p)| !m.user.bot && p.is_some()).take(1).map(|(m, _)| m.user.id.to_string()).collect();
    let id = ids.first().map(String::as_str).unwrap_or("<id>");
    println!("\nlantern demo: a {nodes}-node cluster, {} simulated members, {} presence changes/s\n", args.members, args.churn);
    for (name, server) in &servers {
        let base = format!("http://127.0.0.1:{}", server.port());
        println!("  {name:<10} {base}/   health {base}/health   websocket ws://127.0.0.1:{}/socket   user {base}/api/v1/users/{id}", server.port());
    }
    println!("  nats       {}", nats.url());
    println!("  simulator  {}/_sim/  (control API: POST presence, members, faults)", sim.api_url());
    println!("  data       {}\n\nOne node leads (its /health says \"role\":\"leader\"). Ctrl-C stops everything.", dir.display());
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]).map_err(|e| e.to_string())?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "shutting down");
    }
    // Followers first, so that the gateway is handed over at most once.
    servers.sort_by_key(|(_, s)| s.is_leader());
    for (_, server) in servers {
        server.shutdown();
    }
    drop(sim);
    drop(nats);
    Ok(())
}

pub fn run_sim(args: SimArgs) -> Result<(), String> {
    crate::sim::run_cli(SimConfig {
        members: args.members,
        seed: args.seed,
        churn_per_sec: args.churn,
        gateway_port: args.gateway_port,
        http_port: args.http_port,
        ..SimConfig::default()
    })
    .map_err(|e| e.to_string())
}
