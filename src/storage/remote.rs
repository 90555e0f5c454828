//! Storage kept off the node (cluster mode): what a shard asks of the store that makes its
//! users' storage durable and shared, and the documents that store holds.
//!
//! Each user has up to two documents, under keys named by the user id: `<id>.kv` (the pairs
//! and the encrypted token, written with compare-and-set on the document's revision so that
//! limits hold across writers on different nodes) and `<id>.privacy` (the privacy settings,
//! last writer wins). A write is answered once the store acknowledged it; every node then
//! reads every document back through [`RemoteEntry`]s, its own writes included. This module
//! defines the exchange only; the cluster thread serves it (`cluster::storage`).

use crate::discord::Snowflake;
use crate::runtime::{MailboxSender, MailboxReceiver};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// Which of a user's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Pairs and token.
    Kv,
    /// Privacy settings.
    Privacy,
}

impl Part {
    /// The document's key in the store.
    pub fn key(self, user: Snowflake) -> String {
        match self {
            Part::Kv => format!("{}.kv", user.0),
            Part::Privacy => format!("{}.privacy", user.0),
        }
    }

    /// The user and part a key names (`None` for a key this server does not write).
    pub fn parse(key: &str) -> Option<(Snowflake, Part)> {
        let (id, part) = key.split_once('.')?;
        let part = match part {
            "kv" => Part::Kv,
            "privacy" => Part::Privacy,
            _ => return None,
        };
        Some((Snowflake(id.parse().ok()?), part))
    }
}

/// What a write may assume about the document it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there.
    Any,
    /// The document is at this revision (0: absent, never written).
    Revision(u64),
}

/// Why the store did not take a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// The document is no longer at the expected revision: another writer came first.
    Conflict,
    /// The document would exceed the store's largest message (its size in bytes).
    TooLarge(usize),
    /// The store cannot be reached or did not answer in time.
    Unavailable(String),
}

/// One request to the store.
#[derive(Debug)]
pub enum RemoteOp {
    /// Puts (`Some`) or deletes (`None`) a document; answers its new revision (0 for a delete).
    Write { key: String, value: Option<Bytes>, expect: Expect, ack: oneshot::Sender<Result<u64, RemoteError>> },
    /// Reads a document: its revision (0: never written) and value (`None`: absent or deleted).
    Read { key: String, ack: oneshot::Sender<Result<(u64, Option<Bytes>), RemoteError>> },
}

/// A document as every node reads it back, in revision order.
#[derive(Debug)]
pub struct RemoteEntry {
    pub user: Snowflake,
    pub part: Part,
    pub revision: u64,
    /// `None`: deleted.
    pub value: Option<Bytes>,
}

/// A document to write only where the store has none: what a node's shard files held from
/// before it joined a cluster, carried over rather than lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub user: Snowflake,
    pub part: Part,
    pub value: Bytes,
}

impl Seed {
    /// The documents of what a shard file holds: each user's pairs and sealed token as one
    /// `<id>.kv`, each user's privacy settings as one `<id>.privacy`.
    pub fn from_files(
        kv: std::collections::HashMap<Snowflake, BTreeMap<String, String>>,
        tokens: std::collections::HashMap<Snowflake, Vec<u8>>,
        privacy: std::collections::HashMap<Snowflake, String>,
    ) -> Vec<Seed> {
        let mut docs: BTreeMap<Snowflake, KvDocument> = kv.into_iter().map(|(id, pairs)| (id, KvDocument { pairs, token: None })).collect();
        for (id, sealed) in tokens {
            docs.entry(id).or_default().set_sealed_token(&sealed);
        }
        let mut seeds: Vec<Seed> = docs.into_iter().map(|(user, doc)| Seed { user, part: Part::Kv, value: doc.to_bytes() }).collect();
        seeds.extend(privacy.into_iter().map(|(user, json)| Seed { user, part: Part::Privacy, value: Bytes::from(json) }));
        seeds
    }
}

/// A shard's way to the store. Cheap to clone.
#[derive(Clone)]
pub struct RemoteStore {
    tx: MailboxSender<RemoteOp>,
}

/// The store's side of the exchange.
pub type RemoteRequests = MailboxReceiver<RemoteOp>;

