//! Card parameters, user data (extreme timestamps included) and images rendered to SVG, which
//! must be well-formed and self-contained; image URLs resolve only onto their hosts
//! (invariants in `tests/invariants/card.rs`).
#![no_main]

#[path = "../../tests/invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|case: invariants::card::CardCase| invariants::card::check(&case));
