//! Raw gateway frames (one per line) through the ingest `Dispatcher`, then the shards' state
//! and user objects (invariants in `tests/invariants/gateway.rs`).
#![no_main]

#[path = "../../tests/invariants/mod.rs"]
mod invariants;

use invariants::gateway::{check, FrameInput, GatewayCase, Time};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let frames = text.lines().take(64).map(|l| FrameInput::Raw(l.to_owned())).collect();
    let shards = data.first().copied().unwrap_or(0);
    check(&GatewayCase { shards, request_members: shards & 0x80 != 0, frames, clocks: vec![Time(i64::MIN), Time(i64::MAX)] });
});
