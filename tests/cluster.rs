//! Cluster mode against a real `nats-server` (started per test on a free port, killed by a
//! guard): gateway leadership, `/health`'s cluster object, NATS coming and going.
//!
//! The tests need `nats-server` on PATH (`.ci/run` installs it); without it they fail, saying
//! what to install.

mod support;

use lantern::discord::{Activity, ClientStatus, Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::cluster::{stored_session, Nats, Node, ProcessNode};
use support::kv::{next_frame, Ws};
use support::{promtool_check, request, wait_for, DEADLINE};

fn leaders(nodes: &[&Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.cluster())
        .filter(|c| c["role"] == "leader")
        .map(|c| c["node_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn exactly_one_node_leads_and_every_node_names_it() {
    let nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let nodes: Vec<Node> = ["a", "b", "c"].iter().map(|id| Node::start(&sim, &nats.url(), id)).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(
        wait_for(DEADLINE, || {
            let views: Vec<Value> = all.iter().map(|n| n.cluster()).collect();
            let holder = &views[0]["lease_holder"];
            leaders(&all).len() == 1 && holder.is_string() && views.iter().all(|v| &v["lease_holder"] == holder)
        }),
        "no single agreed leader: {:?}",
        all.iter().map(|n| n.cluster()).collect::<Vec<_>>()
    );
    let leader = leaders(&all)[0].clone();
    // Only the leader connects to the gateway.
    assert!(wait_for(DEADLINE, || nodes.iter().all(|n| n.health().0 == 200)), "{:?}", nodes.iter().map(|n| n.health()).collect::<Vec<_>>());
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.live_connections), (1, 1), "{stats:?}");
    for n in &nodes {
        let (status, body) = n.health();
        assert_eq!(status, 200);
        let role = if body["cluster"]["node_id"] == leader.as_str() { "leader" } else { "follower" };
        assert_eq!(
            body["cluster"],
            json!({"node_id": body["cluster"]["node_id"], "role": role, "lease_holder": leader, "nats_connected": true,
                "replication_lag_ms": body["cluster"]["replication_lag_ms"], "synced": true})
        );
    }
    // Stays that way over several lease periods.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(leaders(&all), vec![leader.clone()]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sim.stats().identifies, 1);
}

#[test]
fn a_stopping_leader_hands_its_gateway_session_to_a_node_that_resumes_it() {
    let nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let id = Snowflake(1_300_000_000_000_000_002);
    sim.add_member(
        Member { user: User { id, username: "bob".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(presence(id, Status::Online, None)),
    );
    let mut nodes: Vec<Node> = ["a", "b", "c"].iter().map(|id| Node::start(&sim, &nats.url(), id)).collect();
    assert!(wait_for(DEADLINE, || leaders(&nodes.iter().collect::<Vec<_>>()).len() == 1));
    assert!(wait_for(DEADLINE, || nodes.iter().all(|n| n.health().0 == 200)), "{:?}", nodes.iter().map(|n| n.health()).collect::<Vec<_>>());
    let first = leaders(&nodes.iter().collect::<Vec<_>>())[0].clone();
    let index = nodes.iter().position(|n| n.cluster()["node_id"] == first.as_str()).unwrap();
    let mut old = nodes.remove(index);
    // A subscriber on a node that stays.
    let path = format!("/api/v1/users/{id}");
    assert!(wait_for(DEADLINE, || request(nodes[0].port, "GET", &path, &[], b"").status == 200));
    let (mut ws, _) = subscribe(nodes[0].port, id);
    assert_eq!(sim.stats().identifies, 1);
    // Once it has a session to hand over (stored at a refresh, once its events are acknowledged).
    assert!(wait_for(DEADLINE, || stored_session(&nats.url()).is_some_and(|s| s["session_id"].is_string())), "no session stored");
    let started = Instant::now();
    old.stop();
    // Sent while no node holds the gateway: the resumed session replays it.
    sim.set_presence(presence(id, Status::Idle, None));
    let rest: Vec<&Node> = nodes.iter().collect();
    assert!(wait_for(DEADLINE, || leaders(&rest).len() == 1), "no new leader: {:?}", rest.iter().map(|n| n.cluster()).collect::<Vec<_>>());
    let second = leaders(&rest)[0].clone();
    assert_ne!(second, first);
    // The old leader closed its connection; the new one resumed the session on its own.
    assert!(wait_for(DEADLINE, || sim.stats().live_connections == 1 && sim.stats().resumes == 1), "{:?}", sim.stats());
    eprintln!("gateway session resumed {:?} after the leader began to stop", started.elapsed());
    assert_eq!(sim.stats().identifies, 1, "the new leader identified instead of resuming: {:?}", sim.stats());
    // Sent after the take-over.
    sim.set_presence(presence(id, Status::Dnd, Some("Chess")));
    let statuses: Vec<Value> = (0..2).map(|_| next_frame(&mut ws)["d"]["status"].clone()).collect();
    assert_eq!(statuses, [json!("idle"), json!("dnd")]);
    assert!(wait_for(DEADLINE, || rest.iter().all(|n| n.cluster()["lease_holder"] == second.as_str())));
    // The new leader is healthy without a member list of its own: it was replicated.
    assert!(wait_for(DEADLINE, || rest.iter().all(|n| n.health().0 == 200)), "{:?}", rest.iter().map(|n| n.health()).collect::<Vec<_>>());
}

#[test]
fn a_node_without_nats_is_unavailable_then_leads_once_nats_is_up() {
    let mut nats = Nats::start();
    nats.kill();
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let node = Node::start(&sim, &nats.url(), "solo");
    let (status, body) = node.health();
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["cluster"], json!({"node_id": "solo", "role": "follower", "lease_holder": null, "nats_connected": false, "replication_lag_ms": null, "synced": false}));
    assert_eq!(sim.stats().connections, 0, "a node that cannot reach NATS must not connect to the gateway");
    nats.restart();
    assert!(wait_for(DEADLINE, || node.health().0 == 200 && node.cluster()["role"] == "leader"), "{:?}", node.health());
    let view = node.cluster();
    assert_eq!(
        view,
        json!({"node_id": "solo", "role": "leader", "lease_holder": "solo", "nats_connected": true, "replication_lag_ms": view["replication_lag_ms"], "synced": true})
    );
    assert!(wait_for(DEADLINE, || sim.stats().identifies == 1), "{:?}", sim.stats());
}

#[test]
fn a_leader_cut_off_from_nats_stops_its_gateway_before_the_lease_expires() {
    let mut nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let node = Node::start(&sim, &nats.url(), "solo");
    assert!(wait_for(DEADLINE, || node.health().0 == 200), "{:?}", node.health());
    nats.kill();
    let cut = Instant::now();
    // The leader gives up within two thirds of the TTL (600 ms here), before the lease can
    // expire; the measured time is printed, not asserted.
    assert!(wait_for(DEADLINE, || sim.stats().live_connections == 0), "{:?}", sim.stats());
    eprintln!("the gateway closed {:?} after NATS went away", cut.elapsed());
    assert!(wait_for(DEADLINE, || node.cluster()["role"] == "follower"), "{:?}", node.cluster());
    nats.restart();
    assert!(wait_for(DEADLINE, || node.cluster()["role"] == "leader"), "{:?}", node.cluster());
    assert!(wait_for(DEADLINE, || sim.stats().live_connections == 1));
}

fn subscribe(port: u16, id: Snowflake) -> (Ws, Value) {
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/socket")).expect("upgrade");
    let hello = next_frame(&mut ws);
    assert_eq!(hello["op"], 1);
    ws.send(tungstenite::Message::text(json!({ "op": 2, "d": { "user_id": id.to_string() } }).to_string())).unwrap();
    let ack = next_frame(&mut ws);
    assert_eq!(ack["t"], "INIT_ACK", "{ack}");
    (ws, ack)
}

/// Up to `n` text frames, as many as arrive within the deadline.
fn frames(ws: &mut Ws, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))).unwrap();
        }
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => out.push(serde_json::from_str(&t).unwrap()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

fn presence(id: Snowflake, status: Status, activity: Option<&str>) -> Presence {
    Presence {
        user: PartialUser { id, ..Default::default() },
        status,
        client_status: ClientStatus { desktop: Some(status), ..Default::default() },
        activities: activity.map(|name| vec![Activity { name: name.into(), ..Activity::default() }]).unwrap_or_default(),
        ..Default::default()
    }
}

#[test]
fn subscribers_on_every_node_receive_every_change_as_one_node_sends_it() {
    let nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 20, seed: 7, ..SimConfig::default() }).unwrap();
    let id = Snowflake(1_300_000_000_000_000_001);
    sim.add_member(
        Member { user: User { id, username: "alice".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(presence(id, Status::Online, None)),
    );
    let nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| Node::start(&sim, &nats.url(), n)).collect();
    let path = format!("/api/v1/users/{id}");
    // Every node has the whole member list, the followers through replication.
    for n in &nodes {
        assert!(wait_for(DEADLINE, || request(n.port, "GET", "/", &[], b"").json()["data"]["currently_monitoring_users"] == 21 + 1),
            "node {:?}: {}", n.cluster(), request(n.port, "GET", "/", &[], b"").text());
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &path, &[], b"").status == 200));
    }
    let leader_user = request(nodes.iter().find(|n| n.cluster()["role"] == "leader").unwrap().port, "GET", &path, &[], b"").text();
    for n in &nodes {
        assert_eq!(request(n.port, "GET", &path, &[], b"").text(), leader_user, "{:?}", n.cluster());
    }
    let mut subs: Vec<(Ws, Value)> = nodes.iter().map(|n| subscribe(n.port, id)).collect();
    for (_, ack) in &subs[1..] {
        assert_eq!(ack, &subs[0].1);
    }
    let changes = [
        (Status::Idle, None),
        (Status::Dnd, Some("Chess")),
        (Status::Dnd, Some("Go")),
        (Status::Offline, None),
        (Status::Online, Some("Chess")),
    ];
    let mut seen: Vec<Vec<Value>> = vec![Vec::new(); subs.len()];
    for (status, activity) in changes {
        sim.set_presence(presence(id, status, activity));
        for (i, (ws, _)) in subs.iter_mut().enumerate() {
            seen[i].push(next_frame(ws));
        }
    }
    let statuses: Vec<&str> = seen[0].iter().map(|f| f["d"]["status"].as_str().unwrap_or_default()).collect();
    assert_eq!(statuses, ["idle", "dnd", "dnd", "offline", "online"], "{:?}", seen[0]);
    for s in &seen[1..] {
        assert_eq!(s, &seen[0]);
    }
    // A member who leaves is gone from every node, and every subscriber hears it the same way.
    sim.remove_member(id);
    let left: Vec<Value> = subs.iter_mut().map(|(ws, _)| next_frame(ws)).collect();
    assert!(left.iter().all(|f| f == &left[0]), "{left:?}");
    for n in &nodes {
        assert!(wait_for(DEADLINE, || request(n.port, "GET", &path, &[], b"").status == 404));
    }
}

