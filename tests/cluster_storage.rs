//! Cluster mode's storage against a real `nats-server`: pairs, tokens and privacy settings
//! live in JetStream, so a write acknowledged by one node is on every node, the 512-pair limit
//! holds across writers on different nodes, and a node cut off from NATS refuses writes (503)
//! while it keeps serving reads.
//!
//! Needs `nats-server` on PATH (`.ci/run` installs it); without it the tests fail, saying what
//! to install.

mod support;

use lantern::discord::{Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::cluster::{create_token_once_writable, Nats, Node, ProcessNode};
use support::kv::{next_frame, value_body, Ws};
use support::{request, wait_for, DEADLINE};

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);

fn online(id: Snowflake) -> Presence {
    Presence { user: PartialUser { id, ..Default::default() }, status: Status::Online, ..Default::default() }
}

/// A simulator with Alice as a member.
fn simulator() -> Simulator {
    let sim = Simulator::start(SimConfig { members: 5, seed: 3, ..SimConfig::default() }).unwrap();
    sim.add_member(
        Member { user: User { id: ALICE, username: "alice".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(online(ALICE)),
    );
    sim
}

/// A simulator with Alice as a member, and `names` nodes against it and `nats`, each serving
/// her object.
fn cluster(nats: &Nats, names: &[&str]) -> (Simulator, Vec<Node>) {
    let sim = simulator();
    let nodes: Vec<Node> = names.iter().map(|n| Node::start(&sim, &nats.url(), n)).collect();
    for n in &nodes {
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &user_path(), &[], b"").status == 200), "node {:?} never served alice", n.cluster());
    }
    (sim, nodes)
}

fn user_path() -> String {
    format!("/api/v1/users/{ALICE}")
}

fn key_path(key: &str) -> String {
    format!("/api/v1/users/{ALICE}/storage/{key}")
}

fn put(port: u16, token: &str, key: &str, value: &str) -> support::Resp {
    request(port, "PUT", &key_path(key), &[("Authorization", token)], &value_body(value))
}

fn storage(port: u16) -> Value {
    request(port, "GET", &format!("/api/v1/users/{ALICE}/storage"), &[], b"").json()
}

/// A NATS server, [`cluster`] on it, and Alice's token, known to every node (the server and
/// the simulator live as long as the caller keeps them).
fn cluster_with_token(names: &[&str]) -> (Nats, Simulator, Vec<Node>, String) {
    let nats = Nats::start();
    let (sim, nodes) = cluster(&nats, names);
    let token = create_token_once_writable(&sim, ALICE, DEADLINE);
    token_everywhere(&nodes, &token);
    (nats, sim, nodes, token)
}

/// `PATCH`es Alice's privacy settings with `body` on the node on `port`.
fn patch_privacy(port: u16, token: &str, body: &[u8]) -> support::Resp {
    request(port, "PATCH", &format!("/api/v1/users/{ALICE}/privacy"), &[("Authorization", token), ("Content-Type", "application/json")], body)
}

/// Waits until every node knows `token` (a token is created on the leader, whose bot gets the
/// interaction, and reaches the others through the store).
fn token_everywhere(nodes: &[Node], token: &str) {
    token_on(&nodes.iter().map(|n| n.port).collect::<Vec<_>>(), token);
}

fn token_on(ports: &[u16], token: &str) {
    for &port in ports {
        assert!(
            wait_for(DEADLINE, || request(port, "GET", &format!("/api/v1/users/{ALICE}/privacy"), &[("Authorization", token)], b"").status == 200),
            "the node on port {port} never accepted the token"
        );
    }
}

fn subscribe(port: u16) -> Ws {
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/socket")).expect("upgrade");
    assert_eq!(next_frame(&mut ws)["op"], 1);
    ws.send(tungstenite::Message::text(json!({ "op": 2, "d": { "user_id": ALICE.to_string() } }).to_string())).unwrap();
    assert_eq!(next_frame(&mut ws)["t"], "INIT_ACK");
    ws
}

