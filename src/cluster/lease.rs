//! Gateway leadership: one key in a JetStream KV bucket whose messages live `lease_ttl`.
//!
//! A follower tries `create` (which succeeds only when the key is absent: never written,
//! deleted, or aged out) every sixth of the TTL. The leader `update`s the key on the revision
//! it last wrote every third of the TTL; if two thirds pass since the last refresh was sent
//! without one being acknowledged, it stops its gateway before the key can expire and another
//! node can take it. A node that stops deletes the key (on its revision) so the next leader
//! need not wait for the TTL. A revision that a follower has seen unchanged for longer than
//! the TTL is a dead holder's: the follower takes the key with an `update` on it, in case the
//! server keeps the value past its age. A node tries to lead only once it is synced and has
//! read the presence bucket to its last revision.
//!
//! The value carries the leader's gateway session as of the refresh, and every refresh (and
//! the release) also writes it to the session bucket ([`super::session`]), which outlives the
//! key: the next leader resumes that session.

use crate::config::ClusterConfig;
use super::session::{self, GatewaySession, SessionCell};
use super::{Gateway, Role, Status};
use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// The lease's key in its bucket.
pub const KEY: &str = "gateway";

/// What the lease holds: its holder and, once its gateway has a session, the session's
/// resume data as of the last refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_gateway_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

impl LeaseValue {
    pub fn new(node_id: &str, session: Option<&GatewaySession>) -> LeaseValue {
        LeaseValue {
            node_id: node_id.to_owned(),
            session_id: session.map(|s| s.session_id.clone()),
            resume_gateway_url: session.and_then(|s| s.resume_gateway_url.clone()),
            sequence: session.map(|s| s.sequence),
        }
    }

    /// The session it carries, if any.
    pub fn session(&self) -> Option<GatewaySession> {
        Some(GatewaySession { session_id: self.session_id.clone()?, resume_gateway_url: self.resume_gateway_url.clone(), sequence: self.sequence.unwrap_or(0) })
    }

    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Why an attempt to take the lease failed.
enum Refused {
    /// Another node holds it.
    Held,
    /// No answer, or not one that says who holds it.
    NoAnswer,
}

/// The lease bucket and the session bucket beside it.
struct Stores {
    lease: kv::Store,
    session: kv::Store,
}

/// Opens (or creates) the lease and session buckets, retrying until NATS answers or the node
/// stops.
async fn open_bucket(
    config: &ClusterConfig,
    client: &async_nats::Client,
    status: &Status,
    stop: &mut watch::Receiver<bool>,
) -> Option<Stores> {
    let js = async_nats::jetstream::new(client.clone());
    let bucket = super::client::Bucket {
        name: &config.lease_bucket,
        description: "lantern gateway lease",
        history: 1,
        max_age: config.lease_ttl,
        memory: true,
        replicas: config.replicas,
    };
    let session_name = session::bucket_name(config);
    let session_bucket = session::bucket(config, &session_name);
    let mut logged = false;
    loop {
        status.update(|s| s.nats_connected = client.connection_state() == async_nats::connection::State::Connected);
        let both = async { Ok::<_, async_nats::Error>(Stores { lease: bucket.open(&js).await?, session: session_bucket.open(&js).await? }) };
        match timeout(config.lease_ttl, both).await {
            Ok(Ok(stores)) => return Some(stores),
            Ok(Err(e)) if !logged => {
                tracing::warn!(error = %e, bucket = %config.lease_bucket, "cannot open the lease bucket yet; retrying");
                logged = true;
            }
            _ => {}
        }
        if stopped_within(stop, config.lease_ttl / 3).await {
            return None;
        }
    }
}

/// Waits `d`, or less if the node is told to stop; says whether it was.
pub(crate) async fn stopped_within(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let told = tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(d) => false,
    };
    told || *stop.borrow()
}

/// The session to resume on taking the lease: the session bucket's (written at every refresh
/// and at a release, so the freshest), else the one last read from the lease while following.
async fn session_to_resume(stores: &Stores, seen: Option<GatewaySession>, call: Duration) -> Option<GatewaySession> {
    let stored = match timeout(call, stores.session.get(session::KEY)).await {
        Ok(Ok(Some(bytes))) => GatewaySession::parse(&bytes),
        _ => None,
    };
    match (stored, seen) {
        (Some(s), Some(l)) if s.session_id == l.session_id => Some(if l.sequence > s.sequence { l } else { s }),
        (stored, seen) => stored.or(seen),
    }
}