#[test]
fn after_a_kill_9_of_the_leader_another_node_resumes_subscribers_miss_nothing_and_the_restarted_node_catches_up() {
    let nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 30, seed: 11, ..SimConfig::default() }).unwrap();
    let id = Snowflake(1_300_000_000_000_000_003);
    sim.add_member(
        Member { user: User { id, username: "carol".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(presence(id, Status::Online, None)),
    );
    let mut nodes: Vec<ProcessNode> = ["a", "b", "c"].iter().map(|n| ProcessNode::start(&sim, &nats.url(), n)).collect();
    let lead = |nodes: &[ProcessNode]| -> Vec<usize> { (0..nodes.len()).filter(|&i| nodes[i].cluster()["role"] == "leader").collect() };
    assert!(wait_for(DEADLINE, || lead(&nodes).len() == 1), "{:?}", nodes.iter().map(|n| n.cluster()).collect::<Vec<_>>());
    let leader = lead(&nodes)[0];
    let survivors: Vec<usize> = (0..nodes.len()).filter(|&i| i != leader).collect();
    let path = format!("/api/v1/users/{id}");
    for &i in &survivors {
        assert!(wait_for(DEADLINE, || request(nodes[i].port, "GET", &path, &[], b"").status == 200));
    }
    let mut subs: Vec<Ws> = survivors.iter().map(|&i| subscribe(nodes[i].port, id).0).collect();
    assert_eq!((sim.stats().identifies, sim.stats().resumes), (1, 0));
    // The leader stores its session at its refreshes, once its events are acknowledged; killed
    // before the first, it leaves nothing to resume.
    assert!(wait_for(DEADLINE, || stored_session(&nats.url()).is_some_and(|s| s["session_id"].is_string())), "no session stored");

    nodes[leader].kill();
    let killed = Instant::now();
    // Sent while no node holds the gateway (the lease has not aged out yet).
    sim.set_presence(presence(id, Status::Idle, Some("outage")));
    let bound = Duration::from_secs(10);
    assert!(
        wait_for(bound, || survivors.iter().any(|&i| nodes[i].cluster()["role"] == "leader") && sim.stats().resumes == 1),
        "no node resumed the gateway within {bound:?}: {:?} {:?}\n{}",
        survivors.iter().map(|&i| nodes[i].cluster()).collect::<Vec<_>>(),
        sim.stats(),
        nodes.iter().map(|n| n.log_tail(30)).collect::<Vec<_>>().join("\n")
    );
    eprintln!("after kill -9 of the leader, another node resumed the gateway in {:?}", killed.elapsed());
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes, stats.live_connections), (1, 1, 1), "{stats:?}");

    // The change sent during the outage, then every change sent after the take-over, reach
    // every subscriber in order. Each is sent once the last has arrived: a follower that falls
    // behind by more than one change of a user reads only the latest (the presence bucket
    // keeps one value per user).
    let label = |status: Status, activity: Option<&str>| (json!(status).as_str().unwrap_or_default().to_owned(), activity.map(|a| json!(a)).unwrap_or(Value::Null));
    let changes = [(Status::Dnd, Some("one")), (Status::Online, Some("two")), (Status::Idle, None), (Status::Dnd, Some("three"))];
    let expected: Vec<(String, Value)> = std::iter::once((Status::Idle, Some("outage"))).chain(changes).map(|(s, a)| label(s, a)).collect();
    let mut got: Vec<Vec<(String, Value)>> = vec![Vec::new(); subs.len()];
    for step in 0..expected.len() {
        if step > 0 {
            let (status, activity) = changes[step - 1];
            sim.set_presence(presence(id, status, activity));
        }
        for (ws, got) in subs.iter_mut().zip(got.iter_mut()) {
            got.extend(frames(ws, 1).iter().map(|f| (f["d"]["status"].as_str().unwrap_or_default().to_owned(), f["d"]["activities"][0]["name"].clone())));
        }
    }
    for got in &got {
        assert_eq!(got, &expected, "{:?}\n{}", sim.stats(), nodes.iter().map(|n| n.log_tail(40)).collect::<Vec<_>>().join("\n"));
    }

    // The killed node comes back and catches up: every user as a surviving node serves it.
    nodes[leader].restart();
    let ids: Vec<Snowflake> = sim.members().iter().map(|(m, _)| m.user.id).collect();
    // A user as a node serves it, less the Spotify elapsed time (as of the request).
    let user = |port: u16, u: Snowflake| -> (u16, Value) {
        let r = request(port, "GET", &format!("/api/v1/users/{u}"), &[], b"");
        let mut body = r.json();
        if let Some(spotify) = body["active_platforms"]["spotify"].as_object_mut() {
            spotify.remove("time");
        }
        (r.status, body)
    };
    let survivor = nodes[survivors[0]].port;
    assert!(ids.iter().all(|&u| user(survivor, u).0 == 200), "a member unknown to a surviving node");
    let differ = || -> Vec<(Snowflake, (u16, Value), (u16, Value))> {
        ids.iter().map(|&u| (u, user(nodes[leader].port, u), user(survivor, u))).filter(|(_, a, b)| a != b).collect()
    };
    let caught_up = wait_for(DEADLINE, || differ().is_empty());
    let left = differ();
    assert!(caught_up, "the restarted node never caught up: {} users differ, the first: {:?}", left.len(), left.first());
    assert_eq!(nodes[leader].cluster()["role"], "follower");
}

