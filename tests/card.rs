//! The profile card (`GET /api/v1/users/:id?svg=1`, `format=png`) against the real server
//! (2 shards) and the simulator, over real TCP.
//!
//! Set `CARD_SAMPLES_DIR` to keep the rendered cards (SVG and PNG) for a look or for the
//! headless-browser check in `.ci/card-screenshots`.

mod support;

use lantern::discord::{
    activity_type, Activity, ActivityEmoji, Assets, ClientStatus, Member, PartialUser, Presence, PrimaryGuild, Snowflake, Status,
    Timestamps, User,
};
use lantern::presence::flags::USER_FLAGS;
use lantern::runtime::shard_of;
use lantern::server::Server;
use lantern::sim::SimConfig;
use lantern::time_fmt::now_ms;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{wait_for, Env, Resp, DEADLINE};

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);
const SPOT: Snowflake = Snowflake(1_300_000_000_000_000_002);
const GONE: Snowflake = Snowflake(1_300_000_000_000_000_003);
const HOSTILE: Snowflake = Snowflake(1_300_000_000_000_000_004);
const PLAIN: Snowflake = Snowflake(1_300_000_000_000_000_005);
const EVIL: Snowflake = Snowflake(1_300_000_000_000_000_006);
const UNKNOWN: &str = "1300000000000000999";
const HOSTILE_NAME: &str = "<script>alert(\"x\")</script>&amp;'\u{0}]]><!--";

fn sim_config() -> SimConfig {
    SimConfig { members: 40, seed: 5, heartbeat_interval_ms: 1000, ..SimConfig::default() }
}

fn user(id: Snowflake, username: &str, global: Option<&str>) -> Member {
    Member {
        user: User {
            id,
            username: username.into(),
            discriminator: "0".into(),
            global_name: global.map(Into::into),
            avatar: Some(format!("{:032x}", id.0)),
            ..Default::default()
        },
        joined_at: Some("2021-05-03T00:00:00.000000+00:00".into()),
        ..Default::default()
    }
}

fn presence(id: Snowflake, status: Status, activities: Vec<Activity>) -> Presence {
    Presence {
        user: PartialUser { id, ..Default::default() },
        status,
        client_status: ClientStatus { desktop: Some(status), ..Default::default() },
        activities,
        ..Default::default()
    }
}

fn custom(text: &str, emoji: Option<ActivityEmoji>) -> Activity {
    Activity { name: "Custom Status".into(), kind: activity_type::CUSTOM, state: Some(text.into()), emoji, ..Default::default() }
}

fn game(start_ms: i64) -> Activity {
    Activity {
        name: "Factorio".into(),
        kind: activity_type::PLAYING,
        application_id: Some(Snowflake(1_072_583_404_924_817_509)),
        details: Some("Freeplay".into()),
        state: Some("Launching rockets".into()),
        timestamps: Some(Timestamps { start: Some(start_ms), end: None }),
        assets: Some(Assets {
            large_image: Some("mp:external/abc/https/cdn.example.com/factorio.png".into()),
            large_text: Some("Factorio".into()),
            small_image: Some("0123456789abcdef0123456789abcdef".into()),
            small_text: Some("Level 42".into()),
        }),
        ..Default::default()
    }
}

