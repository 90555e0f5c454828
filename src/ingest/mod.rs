//! Discord ingest: the gateway connection, decoding, and routing to owner shards.
//!
//! twilight-gateway owns the connection (heartbeats, identify, resume, reconnects) on a
//! dedicated thread running a tokio current-thread runtime. Each raw text frame goes through
//! [`decode::Dispatcher`], which decodes it once and routes it to the owner shard's mailbox.

pub mod decode;

use crate::cluster::session::{GatewaySession, SessionCell};
use crate::config::Config;
use crate::runtime::Peers;
use decode::{Dispatcher, Outbound};
use crate::discord::gateway_status::GatewayState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use twilight_gateway::{queue::InMemoryQueue, CloseFrame, ConfigBuilder, Intents, Message, Session, Shard, ShardId};
use futures_util::StreamExt as _;
use twilight_model::gateway::payload::outgoing::RequestGuildMembers;
use twilight_model::gateway::CloseCode;
use twilight_model::id::Id;

/// The running ingest thread.
pub struct Ingest {
    thread: crate::runtime::thread::StoppableThread,
}

impl Ingest {
    /// Connects to the gateway and routes events to `shards` until [`Ingest::stop`].
    pub fn start(config: Arc<Config>, shards: Peers<crate::shard::Shard>, stats: Arc<crate::metrics::GatewayStats>) -> std::io::Result<Ingest> {
        Self::start_in_cluster(config, shards, stats, None)
    }

    /// [`Ingest::start`] for a cluster's leader: with a `session`, it resumes the session the
    /// cell holds (if any) instead of identifying, keeps the cell at the last sequence whose
    /// events reached the shards, and closes its connection keeping the session open for the
    /// next leader.
    pub fn start_in_cluster(
        config: Arc<Config>,
        shards: Peers<crate::shard::Shard>,
        stats: Arc<crate::metrics::GatewayStats>,
        session: Option<SessionCell>,
    ) -> std::io::Result<Ingest> {
        let thread = crate::runtime::thread::StoppableThread::spawn("lantern-ingest", move |stop| run(config, shards, stop, stats, session))?;
        Ok(Ingest { thread })
    }