#[test]
fn a_follower_reports_healthy_only_once_it_has_applied_every_replicated_user() {
    let nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 2000, seed: 5, ..SimConfig::default() }).unwrap();
    let leader = Node::start(&sim, &nats.url(), "a");
    let users = sim.members().len() as u64;
    let loaded = || {
        let (status, body) = leader.health();
        status == 200 && body["monitored_users"] == users
    };
    assert!(wait_for(DEADLINE * 2, loaded), "{:?}", leader.health());
    // A first follower shows when the bucket holds every user.
    let first = Node::start(&sim, &nats.url(), "b");
    assert!(wait_for(DEADLINE * 2, || first.health().1["monitored_users"] == users), "{:?}", first.health());
    // A second one, polled from its start: at its first 200 it already serves every user.
    let second = Node::start(&sim, &nats.url(), "c");
    let mut before = Vec::new();
    let deadline = Instant::now() + DEADLINE * 2;
    let body = loop {
        let (status, body) = second.health();
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "never healthy: {body}");
        if status != 0 {
            before.push((body["cluster"]["synced"].clone(), body["monitored_users"].clone()));
        }
    };
    assert_eq!(body["monitored_users"], users, "healthy before every user was applied");
    assert_eq!((body["cluster"]["role"].as_str(), body["cluster"]["synced"].as_bool()), (Some("follower"), Some(true)));
    // Whatever it said before, it said it was not synced.
    assert!(before.iter().all(|(synced, _)| synced == &json!(false)), "{before:?}");
    eprintln!("{} health checks answered 503 while the follower applied {users} users", before.len());
}