/// Reads the lease held by another node: notes the holder, its session in `seen`, and since
/// when its revision has not moved.
async fn note_holder(stores: &Stores, status: &Status, holders: &mut Holders, seen: &mut Option<GatewaySession>, call: Duration) {
    if let Ok(Ok(entry)) = timeout(call, stores.lease.entry(KEY)).await {
        let entry = entry.filter(|e| e.operation == kv::Operation::Put);
        let value = entry.as_ref().and_then(|e| serde_json::from_slice::<LeaseValue>(&e.value).ok());
        if let Some(s) = value.as_ref().and_then(LeaseValue::session) {
            *seen = Some(s);
        }
        holders.still = match (entry.map(|e| e.revision), holders.still.take()) {
            (Some(r), Some((was, since))) if r == was => Some((r, since)),
            (Some(r), _) => Some((r, Instant::now())),
            (None, _) => None,
        };
        holders.note(status, value.map(|v| v.node_id));
    }
}

/// Whether this node has read every presence change in the bucket, so that it may lead (a
/// leader applies nothing from the bucket: it must have what the last leader wrote).
async fn caught_up(config: &ClusterConfig, client: &async_nats::Client, status: &Status, call: Duration) -> bool {
    let js = async_nats::jetstream::new(client.clone());
    match super::replication::bucket_state(config, &js, call).await {
        Some((_, last)) => status.snapshot().presence_revision >= last,
        None => false,
    }
}

/// The holder this node sees, and the last one it saw (`None` says nothing about who holds it
/// next).
#[derive(Default)]
struct Holders {
    last: Option<String>,
    /// The lease's revision as last read, and since when it has been that.
    still: Option<(u64, Instant)>,
}

impl Holders {
    /// Sets the holder `status` reports, counting a change to a node other than the last seen.
    fn note(&mut self, status: &Status, holder: Option<String>) {
        let changed = holder.is_some() && holder != self.last;
        if holder.is_some() {
            self.last = holder.clone();
        }
        status.update(|s| {
            s.lease_changes += u64::from(changed);
            s.lease_holder = holder;
        })
    }
}

/// Writes the gateway's current session to the session bucket (skipped when unchanged).
async fn store_session(stores: &Stores, session: Option<GatewaySession>, stored: &mut Option<GatewaySession>, call: Duration) {
    let Some(session) = session else { return };
    if stored.as_ref() == Some(&session) {
        return;
    }
    if let Ok(Ok(_)) = timeout(call, stores.session.put(session::KEY, session.bytes())).await {
        *stored = Some(session);
    }
}