/// The next STORAGE_UPDATE a subscriber receives (presence updates in between are skipped).
fn next_storage_update(ws: &mut Ws) -> Value {
    loop {
        let frame = next_frame(ws);
        if frame["t"] == "STORAGE_UPDATE" {
            return frame;
        }
    }
}

#[test]
fn a_write_on_one_node_is_served_and_announced_by_every_node() {
    let (_nats, _sim, nodes, token) = cluster_with_token(&["a", "b", "c"]);
    let mut subs: Vec<Ws> = nodes.iter().map(|n| subscribe(n.port)).collect();

    let r = put(nodes[1].port, &token, "city", "Paris");
    assert_eq!((r.status, r.json()), (200, json!({"success": true})));
    let want = json!({ "t": "STORAGE_UPDATE", "op": 10, "user_id": ALICE.to_string(), "d": { "city": "Paris" } });
    for ws in subs.iter_mut() {
        assert_eq!(next_storage_update(ws), want);
    }
    for n in &nodes {
        assert_eq!(storage(n.port), json!({"city": "Paris"}), "node {:?}", n.cluster());
        let r = request(n.port, "GET", &key_path("city"), &[], b"");
        assert_eq!((r.status, r.json()), (200, json!({"value": "Paris"})));
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &user_path(), &[], b"").json()["storage"] == json!({"city": "Paris"})));
    }

    // A delete on a third node, and a new write on the first, arrive the same way.
    let r = request(nodes[2].port, "DELETE", &key_path("city"), &[("Authorization", &token)], b"");
    assert_eq!((r.status, r.json()), (200, json!({"success": true})));
    let r = put(nodes[0].port, &token, "mood", "calm");
    assert_eq!(r.status, 200, "{}", r.text());
    for ws in subs.iter_mut() {
        assert_eq!(next_storage_update(ws)["d"], json!({}));
        assert_eq!(next_storage_update(ws)["d"], json!({"mood": "calm"}));
    }
    for n in &nodes {
        assert_eq!(storage(n.port), json!({"mood": "calm"}));
    }
}

#[test]
fn concurrent_writers_on_different_nodes_cannot_exceed_512_pairs() {
    let (_nats, _sim, nodes, token) = cluster_with_token(&["a", "b", "c"]);
    for i in 0..500 {
        let r = put(nodes[i % 3].port, &token, &format!("k{i}"), "v");
        assert_eq!(r.status, 200, "pair {i}: {}", r.text());
    }
    // 60 new keys at once, 20 on each node: exactly 12 fit.
    let accepted = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for (n, node) in nodes.iter().enumerate() {
            let (token, accepted, port) = (&token, &accepted, node.port);
            scope.spawn(move || {
                for i in 0..20 {
                    let r = put(port, token, &format!("n{n}x{i}"), "v");
                    match r.status {
                        200 => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        400 => assert_eq!(r.json()["code"], "too_many_pairs", "{}", r.text()),
                        other => panic!("unexpected {other}: {}", r.text()),
                    }
                }
            });
        }
    });
    assert_eq!(accepted.load(Ordering::Relaxed), 12);
    for n in &nodes {
        assert!(
            wait_for(DEADLINE, || storage(n.port).as_object().map(|m| m.len()) == Some(512)),
            "node {:?} holds {:?} pairs",
            n.cluster(),
            storage(n.port).as_object().map(|m| m.len())
        );
    }
    let on_first = storage(nodes[0].port);
    for n in &nodes[1..] {
        assert_eq!(storage(n.port), on_first);
    }
}

