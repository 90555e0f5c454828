//! Configuration: `config.toml`, then `.env` and the environment, then command-line flags,
//! merged into one validated [`Config`]. Every problem names the key and what is wrong.

pub mod cluster;
pub use cluster::ClusterConfig;

use crate::discord::Snowflake;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret value: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The bot's application id (needed for command registration).
    pub application_id: Option<Snowflake>,
    /// The guild whose members are monitored.
    pub base_guild_id: Snowflake,
    /// Largest number of ids one bulk request may ask for.
    pub max_bulk_get_users_size: usize,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub discord: DiscordConfig,
    pub log: LogConfig,
    /// `KV_TOKEN_ENCRYPTION_SECRET`: 64 hex characters, the AES-256 key of storage tokens.
    pub kv_secret: Secret,
    pub card: CardConfig,
    pub deploy: DeployConfig,
    pub backup: BackupConfig,
    /// `[cluster]`: several nodes sharing the gateway through NATS JetStream; `None` runs alone.
    pub cluster: Option<ClusterConfig>,
}

/// Backups (`lantern backup`, and the optional schedule).
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where scheduled backups go (and `lantern backup` without `--out`).
    pub dir: PathBuf,
    /// The server's local control socket (`lantern backup` talks to it).
    pub socket: PathBuf,
    /// A backup this often; `None`: no schedule.
    pub interval: Option<Duration>,
    /// Scheduled backups kept in `dir` (older ones are deleted).
    pub keep: usize,
    /// The bot posts each scheduled archive to this channel as an attachment.
    pub discord_channel: Option<Snowflake>,
    /// Archives larger than this are not posted (Discord's attachment limit).
    pub discord_max_bytes: u64,
}

/// Discord's attachment limit for bots in a guild without boosts: 10 MiB.
pub const DISCORD_ATTACHMENT_LIMIT: u64 = 10 << 20;

/// The GitHub push webhook, `POST /api/v1/github_auto_deploy` (off by default).
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Whether the route exists (404 otherwise).
    pub enabled: bool,
    /// `GITHUB_WEBHOOK_SECRET`: the HMAC-SHA256 key GitHub signs each delivery with. Required
    /// when enabled.
    pub secret: Option<Secret>,
    /// The program and its arguments, run as they are (no shell), in `dir`.
    pub command: Vec<String>,
    /// Working directory of the command (`None`: the server's).
    pub dir: Option<PathBuf>,
    /// Only pushes to this ref deploy (`refs/heads/main`); empty: any ref.
    pub branch: String,
    /// A push deploys when one of its commits adds, removes or modifies a path starting with
    /// one of these.
    pub paths: Vec<String>,
    /// Largest delivery accepted, in bytes.
    pub max_body_bytes: usize,
}

/// `[deploy] paths` by default: what a build of the server reads.
pub const DEFAULT_DEPLOY_PATHS: [&str; 5] = ["src/", "assets/", "Cargo.toml", "Cargo.lock", "config.toml"];
/// The name of the environment variable that holds the webhook's secret.
pub const WEBHOOK_SECRET_ENV: &str = "GITHUB_WEBHOOK_SECRET";

/// The profile card (`GET /api/v1/users/:id?svg=1`): caching and image fetching.
#[derive(Debug, Clone)]
pub struct CardConfig {
    /// `Cache-Control: public, max-age=N` on cards.
    pub max_age: Duration,
    /// Cards that show a clock (elapsed time, last seen) are re-rendered at most this often.
    pub clock_step: Duration,
    /// Each image fetch (connect + response + body) gives up after this long.
    pub fetch_timeout: Duration,
    /// Larger images are not embedded (the placeholder is).
    pub max_image_bytes: usize,
    /// Fetched images are reused for this long.
    pub image_ttl: Duration,
    /// Per shard: bytes of fetched images kept in memory.
    pub image_cache_bytes: usize,
    /// Per shard: bytes of rendered cards kept in memory.
    pub card_cache_bytes: usize,
    /// Allowlisted image host → the base URL it is fetched from (`https://host` unless remapped).
    pub image_hosts: Vec<(String, String)>,
    /// A colour emoji font the PNG draws Unicode emoji with (loaded on the first PNG); when the
    /// file is missing, emoji in PNGs show as missing-glyph boxes and a warning is logged.
    pub emoji_font: std::path::PathBuf,
}

