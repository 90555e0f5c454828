//! lantern's WebSocket reader (`socket::wire`) on a client's bytes, raw or built
//! from frames; text goes on to the protocol parser (invariants in `tests/invariants/socket.rs`).
#![no_main]

#[path = "../../tests/invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|case: invariants::socket::WsCase| invariants::socket::check_ws(&case));
