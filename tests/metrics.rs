//! `/metrics`: counters move exactly as a scripted sequence of requests says, summed over
//! shards, and the exposition passes `promtool check metrics` (Debian's `prometheus` package;
//! without promtool the check says so and passes, except under CI, where it fails).

mod support;

use lantern::discord::{ClientStatus, PartialUser, Presence, Status};
use lantern::sim::{Fault, SimConfig};
use support::raw_ws::RawWs;
use support::wait_for;
use support::DEADLINE;
use std::collections::BTreeMap;
use std::io::Write;
use support::kv::{create_token, value_body};
use support::{promtool_check, Env, Resp};


type Samples = BTreeMap<String, f64>;

/// `name{labels} value` lines, keyed by `name{labels}` as written.
fn samples(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or_else(|_| panic!("bad value in {k} {v}"))))
        .collect()
}

fn scrape(env: &Env) -> (Resp, Samples) {
    let r = env.get("/metrics");
    assert_eq!(r.status, 200);
    let s = samples(&r.text());
    (r, s)
}

fn delta(before: &Samples, after: &Samples, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}


#[test]
fn counters_move_exactly_with_the_traffic_and_the_exposition_passes_promtool() {
    let env = Env::start(SimConfig { members: 20, seed: 9, ..SimConfig::default() }, 2);
    let members: Vec<_> = env.sim.members().iter().map(|(m, _)| m.user.id).filter(|id| *id != env.sim.application_id()).collect();
    let token = create_token(&env.sim, members[0]);
    let (_, before) = scrape(&env);

    for _ in 0..3 {
        assert_eq!(env.get("/").status, 200);
    }
    for id in &members[..4] {
        assert_eq!(env.get(&format!("/api/v1/users/{id}")).status, 200);
    }
    assert_eq!(env.get("/api/v1/users/1300000000000000999").status, 404);
    assert_eq!(env.get("/api/v1/users/12").status, 400);
    for key in ["a", "b"] {
        let r = env.request("PUT", &format!("/api/v1/users/{}/storage/{key}", members[0]), &[("Authorization", &token)], &value_body("v"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(env.request("PUT", &format!("/api/v1/users/{}/storage/c", members[0]), &[], &value_body("v")).status, 401);
    assert_eq!(env.get("/nope").status, 404);
    assert_eq!(env.request("DELETE", "/", &[], b"").status, 405);
    let (_, mid) = scrape(&env);
    // A card, rendered then answered from its ETag.
    let cdn_before = env.sim.cdn_hits().len();
    let card = env.get(&format!("/api/v1/users/{}?svg=1", members[1]));
    assert_eq!(card.status, 200);
    let images = env.sim.cdn_hits().len() - cdn_before;
    let etag = card.header("etag").unwrap().to_owned();
    assert!(!etag.ends_with("-p\""), "no image failed: {etag}");
    assert_eq!(env.request("GET", &format!("/api/v1/users/{}?svg=1", members[1]), &[("If-None-Match", &etag)], b"").status, 304);
    // The same card again, from the rendered-card cache; another theme, drawn from cached images.
    assert_eq!(env.get(&format!("/api/v1/users/{}?svg=1", members[1])).header("server-timing"), Some("cache;desc=hit"));
    assert_eq!(env.get(&format!("/api/v1/users/{}?svg=1&theme=light", members[1])).status, 200);
    assert_eq!(env.sim.cdn_hits().len() - cdn_before, images, "the second theme fetched nothing");
    // A WebSocket, open while scraped.
    let mut ws = RawWs::connect(env.port);
    assert_eq!(ws.recv()["op"], 1, "HELLO");
    // One presence change and one repeat that changes nothing.
    let online = Presence {
        user: PartialUser { id: members[2], ..Default::default() },
        status: Status::Dnd,
        client_status: ClientStatus { desktop: Some(Status::Dnd), ..Default::default() },
        ..Default::default()
    };
    env.sim.set_presence(online.clone());
    env.get_until(&format!("/api/v1/users/{}", members[2]), |r| r.json()["status"] == "dnd");
    env.sim.set_presence(online);
    assert!(wait_for(DEADLINE, || delta(&before, &scrape(&env).1, "lantern_presence_noop_updates_total") >= 1.0));
    // A lost gateway connection, resumed.
    env.sim.fault(Fault::Close(4000));
    assert!(wait_for(DEADLINE, || {
        let s = scrape(&env).1;
        // Shard 0 counts transitions; the scraping shard reports its own copy of the state.
        delta(&before, &s, r#"lantern_gateway_transitions_total{state="reconnecting"}"#) == 1.0
            && delta(&before, &s, r#"lantern_gateway_transitions_total{state="connected"}"#) == 1.0
            && s[r#"lantern_gateway_state{state="connected"}"#] == 1.0
    }));
    let (r, after) = scrape(&env);
    drop(ws);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));

    let text = r.text();
    // HTTP, up to the middle scrape (polls come after it).
    let h = |k: &str| {
        assert!(mid.contains_key(k), "no sample {k} in\n{text}");
        delta(&before, &mid, k)
    };
    let d = |k: &str| {
        assert!(after.contains_key(k), "no sample {k} in\n{text}");
        delta(&before, &after, k)
    };
    assert_eq!(h(r#"lantern_http_requests_total{route="/",status="200"}"#), 3.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="/",status="405"}"#), 1.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="/api/v1/users/{user_id}",status="200"}"#), 4.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="/api/v1/users/{user_id}",status="404"}"#), 1.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="/api/v1/users/{user_id}",status="400"}"#), 1.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="/api/v1/users/{user_id}/storage/{key}",status="200"}"#), 2.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="/api/v1/users/{user_id}/storage/{key}",status="401"}"#), 1.0);
    assert_eq!(h(r#"lantern_http_requests_total{route="unmatched",status="404"}"#), 1.0);
    assert_eq!(h(r#"lantern_http_request_duration_seconds_count{route="/"}"#), 4.0);
    // The first scrape is counted once it has been answered.
    assert_eq!(h(r#"lantern_http_requests_total{route="/metrics",status="200"}"#), 1.0);
    assert_eq!(d(r#"lantern_card_answers_total{result="rendered"}"#), 3.0);
    assert_eq!(d("lantern_card_renders_total"), 2.0);
    assert_eq!(d("lantern_card_cache_hits_total"), 1.0);
    assert!(images > 0, "the card shows images");
    assert_eq!(d(r#"lantern_card_image_fetches_total{result="ok"}"#), images as f64);
    assert_eq!(d(r#"lantern_card_image_fetches_total{result="cached"}"#), images as f64);
    assert_eq!(delta(&before, &after, r#"lantern_card_image_fetches_total{result="failed"}"#), 0.0);
    assert_eq!(delta(&before, &after, r#"lantern_card_image_fetches_total{result="merged"}"#), 0.0);
    assert_eq!(delta(&mid, &after, r#"lantern_http_requests_total{route="/api/v1/users/{user_id}",status="304"}"#), 1.0);
    assert_eq!(d(r#"lantern_card_answers_total{result="not_modified"}"#), 1.0);
    assert_eq!(after["lantern_websocket_connections"], 1.0);
    assert_eq!(d("lantern_websocket_connections_opened_total"), 1.0);
    assert_eq!(d(r#"lantern_ingest_events_total{kind="presence"}"#), 2.0);
    assert_eq!(d(r#"lantern_user_changes_total{change="updated"}"#), 1.0);
    assert_eq!(d("lantern_presence_noop_updates_total"), 1.0);
    assert_eq!(d(r#"lantern_gateway_transitions_total{state="reconnecting"}"#), 1.0);
    assert_eq!(d(r#"lantern_gateway_transitions_total{state="connected"}"#), 1.0);
    // Counted on the ingest thread: the two presence dispatches, the close (4000) retried and
    // its session resumed.
    assert_eq!(d(r#"lantern_gateway_events_total{type="PRESENCE_UPDATE"}"#), 2.0);
    assert_eq!(d(r#"lantern_gateway_events_total{type="RESUMED"}"#), 1.0);
    assert_eq!(d(r#"lantern_gateway_events_total{type="READY"}"#), 0.0);
    assert_eq!(d(r#"lantern_gateway_reconnects_total{cause="close"}"#), 1.0);
    assert_eq!(d(r#"lantern_gateway_reconnects_total{cause="error"}"#), 0.0);
    assert_eq!(d(r#"lantern_gateway_sessions_total{how="resumed"}"#), 1.0);
    assert_eq!(d(r#"lantern_gateway_sessions_total{how="identified"}"#), 0.0);
    assert!(before[r#"lantern_gateway_events_total{type="READY"}"#] >= 1.0, "the first session identified");
    assert_eq!(d(r#"lantern_http_request_duration_seconds_bucket{route="/",le="+Inf"}"#), 4.0);
    assert_eq!(d("lantern_kv_writes_total"), 2.0);
    assert_eq!(d("lantern_kv_write_duration_seconds_count"), 2.0);
    // Each acknowledged write took part in a group commit of its shard's writer.
    assert!(d(r#"lantern_storage_commits_total{result="ok"}"#) >= 2.0);
    assert_eq!(d(r#"lantern_storage_commits_total{result="failed"}"#), 0.0);
    assert_eq!(d("lantern_storage_commit_batches_count"), d(r#"lantern_storage_commits_total{result="ok"}"#));
    assert_eq!(d("lantern_storage_commit_duration_seconds_count"), d("lantern_storage_commit_batches_count"));
    assert!(d("lantern_storage_commit_batches_sum") >= d("lantern_storage_commit_batches_count"));
    assert_eq!(after["lantern_monitored_users"], members.len() as f64 + 1.0, "the bot is a member too");
    assert_eq!((after["lantern_shards"], after["lantern_shards_up"]), (2.0, 2.0));
    // Every mailbox is empty at rest (the scrape's own messages are answered before it reads).
    assert_eq!((after[r#"lantern_mailbox_depth{shard="0"}"#], after[r#"lantern_mailbox_depth{shard="1"}"#]), (0.0, 0.0));
    assert!(!after.contains_key(r#"lantern_mailbox_depth{shard="2"}"#));
    assert_eq!(after[r#"lantern_gateway_state{state="connected"}"#], 1.0);
    assert_eq!(after[r#"lantern_gateway_state{state="reconnecting"}"#], 0.0);
    assert_eq!(after["lantern_gateway_members_loaded"], 1.0);
    // Without [cluster], no cluster series.
    assert!(!r.text().contains("lantern_cluster_"));
    promtool_check(&r.text());
}

#[test]
fn websocket_frames_closes_slow_consumers_and_fanout_sizes_move_exactly() {
    // One shard, so that every connection and delivery is on it; a 4 KiB queue cap, so that an
    // 8 KiB STORAGE_UPDATE cuts its subscriber off as a slow consumer.
    let env = Env::start_tweaked(SimConfig { members: 6, seed: 13, ..SimConfig::default() }, 1, |_| {}, |c| c.server.socket.max_queued_bytes = 4096);
    let a = env.sim.members().iter().map(|(m, _)| m.user.id).find(|id| *id != env.sim.application_id()).unwrap();
    let token = create_token(&env.sim, a);
    let (_, before) = scrape(&env);

    let init = format!(r#"{{"op":2,"d":{{"user_id":"{a}"}}}}"#);
    let mut plain = RawWs::connect(env.port);
    assert_eq!(plain.recv()["t"], "HELLO");
    let (mut deflate, head) = RawWs::connect_with(env.port, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    assert!(head.to_ascii_lowercase().contains("permessage-deflate"), "{head}");
    deflate.recv_raw(); // HELLO
    plain.send(&init);
    assert_eq!(plain.recv()["t"], "INIT_ACK");
    deflate.send(&init);
    deflate.recv_raw(); // INIT_ACK
    plain.send(r#"{"op":4}"#);
    assert_eq!(plain.recv()["t"], "HEARTBEAT_ACK");
    let (_, open) = scrape(&env);
    assert_eq!(open[r#"lantern_websocket_connections_by_kind{dialect="lantern",compression="none"}"#], 1.0);
    assert_eq!(open[r#"lantern_websocket_connections_by_kind{dialect="lantern",compression="permessage_deflate"}"#], 1.0);
    assert_eq!(open["lantern_websocket_connections"], 2.0);

    // One change delivered to both.
    env.sim.set_presence(Presence {
        user: PartialUser { id: a, ..Default::default() },
        status: Status::Dnd,
        client_status: ClientStatus { desktop: Some(Status::Dnd), ..Default::default() },
        ..Default::default()
    });
    assert_eq!(plain.recv()["t"], "PRESENCE_UPDATE");
    assert_eq!(deflate.recv_raw().0 & 0x0f, 0x1, "PRESENCE_UPDATE, a text frame");
    // The compressed one closes (1000) and gets its close echoed.
    deflate.s.write_all(&support::raw_ws::masked_frame(0x88, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(deflate.recv_raw().0, 0x88);
    drop(deflate);
    // A change too large for the plain one's queue: delivered to it alone, which is cut off.
    let r = env.request("PUT", &format!("/api/v1/users/{a}/storage/pad"), &[("Authorization", &token)], &value_body(&"x".repeat(8192)));
    assert_eq!(r.status, 200);
    assert_eq!(plain.recv()["t"], "DISCONNECT");
    assert_eq!(plain.recv()["close"], 4008);
    drop(plain);
    assert!(wait_for(DEADLINE, || scrape(&env).1["lantern_websocket_connections"] == 0.0));
    let (r, after) = scrape(&env);
    let text = r.text();
    let d = |k: &str| {
        assert!(after.contains_key(k), "no sample {k} in\n{text}");
        delta(&before, &after, k)
    };
    assert_eq!(d("lantern_websocket_connections_opened_total"), 2.0);
    assert_eq!(after[r#"lantern_websocket_connections_by_kind{dialect="lantern",compression="none"}"#], 0.0);
    assert_eq!(after[r#"lantern_websocket_connections_by_kind{dialect="lantern",compression="permessage_deflate"}"#], 0.0);
    // In: INIT and HEARTBEAT (plain), INIT and the close (compressed).
    assert_eq!(d("lantern_websocket_frames_in_total"), 4.0);
    // Out: HELLO, INIT_ACK, HEARTBEAT_ACK, PRESENCE_UPDATE, DISCONNECT and the close (plain);
    // HELLO, INIT_ACK, PRESENCE_UPDATE and the close's echo (compressed).
    assert_eq!(d("lantern_websocket_frames_out_total"), 10.0);
    assert_eq!(d(r#"lantern_websocket_closes_total{by="client",code="1000"}"#), 1.0);
    assert_eq!(d(r#"lantern_websocket_closes_total{by="server",code="4008"}"#), 1.0);
    assert_eq!(d("lantern_websocket_slow_consumer_disconnects_total"), 1.0);
    // Fan-out: the presence change to 2 subscribers, the storage change to 1.
    assert_eq!(d(r#"lantern_fanout_subscribers_bucket{le="0"}"#), 0.0);
    assert_eq!(d(r#"lantern_fanout_subscribers_bucket{le="1"}"#), 1.0);
    assert_eq!(d(r#"lantern_fanout_subscribers_bucket{le="2"}"#), 2.0);
    assert_eq!(d(r#"lantern_fanout_subscribers_bucket{le="+Inf"}"#), 2.0);
    assert_eq!(d("lantern_fanout_subscribers_count"), 2.0);
    assert_eq!(d("lantern_fanout_subscribers_sum"), 3.0);
    promtool_check(&text);
}