#[test]
fn demo_cluster_3_prints_three_nodes_with_one_leader_and_stops_everything_on_ctrl_c() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_lantern"))
        .args(["demo", "--cluster", "3", "--port", "0", "--shards", "1", "--members", "50", "--data-dir"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lantern demo starts");
    // Killed if the test fails before it stops.
    let mut demo = support::binary::Running(demo);
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut nodes, mut nats) = (Vec::new(), None);
    let deadline = Instant::now() + DEADLINE;
    while nodes.len() < 3 || nats.is_none() {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the demo prints three nodes and NATS");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name, url, ..] if name.starts_with("node-") => {
                let port: u16 = url.trim_start_matches("http://127.0.0.1:").trim_end_matches('/').parse().expect("a node URL");
                nodes.push(port);
            }
            ["nats", url] => nats = Some(url.trim_start_matches("nats://127.0.0.1:").parse::<u16>().expect("a NATS URL")),
            _ => {}
        }
    }
    let nats = nats.unwrap();
    std::thread::spawn(move || rx.iter().for_each(drop));
    let views = || -> Vec<(u16, Value)> {
        nodes
            .iter()
            .map(|&p| {
                let r = request(p, "GET", "/health", &[], b"");
                (r.status, r.json())
            })
            .collect()
    };
    assert!(
        wait_for(DEADLINE, || {
            let v = views();
            v.iter().all(|(status, _)| *status == 200) && v.iter().filter(|(_, b)| b["cluster"]["role"] == "leader").count() == 1
        }),
        "{:?}",
        views()
    );
    let names: std::collections::BTreeSet<String> = views().iter().map(|(_, b)| b["cluster"]["node_id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(names, ["node-1", "node-2", "node-3"].iter().map(|s| s.to_string()).collect());
    // Ctrl-C: every node and the NATS server stop, and the demo exits cleanly.
    // SAFETY: a signal to the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(demo.0.id() as i32, libc::SIGINT) }, 0);
    let mut exited = None;
    assert!(wait_for(DEADLINE, || { exited = demo.0.try_wait().unwrap(); exited.is_some() }), "the demo did not stop on SIGINT");
    assert!(exited.unwrap().success(), "{exited:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", nats)).is_err(), "nats-server still runs");
    for port in nodes {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "node on {port} still runs");
    }
}

