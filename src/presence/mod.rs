//! Presence: each shard's member and presence state, and the Lantern user object built from it.
//!
//! [`state::ShardState`] holds the users one shard owns. Every change rebuilds that user's
//! [`user_object::UserJson`] once; readers (REST, and later WebSocket fan-out and the card) reuse
//! those bytes instead of serializing again.

pub mod flags;
pub mod state;
pub mod user_object;

pub use state::{Change, ShardState, UserState};
pub use user_object::UserJson;
