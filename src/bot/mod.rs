//! The Discord bot: slash commands, autocomplete and buttons over the gateway connection the
//! server already holds.
//!
//! INTERACTION_CREATE dispatches reach [`Bot::dispatch`] on the ingest thread (tokio
//! current-thread). Each interaction is decoded into twilight-model's `Interaction` and handled
//! in its own task; storage operations are [`crate::storage::service`] requests to the user's
//! owner shard, and every answer goes out through Discord's interaction callback with
//! twilight-http against `[discord] api_url`. Every interaction is answered, failures
//! included, and nothing sent exceeds Discord's limits.

pub mod commands;
pub mod interactions;
pub mod privacy;

use crate::config::{Config, DEFAULT_API_URL};
use crate::runtime::Peers;
use crate::shard::Shard;
use std::sync::Arc;
use std::time::Duration;
use twilight_http::Client;

/// A twilight-http client for `[discord] api_url` (an `http://` origin such as the simulator
/// is reached through twilight's proxy setting, without a rate limiter).
pub fn http_client(config: &Config) -> Client {
    let mut builder = Client::builder().token(config.discord.token.expose().to_owned());
    let api = config.discord.api_url.as_str();
    if let Some(host) = api.strip_prefix("http://") {
        builder = builder.proxy(host.to_owned(), true).ratelimiter(None);
    } else if api != DEFAULT_API_URL {
        if let Some(host) = api.strip_prefix("https://") {
            builder = builder.proxy(host.to_owned(), false);
        }
    }
    builder.build()
}

/// The bot, shared by its interaction tasks.
#[derive(Clone)]
pub struct Bot {
    inner: Arc<interactions::Context>,
}

impl Bot {
    /// Builds the bot; call inside the ingest thread's tokio runtime.
    pub fn new(config: &Config, shards: Peers<Shard>) -> Bot {
        Bot {
            inner: Arc::new(interactions::Context {
                client: http_client(config),
                application_id: config.application_id,
                shards,
            }),
        }
    }

    /// Handles one INTERACTION_CREATE frame (the whole gateway text) in a task of its own.
    /// `latency` is the gateway's heartbeat round trip, for `/ping`.
    pub fn dispatch(&self, frame: &str, latency: Option<Duration>) {
        match interactions::decode(frame) {
            Ok(interaction) => {
                let ctx = self.inner.clone();
                tokio::spawn(async move { ctx.handle(interaction, latency).await });
            }
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable interaction"),
        }
    }
}
