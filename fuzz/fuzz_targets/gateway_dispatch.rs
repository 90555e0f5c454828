//! Structure-aware gateway dispatches (typed events that must decode and round-trip, and any
//! JSON as `d`) through the `Dispatcher`, the shards' state and the user objects (invariants
//! in `tests/invariants/gateway.rs`).
#![no_main]

#[path = "../../tests/invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|case: invariants::gateway::GatewayCase| invariants::gateway::check(&case));
