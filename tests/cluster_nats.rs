//! Cluster mode on a three-server NATS cluster (buckets with three replicas): storage writes
//! acknowledged before one NATS server dies are on every node afterwards, and writes go on
//! once the nodes have moved to the surviving servers.
//!
//! Needs `nats-server` on PATH (`.ci/run` installs it); without it the tests fail, saying what
//! to install.

mod support;

use lantern::discord::{Member, PartialUser, Presence, Snowflake, Status, User};
use lantern::sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use support::cluster::{cluster_config, create_token_once_writable, NatsCluster, Node};
use support::kv::{value_body};
use support::{request, wait_for, DEADLINE};

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);

fn storage(port: u16) -> Value {
    request(port, "GET", &format!("/api/v1/users/{ALICE}/storage"), &[], b"").json()
}

#[test]
fn writes_acknowledged_by_a_three_server_nats_cluster_survive_the_loss_of_a_server() {
    let mut nats = NatsCluster::start();
    let sim = Simulator::start(SimConfig { members: 5, seed: 3, ..SimConfig::default() }).unwrap();
    sim.add_member(
        Member { user: User { id: ALICE, username: "alice".into(), discriminator: "0".into(), ..Default::default() }, ..Default::default() },
        Some(Presence { user: PartialUser { id: ALICE, ..Default::default() }, status: Status::Online, ..Default::default() }),
    );
    let nodes: Vec<Node> = ["a", "b"]
        .iter()
        .map(|name| Node::start_with(&sim, lantern::cluster::ClusterConfig { replicas: 3, ..cluster_config(&nats.urls(), name) }))
        .collect();
    // Raft elects the buckets' leaders before the first write goes through: allow for it.
    let slow = DEADLINE * 2;
    for n in &nodes {
        assert!(wait_for(slow, || request(n.port, "GET", &format!("/api/v1/users/{ALICE}"), &[], b"").status == 200), "{:?}", n.cluster());
    }
    let token = create_token_once_writable(&sim, ALICE, slow);
    for n in &nodes {
        let accepted = || request(n.port, "GET", &format!("/api/v1/users/{ALICE}/privacy"), &[("Authorization", &token)], b"").status == 200;
        assert!(wait_for(slow, accepted), "node {:?} never accepted the token", n.cluster());
    }

    // 60 writes over both nodes; the first NATS server dies after the 30th. A write refused
    // while the nodes move to another server (503) is sent again until acknowledged.
    let mut expected = serde_json::Map::new();
    let mut refused = 0;
    for i in 0..60 {
        if i == 30 {
            nats.servers[0].kill();
        }
        let port = nodes[i % 2].port;
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let written = wait_for(slow, || {
            let r = request(port, "PUT", &format!("/api/v1/users/{ALICE}/storage/{key}"), &[("Authorization", &token)], &value_body(&value));
            assert!(matches!(r.status, 200 | 503), "write {i}: {} {}", r.status, r.text());
            refused += usize::from(r.status == 503);
            r.status == 200
        });
        assert!(written, "write {i} was never acknowledged");
        expected.insert(key, Value::String(value));
    }
    eprintln!("{refused} writes were refused (503) while the nodes moved to another NATS server");
    let expected = Value::Object(expected);
    for n in &nodes {
        assert!(wait_for(slow, || storage(n.port) == expected), "node {:?}: {}", n.cluster(), storage(n.port));
        assert!(wait_for(slow, || n.cluster()["nats_connected"] == json!(true)), "{:?}", n.cluster());
    }
    // A node started now, against the two survivors, reads every acknowledged write.
    let late = Node::start_with(&sim, lantern::cluster::ClusterConfig { replicas: 3, ..cluster_config(&nats.urls(), "late") });
    assert!(wait_for(slow, || storage(late.port) == expected), "late node: {}", storage(late.port));
}