impl RemoteStore {
    /// A store fed through a mailbox of `capacity` requests.
    pub fn channel(capacity: usize) -> (RemoteStore, RemoteRequests) {
        let (tx, rx) = crate::runtime::mailbox(capacity);
        (RemoteStore { tx }, rx)
    }

    /// Writes a document; resolves once the store acknowledged it.
    pub async fn write(&self, user: Snowflake, part: Part, value: Option<Bytes>, expect: Expect) -> Result<u64, RemoteError> {
        let (ack, answer) = oneshot::channel();
        self.ask(RemoteOp::Write { key: part.key(user), value, expect, ack }, answer).await
    }

    /// Reads a document as the store has it now.
    pub async fn read(&self, user: Snowflake, part: Part) -> Result<(u64, Option<Bytes>), RemoteError> {
        let (ack, answer) = oneshot::channel();
        self.ask(RemoteOp::Read { key: part.key(user), ack }, answer).await
    }

    async fn ask<T>(&self, op: RemoteOp, answer: oneshot::Receiver<Result<T, RemoteError>>) -> Result<T, RemoteError> {
        let gone = || RemoteError::Unavailable("the cluster thread has stopped".into());
        self.tx.send(op).await.map_err(|_| gone())?;
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// The `<id>.kv` document: the pairs, and the token as the cipher sealed it (base64).
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDocument {
    pub pairs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl KvDocument {
    pub fn to_bytes(&self) -> Bytes {
        // A map of strings always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<KvDocument, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Stores a sealed token.
    pub fn with_sealed_token(mut self, sealed: &[u8]) -> KvDocument {
        self.set_sealed_token(sealed);
        self
    }

    pub fn set_sealed_token(&mut self, sealed: &[u8]) {
        use base64::Engine as _;
        self.token = Some(base64::engine::general_purpose::STANDARD.encode(sealed));
    }

    /// The sealed token's bytes, if there is one and it is base64.
    pub fn sealed_token(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(self.token.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_user_and_the_part_and_parse_back() {
        let id = Snowflake(1_300_000_000_000_000_001);
        assert_eq!(Part::Kv.key(id), "1300000000000000001.kv");
        assert_eq!(Part::Privacy.key(id), "1300000000000000001.privacy");
        assert_eq!(Part::parse("1300000000000000001.kv"), Some((id, Part::Kv)));
        assert_eq!(Part::parse("1300000000000000001.privacy"), Some((id, Part::Privacy)));
        assert_eq!(Part::parse("1300000000000000001"), None);
        assert_eq!(Part::parse("x.kv"), None);
        assert_eq!(Part::parse("1.other"), None);
    }

    #[test]
    fn a_shard_files_rows_become_one_kv_document_per_user_and_one_privacy_document() {
        let (a, b) = (Snowflake(1_300_000_000_000_000_001), Snowflake(1_300_000_000_000_000_002));
        let kv = [(a, BTreeMap::from([("k".to_owned(), "v".to_owned())]))].into_iter().collect();
        let tokens = [(a, vec![1, 2]), (b, vec![3])].into_iter().collect();
        let privacy = [(b, r#"{"paused":true}"#.to_owned())].into_iter().collect();
        let seeds = Seed::from_files(kv, tokens, privacy);
        assert_eq!(
            seeds,
            vec![
                Seed { user: a, part: Part::Kv, value: Bytes::from_static(br#"{"pairs":{"k":"v"},"token":"AQI="}"#) },
                Seed { user: b, part: Part::Kv, value: Bytes::from_static(br#"{"pairs":{},"token":"Aw=="}"#) },
                Seed { user: b, part: Part::Privacy, value: Bytes::from_static(br#"{"paused":true}"#) },
            ]
        );
    }

    #[test]
    fn a_kv_document_round_trips_and_omits_a_missing_token() {
        let mut doc = KvDocument::default();
        doc.pairs.insert("a".into(), "é\"".into());
        assert_eq!(std::str::from_utf8(&doc.to_bytes()).unwrap(), r#"{"pairs":{"a":"é\""}}"#);
        let doc = doc.with_sealed_token(&[0, 255]);
        assert_eq!(doc.token.as_deref(), Some("AP8="));
        assert_eq!(KvDocument::from_bytes(&doc.to_bytes()).unwrap(), doc);
        assert_eq!(doc.sealed_token(), Some(vec![0, 255]));
    }
}