fn spotify(now: i64) -> Activity {
    Activity {
        name: "Spotify".into(),
        kind: activity_type::LISTENING,
        details: Some("Get Lucky".into()),
        state: Some("Daft Punk; Pharrell Williams; Nile Rodgers".into()),
        timestamps: Some(Timestamps { start: Some(now - 95_000), end: Some(now + 154_000) }),
        sync_id: Some("69kOkLUCkxIZYexIgSG8rq".into()),
        assets: Some(Assets {
            large_image: Some("spotify:ab67616d0000b2739b9b36b0e22870b9f542d937".into()),
            large_text: Some("Random Access Memories".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every known flag, plus bits no flag has.
fn every_flag() -> u64 {
    USER_FLAGS.iter().fold(0, |acc, (bit, _)| acc | bit) | (1 << 33) | (1 << 60)
}

struct Fixture {
    env: Env,
    evil_port: u16,
    evil_hits: Arc<AtomicUsize>,
}

/// An "attacker" host: counts every connection made to it.
fn evil_listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

fn fixture() -> Fixture {
    let (evil_port, evil_hits) = evil_listener();
    let now = now_ms();
    let env = Env::start_with(sim_config(), 2, |sim| {
        let mut alice = user(ALICE, "alice", Some("Alice Liddell"));
        alice.user.public_flags = Some(every_flag());
        alice.user.primary_guild = Some(PrimaryGuild {
            identity_guild_id: Some(sim.guild_id()),
            identity_enabled: Some(true),
            tag: Some("LNT".into()),
            badge: Some("b0b0".into()),
        });
        let emoji = ActivityEmoji { name: "blobwave".into(), id: Some(Snowflake(1_100_000_000_000_000_000)), animated: Some(true) };
        sim.add_member(
            alice,
            Some(presence(ALICE, Status::Online, vec![custom("shipping the card", Some(emoji)), game(now - 3_905_000)])),
        );
        sim.add_member(user(SPOT, "spotifan", Some("Ava 🌙")), Some(presence(SPOT, Status::Dnd, vec![spotify(now)])));
        sim.add_member(user(GONE, "gone_fishing", Some("Gone")), Some(presence(GONE, Status::Idle, vec![])));
        let mut hostile = user(HOSTILE, HOSTILE_NAME, Some(&format!("{HOSTILE_NAME} 🎉 with a very long display name that goes on and on")));
        hostile.user.primary_guild = Some(PrimaryGuild {
            identity_guild_id: Some(sim.guild_id()),
            identity_enabled: Some(true),
            tag: Some("<&>".into()),
            badge: Some("../../x\"onload=\"y".into()),
        });
        let mut act = game(now - 5_000);
        act.name = "</text><script>alert(1)</script>".into();
        act.details = Some("\"quoted\" & 'single' <b>bold</b> \u{1b}[31m".into());
        act.state = Some("x".repeat(300).into());
        sim.add_member(
            hostile,
            Some(presence(HOSTILE, Status::Online, vec![custom("<img src=x onerror=alert(1)> ✨", None), act])),
        );
        let mut plain = user(PLAIN, "no_display_name_bot", None);
        plain.user.avatar = None;
        plain.user.bot = true;
        plain.user.discriminator = "4242".into();
        plain.user.public_flags = Some(1 << 16);
        sim.add_member(plain, Some(presence(PLAIN, Status::Online, vec![])));
        let mut evil = game(now - 60_000);
        evil.assets = Some(Assets {
            large_image: Some(format!("https://127.0.0.1:{evil_port}/large.png").into()),
            small_image: Some(format!("youtube:x/../../127.0.0.1:{evil_port}").into()),
            ..Default::default()
        });
        let mut evil_user = user(EVIL, "evil_assets", Some("Evil"));
        evil_user.user.avatar = Some(format!("../../../@127.0.0.1:{evil_port}/x"));
        sim.add_member(evil_user, Some(presence(EVIL, Status::Online, vec![evil])));
    });
    // GONE goes offline, so the server records when it was last seen.
    env.sim.set_presence(presence(GONE, Status::Offline, vec![]));
    env.get_until(&format!("/api/v1/users/{GONE}"), |r| r.status == 200 && r.json()["last_seen_at"]["unix"].is_number());
    Fixture { env, evil_port, evil_hits }
}

fn card(env: &Env, id: impl std::fmt::Display, query: &str) -> Resp {
    env.get(&format!("/api/v1/users/{id}?svg=1{query}"))
}

/// Parses the SVG and checks it references nothing outside itself and holds nothing active.
fn check_svg(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/svg+xml; charset=utf-8"));
    let text = r.text();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not well-formed XML ({e}): {text}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        assert!(!["foreignObject", "script", "style", "iframe", "object", "embed", "a", "use"].contains(&name), "<{name}> in {text}");
        for attr in node.attributes() {
            let (n, v) = (attr.name(), attr.value());
            assert!(!n.starts_with("on"), "event handler {n} in {text}");
            if n == "href" {
                let ok = ["data:image/png;base64,", "data:image/jpeg;base64,", "data:image/gif;base64,", "data:image/webp;base64,"]
                    .iter()
                    .any(|p| v.starts_with(p));
                assert!(ok, "external or untyped reference {v:.80}");
            }
            if let Some(i) = v.find("url(") {
                assert!(v[i..].starts_with("url(#"), "external url() in {n}={v}");
            }
        }
    }
    text
}

/// All the text the card shows, joined.
fn texts(svg: &str) -> String {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect::<Vec<_>>().join("\n")
}

fn save(name: &str, body: &[u8]) {
    if let Ok(dir) = std::env::var("CARD_SAMPLES_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), body).unwrap();
    }
}

#[test]
fn cards_are_well_formed_and_self_contained() {
    let f = fixture();
    let env = &f.env;
    let mut crossed = false;
    let members = env.sim.members();
    assert!(members.len() > 40);
    for (m, _) in &members {
        for q in ["", "&theme=light", "&hideGlobalName=1&borderRadius=0"] {
            let r = card(env, m.user.id, q);
            check_svg(&r);
            let served_by: usize = r.header("x-lantern-shard").unwrap().parse().unwrap();
            crossed |= served_by != shard_of(m.user.id, 2);
        }
    }
    assert!(crossed, "no request was answered through another shard's mailbox");

    // Hostile strings are text, not markup, and long ones are shortened.
    let svg = check_svg(&card(env, HOSTILE, ""));
    let t = texts(&svg);
    assert!(t.contains("@<script>alert(\"x\")</script>&amp;'"), "{t}");
    assert!(t.contains("<img src=x onerror=alert(1)>"), "{t}");
    assert!(t.contains("</text><script>alert(1)</script>"), "{t}");
    assert!(t.contains('…'), "long text is shortened: {t}");
    assert!(!t.contains('\u{1b}') && !svg.contains('\u{0}'));
    assert!(!t.contains(&"x".repeat(300)));

    // Every known flag has a badge (some may be folded into "+N"); the bot without a display
    // name or avatar renders too.
    let svg = check_svg(&card(env, ALICE, ""));
    assert!(svg.contains("<title>Active Developer</title>") && svg.contains("<title>Staff</title>"), "{svg}");
    let t = texts(&svg);
    assert!(t.contains("Alice Liddell") && t.contains("@alice") && t.contains("LNT"), "{t}");
    assert!(t.contains("shipping the card"), "{t}");
    assert!(t.contains("PLAYING") && t.contains("Factorio") && t.contains("Freeplay") && t.contains("Launching rockets"), "{t}");
    // Started 1 h 05 min ago: shown as h:mm:ss (the clock advances in steps, so only the shape
    // and the hour are checked).
    assert!(t.lines().any(|l| l.starts_with("1:0") && l.len() == "1:05:00 elapsed".len() && l.ends_with(" elapsed")), "elapsed time keeps its hours: {t}");
    // Badges that do not fit are counted in "+N": together, every known flag.
    for q in ["", "&hideGlobalName=1"] {
        let s = check_svg(&card(env, ALICE, q));
        let drawn = s.matches("</title><circle").count();
        let more: usize = texts(&s).lines().find_map(|l| l.strip_prefix('+')?.parse().ok()).unwrap_or(0);
        assert_eq!(drawn + more, USER_FLAGS.len(), "{q}");
    }
    let bot = texts(&check_svg(&card(env, PLAIN, "")));
    assert!(bot.contains("@no_display_name_bot") && bot.contains("No Activity"), "{bot}");

    // Spotify: song, artists, album, progress.
    let t = texts(&check_svg(&card(env, SPOT, "")));
    assert!(t.contains("LISTENING TO SPOTIFY") && t.contains("Get Lucky"), "{t}");
    assert!(t.contains("by Daft Punk, Pharrell Williams, Nile Rodgers"), "{t}");
    assert!(t.contains("04:09"), "track length: {t}");

    // Offline: last seen.
    let t = texts(&check_svg(&card(env, GONE, "")));
    assert!(t.contains("Last seen less than a minute ago"), "{t}");

    for (name, id) in [("activity", ALICE), ("spotify", SPOT), ("offline", GONE), ("hostile", HOSTILE), ("bot", PLAIN)] {
        save(&format!("{name}.svg"), &card(env, id, "").body);
        save(&format!("{name}-light.svg"), &card(env, id, "&theme=light").body);
        save(&format!("{name}.png"), &env.get(&format!("/api/v1/users/{id}?format=png")).body);
    }
    save("not-monitored.svg", &card(env, UNKNOWN, "").body);
}

#[test]
fn each_parameter_changes_what_it_should() {
    let f = fixture();
    let env = &f.env;
    let base = check_svg(&card(env, ALICE, ""));
    assert!(base.contains("fill=\"#17171c\""), "dark by default");
    assert!(base.contains("height=\"272\""));
    assert!(base.contains("rx=\"32\""), "2rem corners by default");

    let light = check_svg(&card(env, ALICE, "&theme=light"));
    assert!(light.contains("fill=\"#e6e6e6\"") && !light.contains("#17171c"));

    assert!(check_svg(&card(env, ALICE, "&borderRadius=0")).contains("<rect width=\"600\" height=\"272\" rx=\"0\""));
    assert!(check_svg(&card(env, ALICE, "&borderRadius=0.5")).contains("<rect width=\"600\" height=\"272\" rx=\"8\""));

    let t = texts(&check_svg(&card(env, ALICE, "&hideGlobalName=1")));
    assert!(!t.contains("Alice Liddell") && t.contains("@alice"), "{t}");

    let s = check_svg(&card(env, ALICE, "&hideStatus=1"));
    assert!(base.contains("#43b581") && !s.contains("#43b581"), "status dot");
    assert!(!texts(&s).contains("shipping the card"), "custom status goes with hideStatus");

    let s = check_svg(&card(env, ALICE, "&hideBadges=1"));
    assert!(!s.contains("<title>Staff</title>"));

    let s = check_svg(&card(env, ALICE, "&hideActivity=1"));
    assert!(s.contains("height=\"136\"") && !texts(&s).contains("Factorio"));

    let s = check_svg(&card(env, ALICE, "&hideServerTag=1"));
    assert!(!texts(&s).contains("LNT"));

    let s = texts(&check_svg(&card(env, GONE, "&hideLastSeen=1")));
    assert!(!s.contains("Last seen"), "{s}");

    let s = texts(&check_svg(&card(env, GONE, "&noActivityTitle=Gone%20fishing&noActivityMessage=1%20%3Cb%3Ebrb%3C%2Fb%3E")));
    assert!(s.contains("Gone fishing") && s.contains("1 <b>brb</b>"), "{s}");
    let s = texts(&check_svg(&card(env, GONE, "")));
    assert!(s.contains("No Activity") && s.contains("User is not currently doing anything."), "{s}");

    // Validation: the project's error shape with the contract's messages, on cards and JSON alike.
    for (q, msg) in [
        ("svg=1&theme=blue", "Theme must be either \"light\" or \"dark\"."),
        ("theme=blue", "Theme must be either \"light\" or \"dark\"."),
        ("svg=2", "svg must be either 0 or 1."),
        ("svg=1&hideBadges=yes", "hideBadges must be a number."),
        ("svg=1&hideActivity=3", "hideActivity must be either 0 or 1."),
        ("svg=1&borderRadius=big", "borderRadius must be a number."),
        ("svg=1&borderRadius=-1", "borderRadius must be between 0 and 10."),
        ("svg=1&noActivityTitle=", "noActivityTitle must be 1-64 characters long."),
        ("format=jpeg", "format must be either \"svg\", \"png\" or \"json\"."),
    ] {
        let r = env.get(&format!("/api/v1/users/{ALICE}?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json(), serde_json::json!({ "success": false, "error": msg, "code": "invalid_query" }), "{q}");
    }
    let long = "x".repeat(257);
    let r = env.get(&format!("/api/v1/users/{ALICE}?svg=1&noActivityMessage={long}"));
    assert_eq!(r.json()["error"], "noActivityMessage must be 1-256 characters long.");
    let r = env.get("/api/v1/users/12?svg=1");
    assert_eq!(r.json()["error"], "user_id must be 17-19 characters long.");

    // Unmonitored: an error card with 404, in either format.
    let r = card(env, UNKNOWN, "");
    assert_eq!(r.status, 404);
    let t = texts(&check_svg(&Resp { status: 200, headers: r.headers.clone(), body: r.body.clone() }));
    assert!(t.contains("not monitored") && t.contains("invite.lantern.rest"), "{t}");
    let r = env.get(&format!("/api/v1/users/{UNKNOWN}?format=png"));
    assert_eq!((r.status, r.header("content-type")), (404, Some("image/png")));
    decode_png(&r.body);
    // The JSON form is unchanged.
    assert_eq!(env.get(&format!("/api/v1/users/{UNKNOWN}")).json()["code"], "user_not_monitored");
}

#[test]
fn etag_304_and_rendered_card_cache() {
    let f = fixture();
    let env = &f.env;
    // PLAIN shows no clock, so its card changes only with its data.
    let path = format!("/api/v1/users/{PLAIN}?svg=1");
    let first = env.get(&path);
    check_svg(&first);
    assert_eq!(first.header("cache-control"), Some("public, max-age=60"));
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.starts_with("W/\"") && !etag.ends_with("-p\""), "{etag}");
    let hits = env.sim.cdn_hits().len();

    let again = env.get(&path);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("server-timing"), Some("cache;desc=hit"));
    assert_eq!(env.sim.cdn_hits().len(), hits, "a cached card fetches nothing");

    let nm = env.request("GET", &path, &[("If-None-Match", &etag)], b"");
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.header("etag"), Some(etag.as_str()));
    assert_eq!(nm.header("cache-control"), Some("public, max-age=60"));
    let nm = env.request("GET", &path, &[("If-None-Match", "\"other\", W/\"x\"")], b"");
    assert_eq!(nm.status, 200);

    // Other parameters or formats have other ETags.
    let light = env.get(&format!("{path}&theme=light"));
    assert_ne!(light.header("etag"), Some(etag.as_str()));
    let png = env.get(&format!("/api/v1/users/{PLAIN}?format=png"));
    assert_ne!(png.header("etag"), Some(etag.as_str()));

    // A change to the user gives a new ETag, and the old one no longer matches.
    env.sim.set_presence(presence(PLAIN, Status::Dnd, vec![]));
    let changed = env.get_until(&path, |r| r.status == 200 && r.header("etag") != Some(etag.as_str()));
    assert!(changed.text().contains("#f04747"), "dnd dot");
    assert_eq!(env.request("GET", &path, &[("If-None-Match", &etag)], b"").status, 200);
}

#[test]
fn images_come_only_from_allowlisted_hosts_with_their_real_type() {
    let f = fixture();
    let env = &f.env;
    let svg = check_svg(&card(env, EVIL, ""));
    let svg_png = env.get(&format!("/api/v1/users/{EVIL}?format=png"));
    assert_eq!(svg_png.status, 200);
    assert!(svg.contains("Factorio"));
    // The sanitised hostile strings reached only the simulator's CDN (as a path), never the host.
    assert_eq!(f.evil_hits.load(Ordering::SeqCst), 0, "a request reached the non-allowlisted host {}", f.evil_port);
    for hit in env.sim.cdn_hits() {
        assert!(!hit.contains(".."), "{hit}");
    }
    // Alice's images are embedded, each with the type the CDN sent.
    let svg = check_svg(&card(env, ALICE, ""));
    assert!(svg.matches("href=\"data:image/png;base64,").count() >= 4, "avatar, large, small, emoji, tag icon");
    let hits = env.sim.cdn_hits();
    for want in ["/avatars/1300000000000000001/", "/external/abc/https/cdn.example.com/factorio.png", "/emojis/1100000000000000000.png", "/guild-tag-badges/"] {
        assert!(hits.iter().any(|h| h.starts_with(want)), "{want} not fetched: {hits:?}");
    }
    // Spotify's cover comes from the mapped i.scdn.co.
    check_svg(&card(env, SPOT, ""));
    assert!(env.sim.cdn_hits().iter().any(|h| h.starts_with("/image/ab67616d0000b273")));
    // Hidden sections are not fetched.
    let before = env.sim.cdn_hits().len();
    check_svg(&card(env, SPOT, "&hideActivity=1&theme=light"));
    assert!(env.sim.cdn_hits()[before..].iter().all(|h| !h.starts_with("/image/")));
}

#[test]
fn a_slow_cdn_times_out_into_a_placeholder() {
    let mut env = Env::start_with(sim_config(), 2, |sim| {
        sim.add_member(user(ALICE, "alice", Some("Alice")), Some(presence(ALICE, Status::Online, vec![game(now_ms() - 1000)])));
    });
    // Restart the server with a short fetch timeout and image TTL.
    env.stop_server();
    let mut config = env.config();
    config.card.fetch_timeout = Duration::from_millis(200);
    config.card.image_ttl = Duration::from_millis(500);
    let server = Server::start(config).unwrap();
    env.port = server.port();
    env.server = Some(server);
    assert!(wait_for(DEADLINE, || env.get("/health").status == 200));

    env.sim.set_cdn_delay(Duration::from_secs(3));
    let r = card(&env, ALICE, "");
    let svg = check_svg(&r);
    assert!(!svg.contains("href=\"data:"), "every image is a placeholder");
    assert!(texts(&svg).contains("Factorio"), "the rest of the card is there");
    assert!(r.header("etag").unwrap().ends_with("-p\""), "a degraded card has its own ETag");
    let png = env.get(&format!("/api/v1/users/{ALICE}?format=png"));
    assert_eq!(png.status, 200);
    decode_png(&png.body);

    // Once the CDN answers again, the images come back (degraded cards are not cached). The
    // failed images expire one by one, so a card may come back with some of them first: wait
    // for one with none missing.
    env.sim.set_cdn_delay(Duration::ZERO);
    let ok = env.get_until(&format!("/api/v1/users/{ALICE}?svg=1"), |r| r.header("etag").is_some_and(|e| !e.ends_with("-p\"")));
    assert!(ok.text().contains("href=\"data:image/png"), "{}", ok.text());
}

/// Decodes a PNG, checks its size, and that it is not one flat colour.
fn decode_png(body: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(body);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    let px = &buf[..info.buffer_size()];
    let first = &px[..4];
    assert!(px.chunks(4).any(|p| p != first), "blank PNG");
    (info.width, info.height)
}

#[test]
fn png_cards_decode() {
    let f = fixture();
    let env = &f.env;
    for (id, h) in [(ALICE, 272), (SPOT, 272), (GONE, 272), (HOSTILE, 272), (PLAIN, 272)] {
        let r = env.get(&format!("/api/v1/users/{id}?format=png"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/png"));
        assert!(r.header("etag").is_some());
        assert_eq!(decode_png(&r.body), (1200, 2 * h));
    }
    let r = env.get(&format!("/api/v1/users/{ALICE}?format=png&hideActivity=1"));
    assert_eq!(decode_png(&r.body), (1200, 272));
    // HEAD works as GET.
    let r = env.request("HEAD", &format!("/api/v1/users/{ALICE}?format=png"), &[], b"");
    assert_eq!(r.status, 200);
}

/// Graceful shutdown: a request still waiting on an image fetch when the server is told to
/// stop is answered in full (within the grace period) rather than cut off.
#[test]
fn shutdown_finishes_a_request_in_flight() {
    let mut env = Env::start_with(sim_config(), 2, |sim| {
        sim.add_member(user(ALICE, "alice", Some("Alice")), Some(presence(ALICE, Status::Online, vec![game(now_ms() - 1000)])));
    });
    env.sim.set_cdn_delay(Duration::from_millis(800));
    let port = env.port;
    let in_flight = std::thread::spawn(move || support::request(port, "GET", &format!("/api/v1/users/{ALICE}?svg=1"), &[], b""));
    // The card is being rendered once its first image fetch has reached the CDN.
    assert!(wait_for(DEADLINE, || !env.sim.cdn_hits().is_empty()), "the card never fetched an image");
    env.stop_server();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(texts(&check_svg(&r)).contains("Factorio"));
}

/// Restarts `env`'s server with a short fetch timeout and image TTL, for the slow-CDN tests.
fn with_short_fetches(env: &mut Env) {
    env.stop_server();
    let mut config = env.config();
    config.card.fetch_timeout = Duration::from_millis(200);
    config.card.image_ttl = Duration::from_millis(500);
    let server = Server::start(config).unwrap();
    env.port = server.port();
    env.server = Some(server);
    assert!(wait_for(DEADLINE, || env.get("/health").status == 200));
}

#[test]
fn a_placeholder_card_drawn_again_answers_304_to_its_etag() {
    let mut env = Env::start_with(sim_config(), 2, |sim| {
        sim.add_member(user(ALICE, "alice", Some("Alice")), Some(presence(ALICE, Status::Online, vec![custom("hi", None)])));
    });
    with_short_fetches(&mut env);
    env.sim.set_cdn_delay(Duration::from_secs(3));
    let path = format!("/api/v1/users/{ALICE}?svg=1");
    let first = env.get(&path);
    assert_eq!(first.status, 200);
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.ends_with("-p\""), "{etag}");
    // The CDN is still slow: the next rendering draws the same placeholder, so the client's copy
    // is current.
    let again = env.request("GET", &path, &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304, "{}", again.text());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.body.is_empty());
    // Once the images are back, the same If-None-Match gets the full card.
    env.sim.set_cdn_delay(Duration::ZERO);
    let full = env.get_until(&path, |r| r.header("etag").is_some_and(|e| !e.ends_with("-p\"")));
    let now = env.request("GET", &path, &[("If-None-Match", &etag)], b"");
    assert_eq!(now.status, 200);
    assert_eq!(now.header("etag"), full.header("etag"));
}

#[test]
fn simultaneous_first_fetches_of_one_image_are_merged() {
    let env = Env::start_tweaked(
        sim_config(),
        2,
        |sim| {
            sim.add_member(user(ALICE, "alice", Some("Alice")), Some(presence(ALICE, Status::Online, vec![custom("hi", None)])));
        },
        |c| c.card.fetch_timeout = Duration::from_secs(20),
    );
    env.sim.set_cdn_delay(Duration::from_secs(2));
    let avatar = format!("/avatars/{ALICE}/");
    let avatar_hits = || env.sim.cdn_hits().iter().filter(|h| h.starts_with(&avatar)).count();
    let port = env.port;
    // Two different cards of one user (so the rendered-card cache cannot answer the second),
    // the second asked while the first one's avatar fetch is on its way.
    let dark = std::thread::spawn(move || support::request(port, "GET", &format!("/api/v1/users/{ALICE}?svg=1"), &[], b""));
    assert!(wait_for(DEADLINE, || avatar_hits() == 1), "the first card never fetched its avatar");
    let light = std::thread::spawn(move || support::request(port, "GET", &format!("/api/v1/users/{ALICE}?svg=1&theme=light"), &[], b""));
    let (dark, light) = (dark.join().unwrap(), light.join().unwrap());
    for r in [&dark, &light] {
        assert_eq!(r.status, 200);
        assert!(r.text().contains("href=\"data:image/png"), "both cards have the avatar");
        assert!(!r.header("etag").unwrap().ends_with("-p\""));
    }
    assert_eq!(avatar_hits(), 1, "one fetch for both: {:?}", env.sim.cdn_hits());
}

const MULTI: Snowflake = Snowflake(1_300_000_000_000_000_010);
const STREAMER: Snowflake = Snowflake(1_300_000_000_000_000_011);

fn twitch_stream() -> Activity {
    Activity {
        name: "Twitch".into(),
        kind: activity_type::STREAMING,
        url: Some("https://www.twitch.tv/lantern_live".into()),
        details: Some("Building a presence card live".into()),
        state: Some("Software and Game Development".into()),
        assets: Some(Assets { large_image: Some("twitch:lantern_live".into()), ..Default::default() }),
        ..Default::default()
    }
}

fn youtube_stream() -> Activity {
    Activity {
        name: "YouTube".into(),
        kind: activity_type::STREAMING,
        url: Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ".into()),
        details: Some("Late night coding".into()),
        assets: Some(Assets { large_image: Some("youtube:dQw4w9WgXcQ".into()), ..Default::default() }),
        ..Default::default()
    }
}

fn watching(now: i64) -> Activity {
    Activity {
        name: "YouTube".into(),
        kind: activity_type::WATCHING,
        details: Some("How presences work".into()),
        state: Some("Discord Developers".into()),
        timestamps: Some(Timestamps { start: Some(now - 60_000), end: Some(now + 540_000) }),
        ..Default::default()
    }
}

fn competing() -> Activity {
    Activity { name: "Arena Season 4".into(), kind: activity_type::COMPETING, details: Some("Ranked".into()), ..Default::default() }
}

fn apple_music(now: i64) -> Activity {
    Activity {
        name: "Apple Music".into(),
        kind: activity_type::LISTENING,
        application_id: Some(Snowflake(773_825_528_921_849_856)),
        details: Some("Harder, Better, Faster, Stronger".into()),
        state: Some("Daft Punk".into()),
        timestamps: Some(Timestamps { start: Some(now - 30_000), end: Some(now + 194_000) }),
        assets: Some(Assets {
            large_image: Some("mp:external/am/https/is1-ssl.mzstatic.com/discovery.jpg".into()),
            large_text: Some("Discovery".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn multi_env() -> Env {
    let now = now_ms();
    Env::start_with(sim_config(), 2, move |sim| {
        let party = ActivityEmoji { name: "🎉".into(), id: None, animated: None };
        sim.add_member(
            user(MULTI, "everything", Some("Many Things 🌙")),
            Some(presence(
                MULTI,
                Status::Online,
                vec![
                    custom("launch day", Some(party)),
                    game(now - 3_905_000),
                    spotify(now),
                    twitch_stream(),
                    watching(now),
                    competing(),
                    apple_music(now),
                ],
            )),
        );
        sim.add_member(user(STREAMER, "streamer", Some("Streamer")), Some(presence(STREAMER, Status::Online, vec![youtube_stream()])));
    })
}

/// The `<text>` lines of the card, in document order.
fn lines(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::to_owned).collect()
}

#[test]
fn the_card_shows_every_activity_in_presence_order_up_to_max_activities() {
    let env = multi_env();
    let svg = check_svg(&card(&env, MULTI, "&maxActivities=8"));
    assert!(svg.contains(r#"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="852" viewBox="0 0 600 852""#), "six tiles: {svg:.200}");
    let t = lines(&svg);
    let headers: Vec<&str> = t
        .iter()
        .map(String::as_str)
        .filter(|l| ["PLAYING", "LISTENING TO SPOTIFY", "LIVE ON TWITCH", "WATCHING", "COMPETING IN", "LISTENING TO APPLE MUSIC"].contains(l))
        .collect();
    assert_eq!(headers, ["PLAYING", "LISTENING TO SPOTIFY", "LIVE ON TWITCH", "WATCHING", "COMPETING IN", "LISTENING TO APPLE MUSIC"]);
    let after = |head: &str, n: usize| -> Vec<String> {
        let i = t.iter().position(|l| l == head).unwrap_or_else(|| panic!("{head} missing: {t:?}"));
        t[i + 1..i + 1 + n].to_vec()
    };
    // Times are drawn at the clock step (10 s) the card was rendered in, a little after the
    // fixture was made: check they are within that of the fixture's.
    let near = |shown: &str, secs: i64| {
        let v = shown.split(':').try_fold(0i64, |acc, p| p.parse::<i64>().map(|n| acc * 60 + n)).unwrap_or_else(|_| panic!("not a clock: {shown}"));
        assert!((secs - 10..=secs + 60).contains(&v), "{shown} is not about {secs} s");
    };
    // PLAYING: the game, its details and state, the elapsed time (drawn before the header,
    // `h:mm:ss` past an hour).
    let i = t.iter().position(|l| l == "PLAYING").unwrap();
    near(t[i - 1].strip_suffix(" elapsed").unwrap(), 3905);
    assert_eq!(after("PLAYING", 3), ["Factorio", "Freeplay", "Launching rockets"]);
    // LISTENING (Spotify): track, artists and album, progress about 01:35 of 04:09.
    let s = after("LISTENING TO SPOTIFY", 4);
    assert_eq!(s[..2], ["Get Lucky", "by Daft Punk, Pharrell Williams, Nile Rodgers · on Random Acce…"], "shortened to fit");
    near(&s[2], 95);
    assert_eq!(s[3], "04:09");
    // STREAMING: the LIVE pill, the stream's title, the game, the platform.
    let i = t.iter().position(|l| l == "LIVE ON TWITCH").unwrap();
    assert_eq!(t[i - 1], "LIVE");
    assert_eq!(after("LIVE ON TWITCH", 3), ["Building a presence card live", "playing Software and Game Development", "Twitch"]);
    // WATCHING with a progress bar.
    let s = after("WATCHING", 4);
    assert_eq!(s[..2], ["YouTube", "How presences work · Discord Developers"]);
    near(&s[2], 60);
    assert_eq!(s[3], "10:00");
    assert_eq!(after("COMPETING IN", 2), ["Arena Season 4", "Ranked"]);
    // Another listening app, drawn like Spotify with its own art.
    let s = after("LISTENING TO APPLE MUSIC", 4);
    assert_eq!(s[..2], ["Harder, Better, Faster, Stronger", "by Daft Punk · on Discovery"]);
    near(&s[2], 30);
    assert_eq!(s[3], "03:44");
    // CUSTOM: the emoji, then the text.
    let i = t.iter().position(|l| l == "launch day").unwrap();
    assert_eq!(t[i - 1], "🎉");
    assert!(!t.iter().any(|l| l.contains("more activit")), "all shown");
    // Every tile's art is embedded: Discord's media proxy, Spotify and Twitch's preview (from
    // the simulated CDN), one clip path per tile.
    let hits = env.sim.cdn_hits();
    for want in ["/previews-ttv/live_user_lantern_live.png", "/image/ab67616d0000b2739b9b36b0e22870b9f542d937", "/external/am/https/is1-ssl.mzstatic.com/discovery.jpg"] {
        assert!(hits.iter().any(|h| h.starts_with(want)), "{want} not fetched: {hits:?}");
    }
    for i in [0, 1, 2, 5] {
        assert!(svg.contains(&format!("clip-path=\"url(#c{MULTI}-large{i})\"")), "tile {i} has its art");
    }
    save("activities.svg", svg.as_bytes());
    save("activities.png", &env.get(&format!("/api/v1/users/{MULTI}?format=png&maxActivities=8")).body);
    save("activities-light.png", &env.get(&format!("/api/v1/users/{MULTI}?format=png&maxActivities=4&theme=light")).body);
}

#[test]
fn by_default_the_card_keeps_one_activity_and_says_how_many_more() {
    let env = multi_env();
    let svg = check_svg(&card(&env, MULTI, ""));
    assert!(svg.contains(r#"width="600" height="272""#), "today's height");
    let t = lines(&svg);
    assert!(t.contains(&"PLAYING".to_owned()) && !t.contains(&"LISTENING TO SPOTIFY".to_owned()), "{t:?}");
    assert!(t.contains(&"+5 more activities".to_owned()), "{t:?}");
    // Two: the card grows by one tile (104 px) and a gap (12 px).
    let svg = check_svg(&card(&env, MULTI, "&maxActivities=2"));
    assert!(svg.contains(r#"width="600" height="388""#), "{svg:.200}");
    let t = lines(&svg);
    assert!(t.contains(&"LISTENING TO SPOTIFY".to_owned()) && t.contains(&"+4 more activities".to_owned()), "{t:?}");
    // The PNG follows: 2 px per unit.
    let png = env.get(&format!("/api/v1/users/{MULTI}?format=png&maxActivities=3"));
    assert_eq!(decode_png(&png.body), (1200, 2 * 504));
    // A bad value is the contract's error.
    let bad = card(&env, MULTI, "&maxActivities=9");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "maxActivities must be between 1 and 8.");
}

#[test]
fn a_youtube_stream_shows_its_preview_from_the_allowlisted_host() {
    let env = multi_env();
    let svg = check_svg(&card(&env, STREAMER, ""));
    let t = lines(&svg);
    let i = t.iter().position(|l| l == "LIVE ON YOUTUBE").unwrap_or_else(|| panic!("{t:?}"));
    assert_eq!(t[i + 1..i + 3], ["Late night coding", "YouTube"]);
    assert!(env.sim.cdn_hits().iter().any(|h| h == "/vi/dQw4w9WgXcQ/hqdefault_live.jpg"), "{:?}", env.sim.cdn_hits());
    // The preview is 16:9 (142 × 80), embedded.
    assert!(svg.contains(r#"width="142" height="80" preserveAspectRatio="xMidYMid slice""#), "{svg}");
    assert!(svg.contains("href=\"data:image/png;base64,"));
}

/// RGBA pixels of a PNG and its width.
fn pixels(body: &[u8]) -> (Vec<u8>, u32) {
    let mut reader = png::Decoder::new(body).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba);
    buf.truncate(info.buffer_size());
    (buf, info.width)
}

/// Pixels in the box (card units, drawn at 2 px each) whose colour is far from grey: emoji are,
/// the card's text, a missing-glyph box and the background are not.
fn colourful(px: &[u8], width: u32, x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> usize {
    let mut n = 0;
    for yy in 2 * y.start..2 * y.end {
        for xx in 2 * x.start..2 * x.end {
            let i = ((yy * width + xx) * 4) as usize;
            let (r, g, b) = (px[i] as i32, px[i + 1] as i32, px[i + 2] as i32);
            if r.max(g).max(b) - r.min(g).min(b) > 80 {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn png_cards_draw_unicode_and_custom_emoji_in_colour_not_as_boxes() {
    let env = multi_env();
    let (px, w) = pixels(&env.get(&format!("/api/v1/users/{MULTI}?format=png")).body);
    // The custom status "🎉 launch day" sits at x 124, baseline 98 (14 px); the display name
    // "Many Things 🌙" on the line above, 22 px bold, ends with the moon.
    let party = colourful(&px, w, 124..142, 84..101);
    assert!(party > 40, "🎉 is drawn in colour ({party} colourful pixels)");
    let text_only = colourful(&px, w, 146..220, 84..101);
    assert_eq!(text_only, 0, "the status text is grey");
    let name_w = lantern::card::text::width("Many Things 🌙", 22.0, true);
    let moon_x = 124 + (name_w - 27.5) as u32;
    let moon = colourful(&px, w, moon_x..moon_x + 28, 52..76);
    assert!(moon > 40, "🌙 is drawn in colour ({moon} colourful pixels)");
    // A custom emoji is the image the fetcher got from the CDN.
    let hits_before = env.sim.cdn_hits().len();
    let custom_emoji = Snowflake(1_100_000_000_000_000_077);
    let wave = ActivityEmoji { name: "wave".into(), id: Some(custom_emoji), animated: None };
    env.sim.set_presence(presence(MULTI, Status::Online, vec![custom("launch day", Some(wave))]));
    let r = env.get_until(&format!("/api/v1/users/{MULTI}?format=png"), |_| env.sim.cdn_hits()[hits_before..].iter().any(|h| h.starts_with("/emojis/")));
    assert!(env.sim.cdn_hits().iter().any(|h| h.starts_with(&format!("/emojis/{custom_emoji}.png"))), "{:?}", env.sim.cdn_hits());
    let (px, w) = pixels(&r.body);
    assert!(colourful(&px, w, 124..140, 85..101) > 40, "the custom emoji's image is drawn");
}
