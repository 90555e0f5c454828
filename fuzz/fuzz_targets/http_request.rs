//! The HTTP request path: router, path ids, bulk `user_ids`, card parameters, storage bodies
//! and keys (invariants in `tests/invariants/http.rs`).
#![no_main]

#[path = "../../tests/invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|input: invariants::http::HttpInput| invariants::http::check(&input));