#[test]
fn every_acknowledged_write_is_on_every_surviving_node_when_the_leader_is_killed_midway() {
    let nats = Nats::start();
    let sim = simulator();
    // Nodes as processes of the real binary, so that the leader can die by SIGKILL.
    let mut nodes: Vec<ProcessNode> = ["a", "b", "c"].iter().map(|n| ProcessNode::start(&sim, &nats.url(), n)).collect();
    for n in &nodes {
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &user_path(), &[], b"").status == 200), "node {} never served alice", n.node_id);
    }
    let token = create_token_once_writable(&sim, ALICE, DEADLINE);
    token_on(&nodes.iter().map(|n| n.port).collect::<Vec<_>>(), &token);
    let leader = nodes.iter().position(|n| n.cluster()["role"] == "leader").expect("a leader");
    // 1,000 writes over 250 keys (each key written four times, the last value wins), spread
    // over the nodes; the leader is killed after the 400th. Only acknowledged writes count.
    let mut expected = serde_json::Map::new();
    let mut acknowledged = 0;
    for i in 0..1_000 {
        if i == 400 {
            nodes[leader].kill();
        }
        if i % 3 == leader && i >= 400 {
            continue;
        }
        let node = &nodes[i % 3];
        let (key, value) = (format!("key{}", i % 250), format!("value{i}"));
        let r = put(node.port, &token, &key, &value);
        assert_eq!(r.status, 200, "write {i} on {}: {}", node.node_id, r.text());
        expected.insert(key, Value::String(value));
        acknowledged += 1;
    }
    assert!(acknowledged >= 800, "{acknowledged}");
    let expected = Value::Object(expected);
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != leader) {
        assert!(wait_for(DEADLINE, || storage(n.port) == expected), "node {} ({i}): {}", n.node_id, storage(n.port));
    }
}

#[test]
fn a_node_cut_off_from_nats_serves_reads_and_refuses_writes_with_503_until_nats_returns() {
    let mut nats = Nats::start();
    let (sim, nodes) = cluster(&nats, &["a", "b"]);
    let token = create_token_once_writable(&sim, ALICE, DEADLINE);
    token_everywhere(&nodes, &token);
    assert_eq!(put(nodes[0].port, &token, "city", "Paris").status, 200);
    for n in &nodes {
        assert!(wait_for(DEADLINE, || storage(n.port) == json!({"city": "Paris"})));
    }

    nats.kill();
    for n in &nodes {
        assert!(wait_for(DEADLINE, || n.cluster()["nats_connected"] == false), "{:?}", n.cluster());
        let r = put(n.port, &token, "city", "Rome");
        assert_eq!(
            (r.status, r.json()),
            (
                503,
                json!({"success": false, "code": "storage_unavailable",
                    "error": "Storage is unavailable on this node right now; nothing was written. Try again shortly."})
            )
        );
        let r = patch_privacy(n.port, &token, br#"{"hide_kv":true}"#);
        assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("storage_unavailable")), "{}", r.text());
        // Reads go on from what the node holds.
        assert_eq!(storage(n.port), json!({"city": "Paris"}));
        assert_eq!(request(n.port, "GET", &user_path(), &[], b"").status, 200);
    }

    nats.restart();
    assert!(wait_for(DEADLINE * 2, || put(nodes[1].port, &token, "city", "Rome").status == 200), "writes never came back");
    for n in &nodes {
        assert!(wait_for(DEADLINE, || storage(n.port) == json!({"city": "Rome"})), "node {:?}: {}", n.cluster(), storage(n.port));
    }
}

#[test]
fn a_privacy_setting_made_on_one_node_applies_on_every_node() {
    let (_nats, _sim, nodes, token) = cluster_with_token(&["a", "b", "c"]);
    assert_eq!(put(nodes[0].port, &token, "city", "Paris").status, 200);
    for n in &nodes {
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &user_path(), &[], b"").json()["storage"] == json!({"city": "Paris"})));
    }
    let r = patch_privacy(nodes[2].port, &token, br#"{"hide_kv":true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["hide_kv"], true, "{}", r.text());
    for n in &nodes {
        // The public object hides the map; the public storage routes refuse it.
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &user_path(), &[], b"").json()["storage"] == json!({})), "node {:?}", n.cluster());
        assert_eq!(request(n.port, "GET", &format!("/api/v1/users/{ALICE}/storage"), &[], b"").status, 401);
        let r = request(n.port, "GET", &format!("/api/v1/users/{ALICE}/privacy"), &[("Authorization", &token)], b"");
        assert_eq!(r.json()["hide_kv"], true, "node {:?}: {}", n.cluster(), r.text());
    }
}