/// Where Debian's `fonts-noto-color-emoji` installs Noto Color Emoji (SIL Open Font License).
pub const DEFAULT_EMOJI_FONT: &str = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf";

/// The only hosts card images are fetched from: Discord's CDN and media proxy, Spotify's covers,
/// and the stream previews of YouTube and Twitch.
pub const CARD_IMAGE_HOSTS: [&str; 5] = ["cdn.discordapp.com", "media.discordapp.net", "i.scdn.co", "i.ytimg.com", "static-cdn.jtvnw.net"];

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// Number of shards; already resolved (0 in the file means one per available core).
    pub shards: usize,
    /// Time given to in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Idle keep-alive connections are closed after this long.
    pub idle_timeout: Duration,
    /// Messages one shard's mailbox holds; a sender waits (as a task) while it is full.
    pub mailbox_capacity: usize,
    /// A request's headers must be complete this long after its first byte arrived, or the
    /// connection is answered 408 and closed. Idle time between requests is not counted.
    pub header_timeout: Duration,
    /// Most simultaneous connections (plain HTTP and WebSocket together) from one client IP
    /// address, over all shards.
    pub max_connections_per_ip: usize,
    pub socket: SocketConfig,
}

#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Sent in HELLO; clients heartbeat on this interval.
    pub heartbeat_interval: Duration,
    /// Extra time past 1.5 × the interval before a silent connection is dropped.
    pub heartbeat_grace: Duration,
    /// Time a new connection has to send INIT.
    pub init_timeout: Duration,
    /// Time a closing connection gets to flush its last frames and finish the close handshake.
    pub close_timeout: Duration,
    /// Largest inbound message (and frame) in bytes.
    pub max_frame_bytes: usize,
    /// Most users one connection may subscribe to (All counts as one).
    pub max_subscriptions: usize,
    /// Most simultaneous connections from one client IP address (over all shards).
    pub max_connections_per_ip: usize,
    /// Bytes of frames a connection may have queued, unsent, before it is disconnected as a
    /// slow consumer. A frame larger than this is never queued, so it must exceed the largest
    /// user object (the storage bound plus the presence).
    pub max_queued_bytes: usize,
    /// The kernel's send buffer of each WebSocket (`SO_SNDBUF`; 0: the kernel's own sizing).
    /// Bounds what a consumer that stopped reading costs: once the buffer is full its frames
    /// wait in its queue (references, no writes) until it reads or is cut off.
    pub send_buffer_bytes: usize,
    /// Whether permessage-deflate (RFC 7692) is negotiated with clients that offer it.
    pub permessage_deflate: bool,
    /// A Lanyard-dialect connection silent for this long is closed (Lanyard's 60 s).
    pub lanyard_idle_timeout: Duration,
}

impl SocketConfig {
    /// A connection that has not heartbeated for this long is dropped: 1.5 × the interval
    /// plus the grace period.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_interval * 3 / 2 + self.heartbeat_grace
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Directory holding one redb file per shard.
    pub dir: PathBuf,
    /// The most one user's key-value map may take as served JSON (`storage` in the user
    /// object, `GET .../storage`); writes that would grow it past this are refused.
    pub max_user_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub token: Secret,
    /// Gateway base URL (`wss://gateway.discord.gg`, or `ws://` for a loopback simulator).
    pub gateway_url: String,
    /// Origin whose `/api/v10/...` speaks Discord REST.
    pub api_url: String,
    /// CDN origin for images.
    pub cdn_url: String,
    /// Whether to ask for the member list with op 8 when GUILD_CREATE's list is partial.
    pub request_members: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `lantern=debug`.
    pub level: String,
}

/// Command-line overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub port: Option<u16>,
    pub shards: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

