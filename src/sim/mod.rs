//! The Discord simulator: a fake gateway, REST API and CDN, faithful enough that twilight-gateway
//! and twilight-http cannot tell it from Discord, serving a synthetic guild.
//!
//! [`Simulator::start`] binds two listeners on 127.0.0.1 (gateway WebSocket, and HTTP for REST,
//! CDN and the `/_sim` control API) and serves them from its own OS thread with a tokio
//! current-thread runtime. The handle controls the world in-process (presences, members, raw
//! dispatches, faults) and reads back counters and recorded requests; dropping it shuts the
//! simulator down.
//!
//! The world holds the generated members plus the bot's own member (user id = application id),
//! so `member_count` is `cfg.members + 1`. Each gateway session keeps its own sequence and a
//! bounded log of its dispatches, which makes RESUME lossless as on Discord.

mod gateway;
mod generator;
mod images;
mod rest;
mod world;

pub use generator::{generate_guild, generate_guild_at, presence_corpus};
pub use images::png_for;

use crate::discord::{Member, Presence, Snowflake};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use world::World;

/// The privileged intents: GUILD_MEMBERS, GUILD_PRESENCES and MESSAGE_CONTENT.
pub const PRIVILEGED_INTENTS: u64 = (1 << 1) | (1 << 8) | (1 << 15);

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Generated members (the bot's member comes on top).
    pub members: usize,
    pub seed: u64,
    pub guild_id: Snowflake,
    pub application_id: Snowflake,
    /// The bot token expected from clients, without the `Bot ` prefix.
    pub token: String,
    /// The interval announced in HELLO.
    pub heartbeat_interval_ms: u64,
    /// Random presence changes per second; 0 disables churn.
    pub churn_per_sec: f64,
    /// Privileged intents enabled for the application in the developer portal, of
    /// [`PRIVILEGED_INTENTS`]; an IDENTIFY asking for another one is closed with 4014.
    pub privileged_intents: u64,
    /// 0 picks an ephemeral port.
    pub gateway_port: u16,
    /// 0 picks an ephemeral port.
    pub http_port: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            members: 1000,
            seed: 0x1a_4e_72_5e,
            guild_id: Snowflake(1378135304107458560),
            application_id: Snowflake(1378135304107458561),
            token: "sim-token".into(),
            heartbeat_interval_ms: 41250,
            churn_per_sec: 0.0,
            privileged_intents: PRIVILEGED_INTENTS,
            gateway_port: 0,
            http_port: 0,
        }
    }
}

/// A fault applied to every live gateway connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the TCP connections without a close frame; sessions stay resumable.
    DropConnections,
    /// `true`: stop answering heartbeats (zombie connection); `false`: answer again.
    StopHeartbeatAcks(bool),
    /// Send a close frame with this code. After 4007 (invalid seq), 4009 (session timed out)
    /// and the fatal codes the sessions are gone, as on Discord: a RESUME gets op 9 `false`.
    Close(u16),
    /// Send op 7 RECONNECT.
    Reconnect,
    /// Send op 9 INVALID_SESSION; a non-resumable one also discards the session.
    InvalidSession { resumable: bool },
}

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Successful IDENTIFYs.
    pub identifies: u64,
    /// Successful RESUMEs.
    pub resumes: u64,
    /// Op 1 heartbeats received.
    pub heartbeats: u64,
    pub heartbeat_acks_sent: u64,
    /// Op 8 REQUEST_GUILD_MEMBERS received.
    pub member_requests: u64,
    /// Op 0 frames written to sockets (replays included).
    pub dispatches_sent: u64,
    /// Connections open now.
    pub live_connections: u64,
    /// Sessions kept (connected or resumable).
    pub sessions: u64,
}