#[test]
fn a_member_who_leaves_loses_their_storage_on_every_node() {
    let (_nats, sim, nodes, token) = cluster_with_token(&["a", "b"]);
    assert_eq!(put(nodes[1].port, &token, "city", "Paris").status, 200);
    for n in &nodes {
        assert!(wait_for(DEADLINE, || storage(n.port) == json!({"city": "Paris"})));
    }
    sim.remove_member(ALICE);
    sim.add_member(
        Member { user: User { id: ALICE, username: "alice".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(online(ALICE)),
    );
    for n in &nodes {
        assert!(
            wait_for(DEADLINE, || request(n.port, "GET", &format!("/api/v1/users/{ALICE}/storage"), &[], b"").json()["code"] == "storage_not_found"),
            "node {:?}: {}",
            n.cluster(),
            storage(n.port)
        );
        assert_eq!(put(n.port, &token, "city", "Rome").status, 401);
    }
}

#[test]
fn a_document_larger_than_the_nats_servers_largest_message_is_refused_as_too_large() {
    // The node's own bound (storage.max_user_bytes, 16 MiB by default) is far above this.
    let nats = Nats::start_with_config("max_payload: 16384\n");
    let (sim, nodes) = cluster(&nats, &["a", "b"]);
    let token = create_token_once_writable(&sim, ALICE, DEADLINE);
    token_everywhere(&nodes, &token);
    assert_eq!(put(nodes[0].port, &token, "small", "x").status, 200);
    let r = put(nodes[0].port, &token, "big", &"y".repeat(20_000));
    let bound = 16_384 - 1_024;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"success": false, "code": "storage_too_large", "error": format!("A storage can hold at most {bound} bytes of JSON.")}))
    );
    // Nothing of the refused write is anywhere; the storage takes writes that fit.
    for n in &nodes {
        assert!(wait_for(DEADLINE, || storage(n.port) == json!({"small": "x"})), "node {:?}: {}", n.cluster(), storage(n.port));
    }
    assert_eq!(put(nodes[1].port, &token, "big", &"y".repeat(10_000)).status, 200);
}

#[test]
fn a_single_nodes_storage_and_privacy_carry_over_when_it_joins_a_cluster() {
    let nats = Nats::start();
    let sim = simulator();
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = lantern::demo::config_for(&sim, dir.path(), 0, 1).unwrap();
        c.kv_secret = lantern::config::parse_kv_secret(support::cluster::CLUSTER_KV_SECRET).unwrap();
        c
    };
    // Alone: a token, a pair and a privacy setting in the node's shard files.
    let alone = lantern::server::Server::start(config()).expect("node starts");
    let port = alone.port();
    assert!(wait_for(DEADLINE, || request(port, "GET", &user_path(), &[], b"").status == 200));
    let token = create_token_once_writable(&sim, ALICE, DEADLINE);
    assert_eq!(put(port, &token, "city", "Paris").status, 200);
    let r = patch_privacy(port, &token, br#"{"hide_last_seen":true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    alone.shutdown();

    // The same data directory in cluster mode, and a second node with nothing of its own.
    let mut joined = config();
    joined.cluster = Some(support::cluster::cluster_config(&nats.url(), "a"));
    let first = lantern::server::Server::start(joined).expect("node starts");
    let second = Node::start(&sim, &nats.url(), "b");
    for port in [first.port(), second.port] {
        let privacy = |port| request(port, "GET", &format!("/api/v1/users/{ALICE}/privacy"), &[("Authorization", &token)], b"").json();
        assert!(wait_for(DEADLINE, || privacy(port)["hide_last_seen"] == true), "port {port}: {}", privacy(port));
        assert!(wait_for(DEADLINE, || storage(port) == json!({"city": "Paris"})), "port {port}: {}", storage(port));
    }
    // The carried-over token writes on the node that never saw it locally.
    assert_eq!(put(second.port, &token, "mood", "calm").status, 200);
    assert!(wait_for(DEADLINE, || storage(first.port()) == json!({"city": "Paris", "mood": "calm"})));
    first.shutdown();
}
