//! The thread-per-core runtime: executors, placement, bounded mailboxes, and the one way to
//! cross shards.
//!
//! A *shard* is one glommio executor pinned to one core. Every key (a user id) has exactly one
//! owner shard ([`shard_of`]); only the owner reads or mutates what belongs to it. Anything
//! another thread wants from it — the ingest thread applying an event, another shard answering
//! an HTTP request — runs on the owner through [`Invoke::invoke_on`] (from a shard) or
//! [`Peers::submit`] / [`Peers::ask`] (from any thread), as a closure in the owner's mailbox.
//!
//! The runtime is generic, like a library: it knows no service and no Discord type. What one
//! shard runs is a type of the caller's that implements [`Sharded`].

pub mod mailbox;
pub mod placement;
pub mod sharded;
pub mod thread;

pub use mailbox::{mailbox, Closed, MailboxReceiver, MailboxSender};
pub use placement::shard_of;
pub use sharded::{run_mailbox, Envelope, Here, Invoke, Owned, Peers, Sharded};
