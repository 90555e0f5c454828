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
    let toml = format!(
        "base_guild_id = '{guild}'\napplication_id = '{app}'\n[server]\nhost = '127.0.0.1'\nport = {port}\nshards = {shards}\n\
         [storage]\ndir = {dir:?}\n[discord]\ngateway_url = '{gw}'\napi_url = '{api}'\ncdn_url = '{cdn}'\n\
         [card.image_hosts]\n'media.discordapp.net' = '{cdn}'\n'i.scdn.co' = '{cdn}'\n'i.ytimg.com' = '{cdn}'\n'static-cdn.jtvnw.net' = '{cdn}'\n",
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
    let sim = Simulator::start(SimConfig { members: args.members, seed: args.seed, churn_per_sec: args.churn, ..SimConfig::default() })
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let dir = match args.data_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("lantern-demo-{}", std::process::id())),
    };
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