/// One REST call as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path with query, e.g. `/api/v10/interactions/1/tok/callback?with_response=false`.
    pub path: String,
    /// The body as text (lossy UTF-8; multipart bodies verbatim).
    pub body: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub identifies: AtomicU64,
    pub resumes: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_acks_sent: AtomicU64,
    pub member_requests: AtomicU64,
    pub dispatches_sent: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// State shared by the handle and the simulator's tasks.
pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub gateway_port: u16,
    pub http_port: u16,
    pub world: Mutex<World>,
    pub counters: Counters,
    pub stop_acks: AtomicBool,
    pub cdn_delay_ms: AtomicU64,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub cdn_hits: Mutex<Vec<String>>,
    /// Called with each dispatch frame just before it is written to a gateway connection.
    pub on_dispatch: OnceLock<DispatchObserver>,
}

/// See [`Simulator::observe_dispatches`].
pub(crate) type DispatchObserver = Box<dyn Fn(&str) + Send + Sync>;

impl Shared {
    /// Locks the world; a panic in another holder must not wedge the simulator.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn gateway_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.gateway_port)
    }

    pub fn stats(&self) -> SimStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (live, sessions) = self.world().live_and_sessions();
        SimStats {
            connections: get(&c.connections),
            identifies: get(&c.identifies),
            resumes: get(&c.resumes),
            heartbeats: get(&c.heartbeats),
            heartbeat_acks_sent: get(&c.heartbeat_acks_sent),
            member_requests: get(&c.member_requests),
            dispatches_sent: get(&c.dispatches_sent),
            live_connections: live as u64,
            sessions: sessions as u64,
        }
    }

    pub fn fault(&self, f: Fault) {
        match f {
            Fault::StopHeartbeatAcks(stop) => self.stop_acks.store(stop, Ordering::Relaxed),
            other => self.world().fault(other),
        }
    }
}