pub const DEFAULT_GATEWAY_URL: &str = "wss://gateway.discord.gg";
pub const DEFAULT_API_URL: &str = "https://discord.com";
pub const DEFAULT_CDN_URL: &str = "https://cdn.discordapp.com";

// The file's shape. Unknown keys are refused so that a typo does not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    application_id: Option<String>,
    base_guild_id: Option<String>,
    max_bulk_get_users_size: Option<usize>,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    discord: FileDiscord,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    card: FileCard,
    #[serde(default)]
    deploy: FileDeploy,
    #[serde(default)]
    backup: FileBackup,
    cluster: Option<cluster::FileCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackup {
    dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    interval_secs: Option<u64>,
    keep: Option<usize>,
    discord_channel: Option<String>,
    discord_max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeploy {
    enabled: Option<bool>,
    command: Option<Vec<String>>,
    dir: Option<PathBuf>,
    branch: Option<String>,
    paths: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCard {
    max_age_secs: Option<u64>,
    clock_step_secs: Option<u64>,
    fetch_timeout_ms: Option<u64>,
    max_image_bytes: Option<usize>,
    image_ttl_secs: Option<u64>,
    image_cache_mib: Option<usize>,
    card_cache_mib: Option<usize>,
    emoji_font: Option<String>,
    #[serde(default)]
    image_hosts: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    host: Option<String>,
    port: Option<u16>,
    shards: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    mailbox_capacity: Option<usize>,
    header_timeout_ms: Option<u64>,
    max_connections_per_ip: Option<usize>,
    #[serde(default)]
    socket: FileSocket,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSocket {
    heartbeat_interval: Option<u64>,
    heartbeat_grace: Option<u64>,
    init_timeout: Option<u64>,
    close_timeout: Option<u64>,
    max_frame_bytes: Option<usize>,
    max_subscriptions: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_queued_bytes: Option<usize>,
    send_buffer_bytes: Option<usize>,
    permessage_deflate: Option<bool>,
    lanyard_idle_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    dir: Option<PathBuf>,
    max_user_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDiscord {
    gateway_url: Option<String>,
    api_url: Option<String>,
    cdn_url: Option<String>,
    request_members: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<String>,
    level: Option<String>,
}

impl Config {
    /// Reads `.env` (if present), the config file and the environment, applies the overrides
    /// and validates the result.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_with(path, overrides, true)
    }

    /// Like [`Config::load`]; with `require_kv_secret` false (commands that never touch
    /// storage), a missing `KV_TOKEN_ENCRYPTION_SECRET` is replaced by a random one.
    pub fn load_with(path: &Path, overrides: &Overrides, require_kv_secret: bool) -> Result<Config, ConfigError> {
        // A missing .env is normal; a broken one is reported by the variables it fails to set.
        let _ = dotenvy::dotenv();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let file: FileConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let token = std::env::var("DISCORD_BOT_TOKEN").ok().filter(|t| !t.trim().is_empty());
        let token = token.ok_or_else(|| invalid("DISCORD_BOT_TOKEN", "not set (put it in the environment or in .env)"))?;
        let mut config = Config::from_parts(file, Secret::new(token.trim()), overrides)?;
        match std::env::var(SECRET_ENV) {
            Ok(v) => config.kv_secret = parse_kv_secret(&v)?,
            Err(_) if !require_kv_secret => {}
            Err(_) => {
                return Err(invalid(
                    "KV_TOKEN_ENCRYPTION_SECRET",
                    "not set (put 64 hex characters, a 256-bit key, in the environment or in .env; e.g. `openssl rand -hex 32`)",
                ))
            }
        }
        config.deploy.secret = std::env::var(WEBHOOK_SECRET_ENV).ok().filter(|s| !s.is_empty()).map(Secret::new);
        if config.deploy.enabled && config.deploy.secret.is_none() {
            return Err(invalid(WEBHOOK_SECRET_ENV, "not set, and [deploy] enabled = true needs it to verify deliveries"));
        }
        Ok(config)
    }

    /// Parses a config from TOML text with the given token (tests and demo). The storage
    /// token secret is a fresh random one: set [`Config::kv_secret`] to keep tokens readable
    /// across restarts.
    pub fn from_toml(text: &str, token: Secret, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::from("<inline>"), message: e.to_string() })?;
        Config::from_parts(file, token, overrides)
    }

    fn from_parts(file: FileConfig, token: Secret, overrides: &Overrides) -> Result<Config, ConfigError> {
        let base = file.base_guild_id.ok_or_else(|| invalid("base_guild_id", "missing; set it to the id of the guild to monitor"))?;
        let base_guild_id = parse_id("base_guild_id", &base)?;
        let application_id = match file.application_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(parse_id("application_id", v)?),
        };
        let max_bulk = file.max_bulk_get_users_size.unwrap_or(50);
        if max_bulk == 0 {
            return Err(invalid("max_bulk_get_users_size", "must be at least 1"));
        }
        let host = match file.server.host {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(h) => h.parse().map_err(|_| invalid("server.host", format!("{h:?} is not an IP address")))?,
        };
        let port = overrides.port.or(file.server.port).unwrap_or(8000);
        let shards = match overrides.shards.or(file.server.shards).unwrap_or(0) {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n if n > 256 => return Err(invalid("server.shards", format!("{n} is more than the supported 256"))),
            n => n,
        };
        let socket = socket_config(&file.server.socket)?;
        let cluster = match file.cluster {
            None => None,
            Some(c) => Some(ClusterConfig::from_file(c).map_err(|(key, message)| invalid(key, message))?),
        };
        let header_timeout = match file.server.header_timeout_ms.unwrap_or(5_000) {
            0 => return Err(invalid("server.header_timeout_ms", "must be a positive number of milliseconds")),
            n => Duration::from_millis(n),
        };
        let max_connections_per_ip = match file.server.max_connections_per_ip.unwrap_or(512) {
            0 => return Err(invalid("server.max_connections_per_ip", "must be at least 1")),
            n => n,
        };
        let gateway_url = file.discord.gateway_url.unwrap_or_else(|| DEFAULT_GATEWAY_URL.to_owned());
        if !(gateway_url.starts_with("ws://") || gateway_url.starts_with("wss://")) {
            return Err(invalid("discord.gateway_url", format!("{gateway_url:?} must start with ws:// or wss://")));
        }
        let api_url = file.discord.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        check_http_url("discord.api_url", &api_url)?;
        let cdn_url = file.discord.cdn_url.unwrap_or_else(|| DEFAULT_CDN_URL.to_owned());
        check_http_url("discord.cdn_url", &cdn_url)?;
        let format = match file.log.format.as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("log.format", format!("{other:?} is not one of \"human\", \"json\""))),
        };
        if token.expose().is_empty() {
            return Err(invalid("DISCORD_BOT_TOKEN", "is empty"));
        }
        let card = card_config(file.card, &cdn_url)?;
        let deploy = deploy_config(file.deploy)?;
        let storage_dir = file.storage.dir.clone().unwrap_or_else(|| PathBuf::from("shards"));
        let backup = BackupConfig {
            dir: file.backup.dir.unwrap_or_else(|| PathBuf::from("backups")),
            socket: file.backup.socket.unwrap_or_else(|| storage_dir.join("control.sock")),
            interval: file.backup.interval_secs.filter(|&s| s > 0).map(Duration::from_secs),
            keep: at_least("backup.keep", file.backup.keep, 7, 1)?,
            discord_channel: match file.backup.discord_channel.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => Some(parse_id("backup.discord_channel", v)?),
            },
            discord_max_bytes: file.backup.discord_max_bytes.unwrap_or(DISCORD_ATTACHMENT_LIMIT),
        };
        let max_user_bytes = file.storage.max_user_bytes.unwrap_or(DEFAULT_MAX_USER_BYTES);
        if max_user_bytes < 1024 {
            return Err(invalid("storage.max_user_bytes", "must be at least 1024"));
        }
        Ok(Config {
            application_id,
            base_guild_id,
            max_bulk_get_users_size: max_bulk,
            server: ServerConfig {
                host,
                port,
                shards,
                shutdown_grace: Duration::from_millis(file.server.shutdown_grace_ms.unwrap_or(5_000)),
                idle_timeout: Duration::from_millis(file.server.idle_timeout_ms.unwrap_or(60_000)),
                mailbox_capacity: at_least("server.mailbox_capacity", file.server.mailbox_capacity, 4096, 16)?,
                header_timeout,
                max_connections_per_ip,
                socket,
            },
            storage: StorageConfig { dir: file.storage.dir.unwrap_or_else(|| PathBuf::from("shards")), max_user_bytes },
            discord: DiscordConfig {
                token,
                gateway_url: gateway_url.trim_end_matches('/').to_owned(),
                api_url: api_url.trim_end_matches('/').to_owned(),
                cdn_url: cdn_url.trim_end_matches('/').to_owned(),
                request_members: file.discord.request_members.unwrap_or(true),
            },
            log: LogConfig { format, level: file.log.level.unwrap_or_else(|| "info".to_owned()) },
            kv_secret: Secret::new(generate_secret()),
            card,
            deploy,
            backup,
            cluster,
        })
    }
}

