//! # lantern
//!
//! Live Discord presence (status, platforms, Spotify, games, custom status) over REST,
//! WebSocket and a profile card, served by a thread-per-core runtime.
//!
//! ## Layers
//!
//! The code is in layers; no import points back up (`tests/layers.rs` checks it):
//!
//! - **model**: [`discord`] (Discord's wire types, snowflakes, the gateway's state),
//!   [`presence::user_object`] (the Lantern user object), [`time_fmt`], [`config`].
//! - **runtime**: [`runtime`], generic like a library. Every shard (a glommio executor pinned to
//!   a core) runs one value of a type the runtime does not know; a key has one owner shard
//!   ([`runtime::shard_of`]); crossing shards is one explicit operation,
//!   [`runtime::Invoke::invoke_on`] (run this closure on that shard, give me the answer), with
//!   `on_owner` (the closure gets an [`runtime::Owned`] proof that its shard owns the key),
//!   `gather_by_owner` (scatter/gather in request order), `invoke_on_all` and `send_to`; other
//!   threads use [`runtime::Peers`]. Mailboxes are bounded: senders wait as tasks.
//! - **services**, each owning its state behind methods: [`presence`] (members, presences, the
//!   cached user objects), [`fanout`] (WebSocket subscribers, and on the owner the shards
//!   interested in each user), [`storage`] (redb, key-value pairs, tokens, the group-commit
//!   writer), [`card`] (SVG/PNG rendering, image fetch and caches), [`per_ip`] (connections
//!   per client address), [`metrics`] (per-shard counters, summed at scrape time).
//! - **wiring**: [`shard`], which services one shard runs and the operations that span them
//!   (an ingest event applied to presence, persisted, then fanned out; a durable storage write
//!   shown in the user object).
//! - **edges**: [`http`] (the glommio↔hyper adapter, router, REST handlers, errors), [`socket`]
//!   (one WebSocket session and the client protocol), [`ingest`] (the twilight gateway on its
//!   own thread, decoding each dispatch once and submitting it to the owner shard), [`bot`]
//!   (slash commands), [`sim`] (the Discord simulator: gateway, REST, CDN, control API).
//! - **process**: [`server`] starts and stops the whole thing; [`control`] serves the local
//!   control socket (`lantern backup`) and the backup schedule; [`demo`] runs the simulator and
//!   the server in one process.

pub mod bot;
pub mod card;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod discord;
pub mod fanout;
pub mod http;
pub mod lanyard;
pub mod metrics;
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