    /// Closes the gateway connection and waits for the thread.
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// The log line for a gateway close that twilight will not retry (4004, 4010–4014), naming
/// the cause and what to do; `None` for a close that is followed by a reconnect.
pub fn fatal_close_message(code: u16) -> Option<String> {
    // twilight decides what is retried; follow it so the log never disagrees with what happens.
    let close = CloseCode::try_from(code).ok().filter(|c| !c.can_reconnect())?;
    let (cause, hint) = match close {
        CloseCode::AuthenticationFailed => ("authentication failed", "Discord rejected the bot token; check DISCORD_BOT_TOKEN"),
        CloseCode::InvalidShard => ("invalid shard", "the shard id or shard count sent in IDENTIFY is not valid"),
        CloseCode::ShardingRequired => ("sharding required", "the bot is in too many guilds to run on one shard"),
        CloseCode::InvalidApiVersion => ("invalid API version", "the gateway does not accept the API version requested"),
        CloseCode::InvalidIntents => ("invalid intents", "the gateway does not accept the intents sent in IDENTIFY"),
        CloseCode::DisallowedIntents => (
            "disallowed intents",
            "enable the Presence and Server Members intents for the bot in the Discord developer portal",
        ),
        _ => ("refused", "the gateway will not accept this connection"),
    };
    Some(format!(
        "gateway closed the connection with {code} {cause}: {hint}. Will not reconnect; presence is no longer updated"
    ))
}

/// Carries out what a frame asked for. Events go to their owner shards' mailboxes; a full
/// mailbox makes this wait (as a task: the gateway is read again once there is room), so no
/// event is dropped and nothing blocks the runtime.
async fn deliver(shards: &Peers<crate::shard::Shard>, shard: &Shard, bot: &crate::bot::Bot, actions: &mut Vec<Outbound>) {
    for action in actions.drain(..) {
        match action {
            Outbound::ToShard(i, event) => {
                let _ = shards.submit(i, move |s| s.apply_ingest(event)).await;
            }
            Outbound::Broadcast(event) => {
                for i in 0..shards.count() {
                    let event = event.clone();
                    let _ = shards.submit(i, move |s| s.apply_ingest(event)).await;
                }
            }
            Outbound::Status(status) => {
                tracing::info!(gateway = status.state.as_str(), members_loaded = status.members_loaded, "gateway status");
                for i in 0..shards.count() {
                    let _ = shards.submit(i, move |s| s.set_gateway(status)).await;
                }
            }
            Outbound::RequestMembers { guild_id, nonce } => {
                tracing::info!(%guild_id, "requesting the full member list");
                let request = RequestGuildMembers::builder(Id::new(guild_id.0.max(1))).presences(true).nonce(nonce).query("", None);
                shard.command(&request);
            }
            Outbound::Interaction(text) => bot.dispatch(&text, shard.latency().average()),
        }
    }
}

/// How often at most a cluster's leader marks the sequence its delivered events reached.
const MARK_EVERY: Duration = Duration::from_millis(50);

/// Whether the shard's session moved past the last mark.
fn unmarked(shard: &Shard, marked: &Option<GatewaySession>) -> bool {
    match (shard.session(), marked) {
        (Some(s), Some(m)) => s.sequence() != m.sequence || s.id() != m.session_id,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Sends every shard, behind the events delivered so far, the session's sequence: each passes
/// it on behind the states those events produced (see `Shard::mark_applied`).
async fn mark(shards: &Peers<crate::shard::Shard>, shard: &Shard, marked: &mut Option<GatewaySession>) {
    let Some(s) = shard.session() else { return };
    let session = GatewaySession { session_id: s.id().to_owned(), resume_gateway_url: shard.resume_url().map(str::to_owned), sequence: s.sequence() };
    for i in 0..shards.count() {
        let session = session.clone();
        let _ = shards.submit(i, move |s| s.mark_applied(session)).await;
    }
    *marked = Some(session);
}

async fn run(
    config: Arc<Config>,
    shards: Peers<crate::shard::Shard>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<crate::metrics::GatewayStats>,
    session: Option<SessionCell>,
) {
    // rustls needs a process-wide crypto provider for wss://; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let intents = Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES;
    let mut builder = ConfigBuilder::new(config.discord.token.expose().to_owned(), intents);
    if config.discord.gateway_url != crate::config::DEFAULT_GATEWAY_URL {
        builder = builder.proxy_url(config.discord.gateway_url.clone());
    }
    if config.discord.gateway_url.starts_with("ws://") {
        // A loopback gateway (simulator, proxy) has no identify rate limit to respect.
        builder = builder.queue(InMemoryQueue::new(0, 0, Duration::ZERO, 0));
    }
    let mut dispatcher = Dispatcher::new(config.base_guild_id, shards.count(), config.discord.request_members).with_stats(stats.clone());
    // Cluster mode: the session last acknowledged, which is where the next leader resumes.
    let mut marked = session.as_ref().and_then(SessionCell::get);
    if let Some(resume) = marked.clone() {
        tracing::info!(sequence = resume.sequence, "resuming the cluster's gateway session");
        builder = builder.session(Session::new(resume.sequence, resume.session_id));
        if let Some(url) = resume.resume_gateway_url {
            builder = builder.resume_url(url);
        }
        // The session's member list was loaded by the node that identified, and replicated here.
        dispatcher = dispatcher.with_members_loaded();
    }
    let mut shard = Shard::with_config(ShardId::ONE, builder.build());
    let mut marked_at = tokio::time::Instant::now();
    let bot = crate::bot::Bot::new(&config, shards.clone());
    let mut actions = Vec::new();
    // A fatal close was seen (and logged): the stream ends next, without a retry.
    let mut fatal = false;
    tracing::info!(url = %config.discord.gateway_url, "connecting to the gateway");
    loop {
        let due = session.is_some() && unmarked(&shard, &marked);
        let item = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(marked_at + MARK_EVERY), if due => {
                mark(&shards, &shard, &mut marked).await;
                marked_at = tokio::time::Instant::now();
                continue;
            }
            item = shard.next() => item,
        };
        match item {
            None => {
                if !fatal {
                    tracing::error!("the gateway connection ended for good; not reconnecting");
                }
                dispatcher.set_state(GatewayState::Failed, &mut actions);
                deliver(&shards, &shard, &bot, &mut actions).await;
                let _ = stop.wait_for(|s| *s).await;
                return;
            }
            Some(Ok(Message::Text(text))) => {
                if let Err(e) = dispatcher.frame(&text, &mut actions) {
                    tracing::warn!(error = %e, "skipping an undecodable gateway event");
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map(|f| f.code);
                match code.and_then(fatal_close_message) {
                    Some(message) => {
                        // twilight ends the stream next; this is the one line naming the cause.
                        tracing::error!(code, "{message}");
                        fatal = true;
                        dispatcher.set_state(GatewayState::Failed, &mut actions);
                    }
                    None => {
                        tracing::warn!(code, "gateway connection closed; reconnecting");
                        stats.reconnect("close");
                        dispatcher.set_state(GatewayState::Reconnecting, &mut actions);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "gateway receive error");
                stats.reconnect("error");
                dispatcher.set_state(GatewayState::Reconnecting, &mut actions);
            }
        }
        deliver(&shards, &shard, &bot, &mut actions).await;
        if session.is_some() && marked_at.elapsed() >= MARK_EVERY && unmarked(&shard, &marked) {
            mark(&shards, &shard, &mut marked).await;
            marked_at = tokio::time::Instant::now();
        }
    }
    // A cluster's leader leaves the session open for the next one to resume (from the last
    // sequence acknowledged, so frames read while closing are replayed there).
    shard.close(if session.is_some() { CloseFrame::RESUME } else { CloseFrame::NORMAL });
    // Let the close handshake go out, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(item) = shard.next().await {
            if matches!(item, Ok(Message::Close(_))) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::fatal_close_message;

    #[test]
    fn fatal_close_messages_name_the_cause() {
        let m = |code| fatal_close_message(code).unwrap();
        assert_eq!(
            m(4004),
            "gateway closed the connection with 4004 authentication failed: Discord rejected the bot token; \
             check DISCORD_BOT_TOKEN. Will not reconnect; presence is no longer updated"
        );
        assert_eq!(
            m(4014),
            "gateway closed the connection with 4014 disallowed intents: enable the Presence and Server Members \
             intents for the bot in the Discord developer portal. Will not reconnect; presence is no longer updated"
        );
        assert!(m(4010).contains("4010 invalid shard: "));
        assert!(m(4011).contains("4011 sharding required: "));
        assert!(m(4012).contains("4012 invalid API version: "));
        assert!(m(4013).contains("4013 invalid intents: "));
    }

    #[test]
    fn retried_closes_have_no_fatal_message() {
        for code in [1000, 1001, 1006, 4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009, 4999] {
            assert_eq!(fatal_close_message(code), None, "{code}");
        }
    }
}