fn deploy_config(f: FileDeploy) -> Result<DeployConfig, ConfigError> {
    let enabled = f.enabled.unwrap_or(false);
    let command = f.command.unwrap_or_default();
    if enabled && command.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid("deploy.command", "must name a program when [deploy] enabled = true, e.g. [\"/usr/local/bin/lantern-deploy\"]"));
    }
    Ok(DeployConfig {
        enabled,
        secret: None,
        command,
        dir: f.dir,
        branch: f.branch.unwrap_or_else(|| "refs/heads/main".to_owned()),
        paths: f.paths.unwrap_or_else(|| DEFAULT_DEPLOY_PATHS.iter().map(|p| p.to_string()).collect()),
        max_body_bytes: at_least("deploy.max_body_bytes", f.max_body_bytes, 25 << 20, 1024)?,
    })
}

fn socket_config(f: &FileSocket) -> Result<SocketConfig, ConfigError> {
    fn positive(key: &'static str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
        match v.unwrap_or(default) {
            0 => Err(invalid(key, "must be a positive number of milliseconds")),
            n => Ok(n),
        }
    }
    let ms = Duration::from_millis;
    Ok(SocketConfig {
        heartbeat_interval: ms(positive("server.socket.heartbeat_interval", f.heartbeat_interval, 30_000)?),
        heartbeat_grace: ms(f.heartbeat_grace.unwrap_or(5_000)),
        init_timeout: ms(positive("server.socket.init_timeout", f.init_timeout, 5_000)?),
        close_timeout: ms(positive("server.socket.close_timeout", f.close_timeout, 5_000)?),
        max_frame_bytes: at_least("server.socket.max_frame_bytes", f.max_frame_bytes, 64 * 1024, 1024)?,
        max_subscriptions: at_least("server.socket.max_subscriptions", f.max_subscriptions, 1_000, 1)?,
        max_connections_per_ip: at_least("server.socket.max_connections_per_ip", f.max_connections_per_ip, 256, 1)?,
        max_queued_bytes: at_least("server.socket.max_queued_bytes", f.max_queued_bytes, DEFAULT_MAX_QUEUED_BYTES, 1024)?,
        send_buffer_bytes: match f.send_buffer_bytes.unwrap_or(DEFAULT_SEND_BUFFER_BYTES) {
            0 => 0,
            n if n < 4096 => return Err(invalid("server.socket.send_buffer_bytes", format!("{n} must be 0 (the kernel's sizing) or at least 4096"))),
            n => n,
        },
        permessage_deflate: f.permessage_deflate.unwrap_or(true),
        lanyard_idle_timeout: ms(positive("server.socket.lanyard_idle_timeout", f.lanyard_idle_timeout, 60_000)?),
    })
}

