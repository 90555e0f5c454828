//! The `/socket` protocol parser on raw text and structured requests (invariants in
//! `tests/invariants/socket.rs`).
#![no_main]

#[path = "../../tests/invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|input: invariants::socket::ProtocolInput| invariants::socket::check_protocol_input(&input));