/// A running simulator. Dropping it stops the thread and closes every socket.
pub struct Simulator {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn bind(port: u16) -> std::io::Result<StdListener> {
    let l = StdListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Simulator {
    /// Binds both listeners, generates the guild and starts serving. Returns once both
    /// listeners accept connections.
    pub fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        let gw = bind(cfg.gateway_port)?;
        let http = bind(cfg.http_port)?;
        let gateway_port = gw.local_addr()?.port();
        let http_port = http.local_addr()?.port();
        let world = World::new(&cfg, gateway_port);
        let shared = Arc::new(Shared {
            cfg,
            gateway_port,
            http_port,
            world: Mutex::new(world),
            counters: Counters::default(),
            stop_acks: AtomicBool::new(false),
            cdn_delay_ms: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            cdn_hits: Mutex::new(Vec::new()),
            on_dispatch: OnceLock::new(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lantern-sim".into())
            .spawn(move || {
                rt.block_on(async move {
                    let (Ok(gw), Ok(http)) = (
                        tokio::net::TcpListener::from_std(gw),
                        tokio::net::TcpListener::from_std(http),
                    ) else {
                        tracing::error!("simulator: cannot register listeners with tokio");
                        return;
                    };
                    tokio::spawn(gateway::serve(gw, sh.clone()));
                    tokio::spawn(rest::serve(http, sh.clone()));
                    tokio::spawn(world::housekeeping(sh.clone()));
                    if sh.cfg.churn_per_sec > 0.0 {
                        tokio::spawn(world::churn(sh.clone()));
                    }
                    let _ = rx.await;
                });
                // Dropping the runtime cancels every task, which closes their sockets.
                drop(rt);
            })?;
        Ok(Simulator {
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `ws://127.0.0.1:PORT`, no trailing slash (twilight appends `/?v=10&encoding=json`).
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url()
    }

    /// `http://127.0.0.1:PORT`; REST lives under `/api/v10`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.http_port)
    }

    /// `http://127.0.0.1:PORT/cdn`.
    pub fn cdn_url(&self) -> String {
        format!("http://127.0.0.1:{}/cdn", self.shared.http_port)
    }

    pub fn guild_id(&self) -> Snowflake {
        self.shared.cfg.guild_id
    }

    pub fn token(&self) -> String {
        self.shared.cfg.token.clone()
    }

    pub fn application_id(&self) -> Snowflake {
        self.shared.cfg.application_id
    }

    /// Every member (the bot's included) with its presence, ordered by user id.
    pub fn members(&self) -> Vec<(Member, Option<Presence>)> {
        self.shared.world().members()
    }

    pub fn member(&self, id: Snowflake) -> Option<(Member, Option<Presence>)> {
        self.shared.world().member(id)
    }

    /// Calls `f` on the simulator's thread with every dispatch frame just before it is written
    /// to a gateway connection: the moment an event leaves "Discord", which the load harness
    /// measures latency from. One observer per simulator; a second call is refused (`false`).
    pub fn observe_dispatches(&self, f: impl Fn(&str) + Send + Sync + 'static) -> bool {
        self.shared.on_dispatch.set(Box::new(f)).is_ok()
    }

    /// Stores the presence (an offline one clears it) and dispatches PRESENCE_UPDATE with the
    /// guild id filled in. A presence for a non-member is dispatched but not stored.
    pub fn set_presence(&self, p: Presence) {
        self.shared.world().set_presence(p);
    }

    /// Adds a member: GUILD_MEMBER_ADD, then PRESENCE_UPDATE when a presence is given.
    pub fn add_member(&self, m: Member, p: Option<Presence>) {
        self.shared.world().add_member(m, p);
    }

    /// Replaces a member: GUILD_MEMBER_UPDATE.
    pub fn update_member(&self, m: Member) {
        self.shared.world().update_member(m);
    }

    /// Removes a member: GUILD_MEMBER_REMOVE.
    pub fn remove_member(&self, id: Snowflake) {
        self.shared.world().remove_member(id);
    }

    /// Sends any dispatch to every session, as is.
    pub fn dispatch(&self, event_name: &str, d: serde_json::Value) {
        self.shared
            .world()
            .broadcast(event_name, &d.to_string(), world::Scope::Any);
    }

    pub fn fault(&self, f: Fault) {
        self.shared.fault(f);
    }

    /// Applies `f` and removes the members `gone`, under one lock of the world: the removals
    /// happen while the clients are away. After a non-resumable fault no session hears of them,
    /// so a client learns them only from the member list of its next IDENTIFY; after a
    /// resumable one they are replayed on RESUME.
    pub fn fault_removing(&self, f: Fault, gone: &[Snowflake]) {
        let mut world = self.shared.world();
        match f {
            Fault::StopHeartbeatAcks(stop) => self.shared.stop_acks.store(stop, Ordering::Relaxed),
            other => world.fault(other),
        }
        for id in gone {
            world.remove_member(*id);
        }
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every CDN response waits this long first.
    pub fn set_cdn_delay(&self, d: Duration) {
        self.shared
            .cdn_delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Paths requested from the CDN (below the `/cdn` prefix), in order.
    pub fn cdn_hits(&self) -> Vec<String> {
        self.shared
            .cdn_hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Polls `f` on the stats every few milliseconds until it holds or `deadline` passes.
    pub fn wait_until(&self, deadline: Duration, f: impl Fn(&SimStats) -> bool) -> bool {
        let end = Instant::now() + deadline;
        loop {
            if f(&self.stats()) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `lantern sim`: starts the simulator, prints its URLs and serves until Ctrl-C (SIGINT/SIGTERM).
pub fn run_cli(cfg: SimConfig) -> std::io::Result<()> {
    let sim = Simulator::start(cfg)?;
    println!("gateway  {}", sim.gateway_url());
    println!("api      {}/api/v10", sim.api_url());
    println!("cdn      {}", sim.cdn_url());
    println!("control  {}/_sim/members", sim.api_url());
    println!(
        "guild    {}  application {}  token {}",
        sim.guild_id(),
        sim.application_id(),
        sim.token()
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