/// `v` (or `default`), refused below `min`.
fn at_least(key: &'static str, v: Option<usize>, default: usize, min: usize) -> Result<usize, ConfigError> {
    match v.unwrap_or(default) {
        n if n < min => Err(invalid(key, format!("must be at least {min}"))),
        n => Ok(n),
    }
}

/// Default of `storage.max_user_bytes`: the most one user's map may take as served JSON.
/// 512 pairs of a 255-character key and a 30,000-character ASCII value take about 15.5 MB.
pub const DEFAULT_MAX_USER_BYTES: usize = 16 << 20;

/// 17 MiB: the largest user object (16 MiB of storage plus its presence) fits, so every
/// subscriber can be sent every user.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 17 << 20;
/// `[server.socket] send_buffer_bytes`: 64 KiB (the kernel doubles it for its bookkeeping),
/// over 600 KB/s to a client 100 ms away, far above what presence needs.
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 64 << 10;

/// The name of the environment variable that holds the key for storage tokens.
pub const SECRET_ENV: &str = "KV_TOKEN_ENCRYPTION_SECRET";

/// A fresh random secret as 64 hex characters (demo mode and tests).
pub fn generate_secret() -> String {
    hex_lower(&rand::random::<[u8; 32]>())
}

/// `bytes` as lowercase hexadecimal.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Why a secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must be 64 hexadecimal characters (a 256-bit key), got {0} characters")]
    Length(usize),
    #[error("must be 64 hexadecimal characters (a 256-bit key); it contains a non-hex character")]
    NotHex,
}

