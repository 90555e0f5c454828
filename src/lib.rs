//! # lantern
//!
//! Live Discord presence (status, platforms, Spotify, games, custom status) over REST,
//! WebSocket and a profile card, served by a thread-per-core runtime.
//!
//! ## Layout
//!
//! - [`runtime`]: glommio executors pinned to cores ("shards"), the stable `shard_of(user)`
//!   placement, and the awaitable cross-shard mailboxes. Each shard owns a slice of users
//!   outright; other shards ask it through an explicit message.
//! - [`ingest`]: the twilight gateway connection on its own thread (tokio current-thread),
//!   decoding each dispatch once and routing it to the owner shard.
//! - [`discord`]: Discord's wire types, shared by ingest and the simulator.
//! - [`presence`]: per-shard member and presence state, the Lantern user object, and its
//!   serialized bytes cached per version.
//! - [`http`]: the glommio↔hyper adapter, router, REST handlers, errors, CORS and compression.
//! - [`per_ip`]: connections per client address (HTTP and WebSocket caps), counted by each
//!   address's home shard.
//! - [`socket`]: the WebSocket `/socket` protocol and its fan-out across shards.
//! - [`storage`]: each shard's redb file (last seen, key-value pairs, encrypted tokens), written
//!   off the executor thread; tokens; start-up repartitioning; the owner-shard storage service.
//! - [`bot`]: the Discord bot (slash commands, autocomplete, buttons) on the ingest thread.
//! - [`card`]: the profile card (SVG and PNG): layout, embedded font, image allowlist and fetch
//!   thread, per-shard caches; rendered by the user's owner shard.
//! - [`sim`]: the Discord simulator (gateway, REST, CDN, guild generator, control API).
//! - [`config`]: `config.toml` + `.env` + flags → one validated [`config::Config`].
//! - [`server`]: starts and stops the whole thing; [`demo`]: the simulator and server in one process.

pub mod bot;
pub mod card;
pub mod config;
pub mod demo;
pub mod discord;
pub mod fanout;
pub mod http;
pub mod ingest;
pub mod per_ip;
pub mod presence;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod sim;
pub mod socket;
pub mod storage;
pub mod time_fmt;
