//! Invariants of lantern's input paths, shared by the `cargo fuzz` targets (`fuzz/`, which
//! include this module by path) and the property tests (`tests/properties.rs`).
//!
//! Each submodule has structure-aware inputs (`arbitrary::Arbitrary`, so that libFuzzer's bytes
//! and proptest's both drive them) and `check_*` functions that panic when an invariant fails:
//! no panic inside lantern, errors are the documented ones in the one error shape, and valid
//! input round-trips where that makes sense.
//!
//! - [`http`]: the router, path ids, bulk `user_ids`, card parameters, storage bodies and keys.
//! - [`socket`]: lantern's WebSocket reader (`socket::wire`) on arbitrary bytes, and
//!   the `/socket` protocol parser.
//! - [`gateway`]: the ingest `Dispatcher` on raw and structured gateway frames, the events it
//!   routes applied to shard state, and the user objects rendered at any clock.
//! - [`card`]: card parameters, user data and images rendered to SVG, which must be well-formed
//!   XML that references nothing outside itself.

#![allow(dead_code)]

pub mod card;
pub mod gateway;
pub mod http;
pub mod json;
pub mod socket;
