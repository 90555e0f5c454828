//! Property tests on stable: the fuzz targets' invariants (`tests/invariants/`), on every
//! `cargo test`, with a modest number of cases so that the suite stays fast. The fuzzers in
//! `fuzz/` search the same invariants for much longer (see README, "Fuzzing").
//!
//! Structured inputs come from proptest's bytes through `arbitrary`, as libFuzzer's do; the
//! extremes (i64::MIN/MAX timestamps, u64::MAX ids, limits) also get strategies of their own.

mod invariants;

use arbitrary::{Arbitrary, Unstructured};
use invariants::{card, gateway, http, socket};
use lantern::card::model::{ActivityData, CardData};
use lantern::card::params::CardParams;
use lantern::card::svg;
use proptest::prelude::*;

/// Builds a structured input from raw bytes, as a fuzz target does.
fn from_bytes<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Timestamps: the extremes, near them, around now, or anything.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MIN + 1),
        Just(i64::MAX - 1),
        Just(0i64),
        (-1_000_000_000i64..1_000_000_000).prop_map(|d| invariants::json::NOW_MS + d),
        any::<i64>(),
    ]
}

/// `cases` per property; `PROPTEST_CASES` overrides it for a longer run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn http_inputs_route_parse_and_fail_in_the_documented_shape(b in bytes(1024)) {
        if let Some(input) = from_bytes::<http::HttpInput>(&b) {
            http::check(&input);
        }
    }

    #[test]
    fn routes_round_trip_through_their_canonical_path(path in "(/(api|API|v1|users|Users|storage|health|socket|[0-9]{17,19}|[a-zA-Z0-9%.]{0,6})){0,8}/?") {
        http::check_route(&path);
    }

    #[test]
    fn user_ids_are_17_to_19_digits_or_a_documented_error(raw in "[0-9]{0,21}|[0-9 +-]{0,20}|\\PC{0,24}", n in any::<u64>()) {
        http::check_user_id(&raw);
        http::check_user_id(&n.to_string());
        http::check_bulk(&format!("user_ids={raw},{n}"), 100);
    }

    #[test]
    fn query_pairs_decode_as_form_urlencoded_does(query in "([a-z_=&,+%\\[\\]0-9A-F]|\\PC){0,60}") {
        http::check_query_pairs(&query);
    }

    #[test]
    fn card_queries_are_valid_and_round_trip_or_fail_with_the_contract_message(
        key in "svg|format|theme|borderRadius|hideGlobalName|hideStatus|hideBadges|hideActivity|hideLastSeen|hideServerTag|noActivityTitle|noActivityMessage",
        value in "[0-9.e+-]{0,6}|dark|light|png|svg|json|true|false|\\PC{0,70}",
        radius in any::<f32>(),
    ) {
        http::check_card_query(&format!("svg=1&{key}={}", invariants::json::encode(&value)));
        http::check_card_query(&format!("svg=1&borderRadius={radius}"));
    }

    #[test]
    fn storage_bodies_give_their_value_or_a_documented_error(b in bytes(256), value in "\\PC{0,40}") {
        http::check_storage_body(&b);
        http::check_storage_body(serde_json::json!({ "value": value }).to_string().as_bytes());
        http::check_storage_key(&value);
    }

}

