//! Gateway data a hostile (or buggy) client can put in its own presence, end to end: the real
//! server (2 shards) against the simulator, over real TCP. Activity timestamps are the user's to
//! choose (rich presence), so extreme ones must give a user object and a card, not a crash.
//! These are the regression tests for what the fuzzers and property tests found.

mod support;

use lantern::discord::{activity_type, Activity, Assets, ClientStatus, Member, PartialUser, Presence, Snowflake, Status, Timestamps, User};
use lantern::sim::SimConfig;
use lantern::time_fmt::clock;
use serde_json::{json, Value};
use support::{Env, Resp};

/// Spotify from the start of time to its end.
const SPOT_WIDE: Snowflake = Snowflake(1_300_000_000_000_000_101);
/// Spotify starting at the end of time and ending at its start.
const SPOT_BACKWARDS: Snowflake = Snowflake(1_300_000_000_000_000_102);
/// A game started at i64::MIN, with `created_at` at i64::MIN too.
const GAME_EPOCH_MIN: Snowflake = Snowflake(1_300_000_000_000_000_103);
/// Timestamps sent as a float far out of range and as decimal strings (the lenient forms).
const RAW_FORMS: Snowflake = Snowflake(1_300_000_000_000_000_104);

fn member(id: Snowflake, name: &str) -> Member {
    Member {
        user: User { id, username: name.into(), discriminator: "0".into(), ..Default::default() },
        joined_at: Some("2021-05-03T00:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

fn presence(id: Snowflake, activity: Activity) -> Presence {
    Presence {
        user: PartialUser { id, ..Default::default() },
        status: Status::Online,
        client_status: ClientStatus { desktop: Some(Status::Online), ..Default::default() },
        activities: vec![activity],
        ..Default::default()
    }
}

fn spotify(start: i64, end: i64) -> Activity {
    Activity {
        name: "Spotify".into(),
        kind: activity_type::LISTENING,
        details: Some("Song".into()),
        state: Some("Artist".into()),
        sync_id: Some("track".into()),
        timestamps: Some(Timestamps { start: Some(start), end: Some(end) }),
        assets: Some(Assets { large_text: Some("Album".into()), ..Default::default() }),
        ..Default::default()
    }
}

fn env() -> Env {
    let env = Env::start_with(SimConfig { members: 5, seed: 9, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2, |sim| {
        sim.add_member(member(SPOT_WIDE, "wide"), Some(presence(SPOT_WIDE, spotify(i64::MIN, i64::MAX))));
        sim.add_member(member(SPOT_BACKWARDS, "backwards"), Some(presence(SPOT_BACKWARDS, spotify(i64::MAX, i64::MIN))));
        let game = Activity {
            name: "Old Game".into(),
            kind: activity_type::PLAYING,
            created_at: Some(i64::MIN),
            timestamps: Some(Timestamps { start: Some(i64::MIN), end: None }),
            ..Default::default()
        };
        sim.add_member(member(GAME_EPOCH_MIN, "ancient"), Some(presence(GAME_EPOCH_MIN, game)));
        sim.add_member(member(RAW_FORMS, "rawforms"), None);
    });
    // The raw forms go out as JSON the typed presence cannot express.
    env.sim.dispatch(
        "PRESENCE_UPDATE",
        json!({
            "user": { "id": RAW_FORMS.to_string() },
            "guild_id": env.sim.guild_id().to_string(),
            "status": "online",
            "client_status": { "desktop": "online" },
            "activities": [{
                "name": "Spotify", "type": 2, "details": "Song", "sync_id": "track",
                "created_at": -1e300,
                "timestamps": { "start": "-9223372036854775808", "end": 1e300 }
            }]
        }),
    );
    env
}

fn user(env: &Env, id: Snowflake) -> Value {
    let r = env.get(&format!("/api/v1/users/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Parses the card and returns its text content.
fn card_text(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not well-formed XML ({e}): {text}"));
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect::<Vec<_>>().join("\n")
}

/// The longest duration the clock can show: i64::MAX milliseconds.
fn longest() -> String {
    clock(i64::MAX.div_euclid(1000))
}

#[test]
fn spotify_with_extreme_timestamps_gives_a_user_object_and_a_card() {
    let env = env();
    let r = env.get_until(&format!("/api/v1/users/{SPOT_WIDE}"), |r| r.status == 200 && r.json()["active_platforms"]["spotify"].is_object());
    let spotify = &r.json()["active_platforms"]["spotify"];
    assert_eq!(spotify["start_time"], json!({ "unix": i64::MIN.div_euclid(1000), "raw": "1970-01-01T00:00:00.000Z" }));
    assert_eq!(spotify["end_time"], json!({ "unix": i64::MAX.div_euclid(1000), "raw": "1970-01-01T00:00:00.000Z" }));
    // Elapsed and length both saturate at the longest duration.
    assert_eq!(spotify["time"], json!({ "start_human_readable": longest(), "end_human_readable": longest() }));
    let t = card_text(&env.get(&format!("/api/v1/users/{SPOT_WIDE}?svg=1")));
    assert!(t.contains("LISTENING TO SPOTIFY") && t.contains("Song"), "{t}");
    assert_eq!(t.matches(&longest()).count(), 2, "elapsed and total at the longest duration: {t}");
    assert_eq!(env.get(&format!("/api/v1/users/{SPOT_WIDE}?format=png")).status, 200);

    // Starting in the far future: nothing elapsed, and a negative length shows as 00:00.
    let spotify = user(&env, SPOT_BACKWARDS)["active_platforms"]["spotify"].clone();
    assert_eq!(spotify["time"], json!({ "start_human_readable": "00:00", "end_human_readable": "00:00" }));
    let t = card_text(&env.get(&format!("/api/v1/users/{SPOT_BACKWARDS}?svg=1")));
    assert!(t.contains("00:00 elapsed"), "{t}");
}

#[test]
fn activity_started_at_the_start_of_time_shows_the_longest_elapsed_time() {
    let env = env();
    let v = env.get_until(&format!("/api/v1/users/{GAME_EPOCH_MIN}"), |r| r.status == 200 && r.json()["activities"][0].is_object()).json();
    let a = &v["activities"][0];
    assert_eq!(a["created_at"], json!(i64::MIN.div_euclid(1000)));
    assert_eq!(a["start_time"], json!({ "unix": i64::MIN.div_euclid(1000), "raw": "1970-01-01T00:00:00.000Z" }));
    let t = card_text(&env.get(&format!("/api/v1/users/{GAME_EPOCH_MIN}?svg=1")));
    assert!(t.contains(&format!("{} elapsed", longest())), "{t}");
}

#[test]
fn out_of_range_float_and_string_timestamps_saturate() {
    let env = env();
    let v = env
        .get_until(&format!("/api/v1/users/{RAW_FORMS}"), |r| r.status == 200 && r.json()["active_platforms"]["spotify"].is_object())
        .json();
    let spotify = &v["active_platforms"]["spotify"];
    assert_eq!(spotify["start_time"]["unix"], json!(i64::MIN.div_euclid(1000)));
    assert_eq!(spotify["end_time"]["unix"], json!(i64::MAX.div_euclid(1000)));
    assert_eq!(spotify["time"], json!({ "start_human_readable": longest(), "end_human_readable": longest() }));
    assert_eq!(v["activities"][0]["created_at"], json!(i64::MIN.div_euclid(1000)));
    card_text(&env.get(&format!("/api/v1/users/{RAW_FORMS}?svg=1")));
}