/// Decodes a 64-hex-character secret into a 32-byte key.
pub fn parse_secret(hex: &str) -> Result<[u8; 32], SecretError> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return Err(SecretError::Length(hex.chars().count()));
    }
    let mut key = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(SecretError::NotHex)?;
        let lo = hex_val(pair[1]).ok_or(SecretError::NotHex)?;
        key[i] = hi << 4 | lo;
    }
    Ok(key)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Validates a `KV_TOKEN_ENCRYPTION_SECRET` value (never echoing it).
pub fn parse_kv_secret(value: &str) -> Result<Secret, ConfigError> {
    parse_secret(value).map_err(|e| invalid("KV_TOKEN_ENCRYPTION_SECRET", e.to_string()))?;
    Ok(Secret::new(value.trim()))
}

fn card_config(file: FileCard, cdn_url: &str) -> Result<CardConfig, ConfigError> {
    for host in file.image_hosts.keys() {
        if !CARD_IMAGE_HOSTS.contains(&host.as_str()) {
            return Err(invalid(
                "card.image_hosts",
                format!("{host:?} is not an allowlisted image host (one of {})", CARD_IMAGE_HOSTS.join(", ")),
            ));
        }
    }
    let mut image_hosts = Vec::new();
    for host in CARD_IMAGE_HOSTS {
        // Discord's CDN follows `[discord] cdn_url` unless remapped here.
        let default =
            if host == "cdn.discordapp.com" { cdn_url.trim_end_matches('/').to_owned() } else { format!("https://{host}") };
        let base = file.image_hosts.get(host).cloned().unwrap_or(default);
        check_http_url("card.image_hosts", &base)?;
        if base.parse::<http::Uri>().map(|u| u.host().is_none()).unwrap_or(true) {
            return Err(invalid("card.image_hosts", format!("{base:?} is not a URL")));
        }
        image_hosts.push((host.to_owned(), base.trim_end_matches('/').to_owned()));
    }
    let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
    let fetch_timeout = Duration::from_millis(file.fetch_timeout_ms.unwrap_or(2_000));
    if fetch_timeout.is_zero() {
        return Err(invalid("card.fetch_timeout_ms", "must be a positive number of milliseconds"));
    }
    let clock_step = secs(file.clock_step_secs, 10);
    if clock_step.is_zero() {
        return Err(invalid("card.clock_step_secs", "must be at least 1"));
    }
    Ok(CardConfig {
        max_age: secs(file.max_age_secs, 60),
        clock_step,
        fetch_timeout,
        max_image_bytes: file.max_image_bytes.unwrap_or(1 << 20),
        image_ttl: secs(file.image_ttl_secs, 600),
        image_cache_bytes: file.image_cache_mib.unwrap_or(16) << 20,
        card_cache_bytes: file.card_cache_mib.unwrap_or(16) << 20,
        image_hosts,
        emoji_font: file.emoji_font.unwrap_or_else(|| DEFAULT_EMOJI_FONT.to_owned()).into(),
    })
}