proptest! {
    // The structured inputs below build whole sessions: fewer cases keep `cargo test` fast.
    #![proptest_config(config(128))]

    #[test]
    fn websocket_frames_from_a_client_stay_within_the_limits(b in bytes(2048)) {
        if let Some(case) = from_bytes::<socket::WsCase>(&b) {
            socket::check_ws(&case);
        }
        socket::check_frames(&b, 1024, 7);
    }

    #[test]
    fn socket_requests_round_trip_or_are_refused_with_the_documented_message(b in bytes(512), text in "\\PC{0,64}") {
        if let Some(p) = from_bytes::<socket::ProtocolInput>(&b) {
            socket::check_protocol_input(&p);
        }
        socket::check_protocol(&text);
    }

    #[test]
    fn gateway_frames_route_to_owner_shards_and_build_user_objects(b in bytes(4096)) {
        if let Some(case) = from_bytes::<gateway::GatewayCase>(&b) {
            gateway::check(&case);
        }
        gateway::check(&gateway::GatewayCase { shards: 1, request_members: true, frames: vec![gateway::FrameInput::Raw(String::from_utf8_lossy(&b).into_owned())], clocks: vec![] });
    }

    #[test]
    fn cards_are_well_formed_and_self_contained(b in bytes(4096)) {
        if let Some(case) = from_bytes::<card::CardCase>(&b) {
            card::check(&case);
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The card and the user object at any clock with any activity timestamps (the overflow
    /// the fuzzers found: `now - start` with user-controlled timestamps).
    #[test]
    fn cards_render_with_extreme_timestamps(start in prop::option::of(timestamp()), end in prop::option::of(timestamp()), seen in prop::option::of(timestamp()), now in timestamp(), spotify in any::<bool>()) {
        let data = CardData {
            id: "1300000000000000001".into(),
            username: "u".into(),
            global_name: Some("G".into()),
            status: if seen.is_some() { "offline" } else { "online" },
            flags: vec!["Staff"],
            server_tag: None,
            avatar_url: String::new(),
            last_seen_ms: seen,
            custom_status: None,
            activities: vec![ActivityData {
                kind: 2,
                spotify,
                name: "Spotify".into(),
                details: Some("Song".into()),
                state: Some("A; B".into()),
                large_image: None,
                large_text: Some("Album".into()),
                small_image: None,
                start_ms: start,
                end_ms: end,
                url: None,
            }],
        };
        card::check_svg(&svg::render(&data, &CardParams::default(), &svg::Images::default(), now), &svg::Images::default());
        prop_assert!(!svg::distance_ago(now.saturating_sub(seen.unwrap_or(0))).is_empty());
    }

    #[test]
    fn user_objects_render_at_any_clock_with_extreme_timestamps(start in prop::option::of(timestamp()), end in prop::option::of(timestamp()), created in prop::option::of(timestamp()), now in timestamp(), arrived in timestamp(), seen in prop::option::of(timestamp())) {
        use lantern::discord::*;
        let id = Snowflake(1_300_000_000_000_000_001);
        let member = Member { user: User { id, username: "u".into(), ..Default::default() }, ..Default::default() };
        let spotify = Activity {
            name: "Spotify".into(),
            kind: activity_type::LISTENING,
            created_at: created,
            timestamps: Some(Timestamps { start, end }),
            ..Default::default()
        };
        let game = Activity { name: "Game".into(), created_at: created, timestamps: Some(Timestamps { start, end }), ..Default::default() };
        let presence = Presence { user: PartialUser { id, ..Default::default() }, status: Status::Online, activities: vec![spotify, game], ..Default::default() };
        let mut state = lantern::presence::ShardState::with_last_seen(seen.map(|s| [(id, s)].into()).unwrap_or_default());
        let mut applied = lantern::presence::state::Applied::default();
        state.upsert_listed(member, Some(presence), 1, arrived, &mut applied);
        gateway::check_user_json(&state.get(id).unwrap().json, id, now);
        let card_data = lantern::card::model::from_view(&state.get(id).unwrap().view());
        card::check_svg(&svg::render(&card_data, &CardParams::default(), &svg::Images::default(), now), &svg::Images::default());
    }

    #[test]
    fn image_urls_resolve_only_onto_their_configured_host(path in "[a-z0-9./@:%?#\\\\-]{0,30}", host in "cdn.discordapp.com|media.discordapp.net|i.scdn.co|evil.example|cdn.discordapp.com:444|u@i.scdn.co", scheme in "https|http|HTTPS|ftp") {
        let hosts: Vec<(String, String)> = lantern::config::CARD_IMAGE_HOSTS.iter().map(|h| (h.to_string(), format!("http://127.0.0.1:9/{h}"))).collect();
        card::check_resolve(&format!("{scheme}://{host}/{path}"), &hosts);
        card::check_resolve(&format!("{scheme}://{host}{path}"), &hosts);
    }
}
