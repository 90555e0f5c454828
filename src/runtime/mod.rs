//! The thread-per-core runtime: shard placement and cross-shard mailboxes.
//!
//! A *shard* is one glommio executor pinned to one core. Every user id has exactly one owner
//! shard ([`shard_of`]); only the owner reads or mutates that user's state. Anything another
//! thread wants from a user — the ingest thread applying an event, another shard answering an
//! HTTP request — is sent to the owner's [`mailbox`] as an explicit [`ShardMsg`].

pub mod mailbox;
pub mod placement;
pub mod shard;

pub use mailbox::{mailbox, MailboxReceiver, MailboxSender};
pub use placement::shard_of;
pub use shard::{ShardContext, ShardMsg};