/// Runs the lease until the node stops. `gateway` runs exactly while this node holds it,
/// resuming the session that `session` holds when it starts.
pub async fn run(
    config: &ClusterConfig,
    client: &async_nats::Client,
    gateway: &mut dyn Gateway,
    session: &SessionCell,
    status: &Status,
    stop: &mut watch::Receiver<bool>,
) {
    let connected = || client.connection_state() == async_nats::connection::State::Connected;
    let Some(mut stores) = open_bucket(config, client, status, stop).await else { return };
    let ttl = config.lease_ttl;
    let call = ttl / 3;
    // While leading: the revision last written and when the refresh that wrote it was sent.
    let mut held: Option<(u64, Instant)> = None;
    // The session as last read from the lease while another node held it.
    let mut seen: Option<GatewaySession> = None;
    // The session as last written to the session bucket.
    let mut stored: Option<GatewaySession> = None;
    let mut holders = Holders::default();
    loop {
        status.update(|s| s.nats_connected = connected());
        match held {
            None if !status.snapshot().synced => {
                // A node leads only with every replicated user applied: a leader applies none.
                note_holder(&stores, status, &mut holders, &mut seen, call).await;
                if stopped_within(stop, ttl / 6).await {
                    return;
                }
            }
            None if !caught_up(config, client, status, call).await => {
                note_holder(&stores, status, &mut holders, &mut seen, call).await;
                if stopped_within(stop, ttl / 6).await {
                    return;
                }
            }
            None => {
                // The lease's life starts no earlier than the request is sent.
                let sent = Instant::now();
                let value = LeaseValue::new(&config.node_id, None);
                // A holder refreshes every third of the TTL and gives up its gateway two thirds
                // after its last refresh: a revision that has not moved for longer than the TTL
                // (as this node measured it, from after it was written) is a dead holder's, even
                // if the server has not aged the key out yet.
                let stale = holders.still.filter(|(_, since)| since.elapsed() > ttl + ttl / 6).map(|(r, _)| r);
                let outcome = match stale {
                    Some(r) => {
                        tracing::warn!(node = %config.node_id, revision = r, "the gateway lease was not refreshed for longer than its TTL; taking it");
                        match timeout(call, stores.lease.update(KEY, value.bytes(), r)).await {
                            Ok(Ok(revision)) => Ok(revision),
                            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(Refused::Held),
                            _ => Err(Refused::NoAnswer),
                        }
                    }
                    None => match timeout(call, stores.lease.create(KEY, value.bytes())).await {
                        Ok(Ok(revision)) => Ok(revision),
                        Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(Refused::Held),
                        _ => Err(Refused::NoAnswer),
                    },
                };
                match outcome {
                    Ok(revision) => {
                        let resume = session_to_resume(&stores, seen.take(), call).await;
                        match &resume {
                            Some(s) => tracing::info!(node = %config.node_id, revision, sequence = s.sequence,
                                "took the gateway lease; resuming the gateway session"),
                            None => tracing::info!(node = %config.node_id, revision, "took the gateway lease; starting the gateway"),
                        }
                        held = Some((revision, sent));
                        stored = resume.clone();
                        session.set(resume);
                        status.update(|s| s.role = Role::Leader);
                        holders.still = None;
                        holders.note(status, Some(config.node_id.clone()));
                        gateway.start();
                        continue;
                    }
                    Err(Refused::Held) => note_holder(&stores, status, &mut holders, &mut seen, call).await,
                    // No answer, or not the answer that the key exists: the bucket may be gone (a
                    // NATS server restarted without it, and a publish to no stream is never
                    // acknowledged), so open it again; that is idempotent.
                    Err(Refused::NoAnswer) => {
                        tracing::debug!("cannot create the lease; reopening its bucket");
                        match open_bucket(config, client, status, stop).await {
                            Some(s) => stores = s,
                            None => return,
                        }
                        continue;
                    }
                }
                if stopped_within(stop, ttl / 6).await {
                    return;
                }
            }
            Some((revision, last)) => {
                // Refresh a third of the TTL after the last one was sent; retry quickly after a failure.
                let next = last + ttl / 3;
                let wait = next.saturating_duration_since(Instant::now());
                if stopped_within(stop, wait).await {
                    // The gateway closes keeping its session open; the next leader resumes it.
                    gateway.stop();
                    status.update(|s| s.role = Role::Follower);
                    store_session(&stores, session.get(), &mut stored, call).await;
                    let _ = timeout(call, stores.lease.delete_expect_revision(KEY, Some(revision))).await;
                    tracing::info!(node = %config.node_id, "released the gateway lease");
                    return;
                }
                let deadline = last + ttl * 2 / 3;
                let sent = Instant::now();
                let budget = deadline.saturating_duration_since(sent);
                let current = session.get();
                let value = LeaseValue::new(&config.node_id, current.as_ref());
                match timeout(budget, stores.lease.update(KEY, value.bytes(), revision)).await {
                    Ok(Ok(revision)) => {
                        held = Some((revision, sent));
                        store_session(&stores, current, &mut stored, call).await;
                    }
                    outcome => {
                        if Instant::now() < deadline {
                            // A refused update means another node holds the key: give up now.
                            if matches!(&outcome, Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision) {
                                tracing::warn!(node = %config.node_id, "the gateway lease was lost; stopping the gateway");
                            } else {
                                tokio::time::sleep(Duration::from_millis(50).min(budget)).await;
                                continue;
                            }
                        } else {
                            tracing::warn!(node = %config.node_id, "cannot refresh the gateway lease in time; stopping the gateway");
                        }
                        gateway.stop();
                        held = None;
                        status.update(|s| s.role = Role::Follower);
                        holders.note(status, None);
                    }
                }
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::{GatewaySession, Holders, LeaseValue, Status};

    #[test]
    fn the_lease_value_carries_the_session_and_reads_a_value_without_one() {
        let session = GatewaySession { session_id: "abc".into(), resume_gateway_url: Some("wss://g".into()), sequence: 7 };
        let value = LeaseValue::new("a", Some(&session));
        let json: serde_json::Value = serde_json::from_slice(&value.bytes()).unwrap();
        assert_eq!(json, serde_json::json!({"node_id": "a", "session_id": "abc", "resume_gateway_url": "wss://g", "sequence": 7}));
        assert_eq!(value.session(), Some(session));
        let bare: LeaseValue = serde_json::from_str(r#"{"node_id":"b"}"#).unwrap();
        assert_eq!((bare.node_id.as_str(), bare.session()), ("b", None));
        assert_eq!(serde_json::to_string(&LeaseValue::new("b", None)).unwrap(), r#"{"node_id":"b"}"#);
    }

    #[test]
    fn a_change_of_holder_counts_once_and_nobody_in_between_does_not() {
        let status = Status::new("a");
        let mut holders = Holders::default();
        for holder in [Some("b"), Some("b"), None, Some("b"), Some("a"), None, Some("c")] {
            holders.note(&status, holder.map(str::to_owned));
        }
        assert_eq!(status.snapshot().lease_changes, 3);
        assert_eq!(status.snapshot().lease_holder.as_deref(), Some("c"));
    }
}