fn parse_id(key: &'static str, value: &str) -> Result<Snowflake, ConfigError> {
    Snowflake::parse_strict(value.trim())
        .ok_or_else(|| invalid(key, format!("{value:?} is not a Discord id (17-19 digits)")))
}

fn check_http_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(key, format!("{url:?} must start with http:// or https://")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Secret::new("t"), &Overrides::default())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml(
            "base_guild_id = '1378135304107458560'\n[server]\nport = 9000\n",
            Secret::new("t"),
            &Overrides { port: Some(1234), shards: Some(3) },
        )
        .unwrap();
        assert_eq!(c.server.port, 1234);
        assert_eq!(c.server.shards, 3);
        assert_eq!(c.storage.dir, PathBuf::from("shards"));
        assert_eq!(c.storage.max_user_bytes, 16 << 20);
        assert_eq!(c.discord.api_url, DEFAULT_API_URL);
        assert_eq!(format!("{:?}", c.discord.token), "Secret(<redacted>)");
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("").unwrap_err().to_string();
        assert!(e.contains("base_guild_id"), "{e}");
        let e = load("base_guild_id = 'abc'").unwrap_err().to_string();
        assert_eq!(e, "invalid setting `base_guild_id`: \"abc\" is not a Discord id (17-19 digits)");
        let e = load("base_guild_id = '1378135304107458560'\n[discord]\ngateway_url = 'http://x'").unwrap_err().to_string();
        assert!(e.starts_with("invalid setting `discord.gateway_url`"), "{e}");
        let e = load("base_guild_id = '1378135304107458560'\n[server]\nprot = 1").unwrap_err().to_string();
        assert!(e.contains("unknown field `prot`"), "{e}");
        let e = load("base_guild_id = '1378135304107458560'\n[storage]\nmax_user_bytes = 10").unwrap_err().to_string();
        assert_eq!(e, "invalid setting `storage.max_user_bytes`: must be at least 1024");
    }

    #[test]
    fn a_websocket_send_buffer_is_the_kernels_sizing_or_at_least_4096_bytes() {
        let socket = |line: &str| load(&format!("base_guild_id = '1378135304107458560'\n[server.socket]\n{line}"));
        assert_eq!(socket("").unwrap().server.socket.send_buffer_bytes, 65_536);
        assert_eq!(socket("send_buffer_bytes = 0").unwrap().server.socket.send_buffer_bytes, 0);
        assert_eq!(socket("send_buffer_bytes = 4096").unwrap().server.socket.send_buffer_bytes, 4096);
        let e = socket("send_buffer_bytes = 100").unwrap_err().to_string();
        assert_eq!(e, "invalid setting `server.socket.send_buffer_bytes`: 100 must be 0 (the kernel's sizing) or at least 4096");
    }

    #[test]
    fn kv_secret_must_be_64_hex_characters() {
        assert!(parse_kv_secret(&"0f".repeat(32)).is_ok());
        let e = parse_kv_secret("short-secret").unwrap_err().to_string();
        assert!(e.starts_with("invalid setting `KV_TOKEN_ENCRYPTION_SECRET`: must be 64 hexadecimal characters"), "{e}");
        assert!(!e.contains("short-secret"), "the value is not echoed: {e}");
        let e = parse_kv_secret(&"xy".repeat(32)).unwrap_err().to_string();
        assert!(e.contains("non-hex"), "{e}");
        assert_eq!(load("base_guild_id = '1378135304107458560'").unwrap().kv_secret.expose().len(), 64);
    }
}

#[cfg(test)]
mod sample {
    #[test]
    fn the_sample_config_is_valid() {
        let c = super::Config::from_toml(include_str!("../config.toml"), super::Secret::new("t"), &Default::default()).unwrap();
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.application_id, None);
        assert_eq!(c.storage.max_user_bytes, super::DEFAULT_MAX_USER_BYTES);
    }
}