/// `name{labels} value` lines of a node's `/metrics`, keyed by `name{labels}`.
fn metrics_of(port: u16) -> (String, std::collections::BTreeMap<String, f64>) {
    let text = request(port, "GET", "/metrics", &[], b"").text();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect();
    (text, samples)
}

#[test]
fn metrics_show_each_nodes_role_lease_changes_nats_sync_and_replication_lag() {
    let nats = Nats::start();
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let id = Snowflake(1_300_000_000_000_000_004);
    sim.add_member(
        Member { user: User { id, username: "dave".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(presence(id, Status::Online, None)),
    );
    let mut a = Node::start(&sim, &nats.url(), "a");
    assert!(wait_for(DEADLINE, || a.health().0 == 200 && a.cluster()["role"] == "leader"), "{:?}", a.health());
    let b = Node::start(&sim, &nats.url(), "b");
    assert!(wait_for(DEADLINE, || b.health().0 == 200 && b.cluster()["lease_holder"] == "a"), "{:?}", b.health());
    // A change replicated after b started: b reports how old it was when read.
    sim.set_presence(presence(id, Status::Dnd, Some("metrics")));
    let lag = "lantern_cluster_replication_lag_seconds";
    assert!(wait_for(DEADLINE, || metrics_of(b.port).1.contains_key(lag)), "{}", metrics_of(b.port).0);
    let (text, ma) = metrics_of(a.port);
    let (_, mb) = metrics_of(b.port);
    let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied();
    for (m, leader) in [(&ma, 1.0), (&mb, 0.0)] {
        assert_eq!(get(m, "lantern_cluster_leader"), Some(leader));
        assert_eq!(get(m, "lantern_cluster_nats_connected"), Some(1.0));
        assert_eq!(get(m, "lantern_cluster_synced"), Some(1.0));
        // Each saw one holder so far: a itself, b the node a.
        assert_eq!(get(m, "lantern_cluster_lease_holder_changes_total"), Some(1.0));
    }
    assert!(get(&mb, lag).is_some_and(|s| (0.0..60.0).contains(&s)), "{mb:?}");
    promtool_check(&text);
    // a stops: b takes the lease, one more change of holder.
    a.stop();
    assert!(wait_for(DEADLINE, || get(&metrics_of(b.port).1, "lantern_cluster_leader") == Some(1.0)), "{}", metrics_of(b.port).0);
    assert_eq!(get(&metrics_of(b.port).1, "lantern_cluster_lease_holder_changes_total"), Some(2.0));
    promtool_check(&metrics_of(b.port).0);
}

#[test]
fn a_lease_that_is_never_refreshed_is_taken_after_its_ttl_even_while_the_server_keeps_it() {
    let nats = Nats::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        // The lease bucket as the nodes make it, but keeping values for ever: only the nodes'
        // own clocks can end this holder's lease.
        let bucket = lantern::cluster::client::Bucket { name: "lantern_lease", description: "lease", history: 1, max_age: Duration::ZERO, memory: true, replicas: 1 };
        bucket.open(&js).await.unwrap().create("gateway", r#"{"node_id":"gone"}"#.into()).await.unwrap();
    });
    let sim = Simulator::start(SimConfig { members: 5, ..SimConfig::default() }).unwrap();
    let started = Instant::now();
    let node = Node::start(&sim, &nats.url(), "a");
    assert!(wait_for(DEADLINE, || node.cluster()["role"] == "leader"), "{:?}", node.cluster());
    let took = started.elapsed();
    eprintln!("a lease left unrefreshed was taken {took:?} after the node started");
    // Never before the TTL (900 ms in these tests) has passed since the node first read it.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(wait_for(DEADLINE, || sim.stats().identifies == 1 && node.health().0 == 200), "{:?} {:?}", sim.stats(), node.health());
}
