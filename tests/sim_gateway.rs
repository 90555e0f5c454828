//! The simulator, black-box over real TCP: twilight-gateway 0.18 as the gateway client,
//! twilight-http 0.18 against the REST API, and plain HTTP for the CDN and control API.

use futures_util::StreamExt;
use lantern::discord::{Member, PartialUser, Presence, Snowflake, Status};
use lantern::sim::{Fault, SimConfig, Simulator};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;
use tokio::time::{timeout, Instant};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{ConfigBuilder, EventTypeFlags, Intents, Message, Shard, ShardId};
use twilight_model::id::Id;

const DEADLINE: Duration = Duration::from_secs(20);

fn sim(members: usize, heartbeat_ms: u64) -> Simulator {
    Simulator::start(SimConfig {
        members,
        heartbeat_interval_ms: heartbeat_ms,
        ..SimConfig::default()
    })
    .unwrap()
}

/// A twilight shard plus every frame it has yielded so far.
struct Client {
    shard: Shard,
    frames: Vec<Value>,
    closes: Vec<Option<u16>>,
    ended: bool,
}

impl Client {
    fn new(sim: &Simulator, token: &str) -> Client {
        let config = ConfigBuilder::new(
            token.to_owned(),
            Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES,
        )
        .proxy_url(sim.gateway_url())
        .queue(InMemoryQueue::new(0, 0, Duration::ZERO, 0))
        .build();
        Client::on(config)
    }

    /// A client in another process resuming `session` (at `sequence`) rather than identifying.
    fn resuming(sim: &Simulator, session: &str, sequence: u64) -> Client {
        let config = ConfigBuilder::new(
            sim.token(),
            Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES,
        )
        .proxy_url(sim.gateway_url())
        .queue(InMemoryQueue::new(0, 0, Duration::ZERO, 0))
        .session(twilight_gateway::Session::new(sequence, session.to_owned()))
        .resume_url(sim.gateway_url())
        .build();
        Client::on(config)
    }

    fn on(config: twilight_gateway::Config) -> Client {
        Client { shard: Shard::with_config(ShardId::ONE, config), frames: Vec::new(), closes: Vec::new(), ended: false }
    }

    /// Reads frames until `pred` holds; false at the deadline or when the stream ends.
    async fn until(&mut self, pred: impl Fn(&Client) -> bool) -> bool {
        let end = Instant::now() + DEADLINE;
        while !pred(self) {
            if self.ended || Instant::now() >= end {
                return false;
            }
            self.pump().await;
        }
        true
    }

    /// Waits for a condition outside the shard (simulator stats) while keeping it polled.
    async fn until_sim(
        &mut self,
        sim: &Simulator,
        pred: impl Fn(&lantern::sim::SimStats) -> bool,
    ) -> bool {
        let end = Instant::now() + DEADLINE;
        while !pred(&sim.stats()) {
            if self.ended || Instant::now() >= end {
                return false;
            }
            self.pump().await;
        }
        true
    }

    async fn pump(&mut self) {
        match timeout(Duration::from_millis(10), self.shard.next()).await {
            Err(_) => {}
            Ok(None) => self.ended = true,
            Ok(Some(Ok(Message::Text(t)))) => {
                // Everything the simulator sends must also decode as twilight's typed events.
                twilight_gateway::parse(t.clone(), EventTypeFlags::all())
                    .expect("twilight parses the frame");
                self.frames.push(serde_json::from_str(&t).unwrap());
            }
            Ok(Some(Ok(Message::Close(frame)))) => self.closes.push(frame.map(|f| f.code)),
            Ok(Some(Err(_))) => {}
        }
    }

    fn dispatches(&self, t: &str) -> Vec<&Value> {
        self.frames
            .iter()
            .filter(|f| f["op"] == 0 && f["t"] == t)
            .collect()
    }

    fn count(&self, t: &str) -> usize {
        self.dispatches(t).len()
    }
}

fn presence_of(user: Snowflake, status: Status, state: &str) -> Presence {
    Presence {
        user: PartialUser {
            id: user,
            ..PartialUser::default()
        },
        guild_id: None,
        status,
        activities: vec![lantern::discord::Activity {
            name: "Custom Status".into(),
            kind: 4,
            state: Some(state.into()),
            ..Default::default()
        }],
        client_status: lantern::discord::ClientStatus {
            desktop: Some(status),
            ..Default::default()
        },
    }
}

/// A generated (non-bot) member of the simulator.
fn some_member(sim: &Simulator) -> Member {
    sim.members()
        .into_iter()
        .map(|(m, _)| m)
        .find(|m| m.user.id != sim.application_id())
        .unwrap()
}

#[tokio::test]
async fn identify_gets_ready_and_full_guild_create() {
    let sim = sim(20, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);

    let ready = &c.dispatches("READY")[0];
    assert_eq!(ready["s"], 1);
    assert_eq!(ready["d"]["v"], 10);
    assert_eq!(ready["d"]["resume_gateway_url"], sim.gateway_url());
    assert_eq!(ready["d"]["user"]["id"], sim.application_id().to_string());
    assert_eq!(ready["d"]["guilds"][0]["id"], sim.guild_id().to_string());

    let gc = &c.dispatches("GUILD_CREATE")[0];
    assert_eq!(gc["s"], 2);
    let d = &gc["d"];
    assert_eq!(d["member_count"], 21);
    assert_eq!(d["large"], false);
    let world = sim.members();
    let members: Vec<Member> = serde_json::from_value(d["members"].clone()).unwrap();
    assert_eq!(
        members,
        world.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>()
    );
    let presences: Vec<Presence> = serde_json::from_value(d["presences"].clone()).unwrap();
    assert_eq!(
        presences,
        world
            .iter()
            .filter_map(|(_, p)| p.clone())
            .collect::<Vec<_>>()
    );

    let s = sim.stats();
    assert_eq!(
        (s.connections, s.identifies, s.resumes, s.sessions),
        (1, 1, 0, 1)
    );
}

#[tokio::test]
async fn large_guild_is_chunked_on_request() {
    let sim = sim(2500, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    let d = &c.dispatches("GUILD_CREATE")[0]["d"];
    assert_eq!(d["large"], true);
    assert_eq!(d["member_count"], 2501);
    assert_eq!(d["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["members"][0]["user"]["id"],
        sim.application_id().to_string()
    );

    let guild = Id::new(sim.guild_id().0);
    c.shard.command(
        &twilight_model::gateway::payload::outgoing::RequestGuildMembers::builder(guild)
            .presences(true)
            .nonce("all")
            .query("", None),
    );
    assert!(c.until(|c| c.count("GUILD_MEMBERS_CHUNK") == 3).await);
    let chunks = c.dispatches("GUILD_MEMBERS_CHUNK");
    let mut ids = BTreeSet::new();
    let mut presences = 0;
    for (i, ch) in chunks.iter().enumerate() {
        assert_eq!(ch["d"]["chunk_index"], i);
        assert_eq!(ch["d"]["chunk_count"], 3);
        assert_eq!(ch["d"]["nonce"], "all");
        for m in ch["d"]["members"].as_array().unwrap() {
            ids.insert(m["user"]["id"].as_str().unwrap().to_owned());
        }
        presences += ch["d"]["presences"].as_array().unwrap().len();
    }
    let world = sim.members();
    assert_eq!(
        ids,
        world
            .iter()
            .map(|(m, _)| m.user.id.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(presences, world.iter().filter(|(_, p)| p.is_some()).count());
    assert_eq!(sim.stats().member_requests, 1);

    // By user ids, with one unknown id reported in not_found.
    let known = some_member(&sim).user.id;
    c.shard.command(
        &twilight_model::gateway::payload::outgoing::RequestGuildMembers::builder(guild)
            .nonce("ids")
            .user_ids(vec![Id::new(known.0), Id::new(1)])
            .unwrap(),
    );
    assert!(c.until(|c| c.count("GUILD_MEMBERS_CHUNK") == 4).await);
    let ch = &c.dispatches("GUILD_MEMBERS_CHUNK")[3]["d"];
    assert_eq!(ch["nonce"], "ids");
    assert_eq!(ch["members"].as_array().unwrap().len(), 1);
    assert_eq!(ch["members"][0]["user"]["id"], known.to_string());
    assert_eq!(ch["not_found"], serde_json::json!(["1"]));
}

#[tokio::test]
async fn presence_update_reaches_the_client_and_the_world() {
    let sim = sim(20, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    let user = some_member(&sim).user.id;
    sim.set_presence(presence_of(user, Status::Dnd, "busy"));
    assert!(c.until(|c| c.count("PRESENCE_UPDATE") == 1).await);
    let p = &c.dispatches("PRESENCE_UPDATE")[0];
    assert_eq!(p["s"], 3);
    assert_eq!(p["d"]["user"], serde_json::json!({"id": user.to_string()}));
    assert_eq!(p["d"]["guild_id"], sim.guild_id().to_string());
    assert_eq!(p["d"]["status"], "dnd");
    assert_eq!(
        p["d"]["client_status"],
        serde_json::json!({"desktop": "dnd"})
    );
    assert_eq!(p["d"]["activities"][0]["state"], "busy");
    assert_eq!(sim.member(user).unwrap().1.unwrap().status, Status::Dnd);
}

#[tokio::test]
async fn the_dispatch_observer_sees_each_frame_written_and_only_one_observer_is_kept() {
    let sim = sim(20, 41250);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    assert!(sim.observe_dispatches(move |frame| s.lock().unwrap().push(frame.to_owned())));
    assert!(!sim.observe_dispatches(|_| panic!("a second observer must not be installed")));
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    let user = some_member(&sim).user.id;
    sim.set_presence(presence_of(user, Status::Idle, "observed"));
    assert!(c.until(|c| c.count("PRESENCE_UPDATE") == 1).await);
    let seen = seen.lock().unwrap().clone();
    let written: Vec<Value> = seen.iter().map(|f| serde_json::from_str(f).unwrap()).collect();
    let types: Vec<&str> = written.iter().map(|f| f["t"].as_str().unwrap()).collect();
    assert_eq!(types, ["READY", "GUILD_CREATE", "PRESENCE_UPDATE"]);
    // The observer sees exactly the frame the client received.
    assert_eq!(&written[2], c.dispatches("PRESENCE_UPDATE")[0]);
    assert_eq!(written[2]["d"]["activities"][0]["state"], "observed");
}

#[tokio::test]
async fn dropped_connection_resumes_and_replays_missed_events() {
    let sim = sim(20, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    sim.fault(Fault::DropConnections);
    // The session is detached synchronously, so this is only logged until the resume.
    let user = some_member(&sim).user.id;
    sim.set_presence(presence_of(user, Status::Idle, "away"));
    assert!(c.until(|c| c.count("RESUMED") == 1).await);
    let p = c.dispatches("PRESENCE_UPDATE");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["s"], 3);
    assert_eq!(p[0]["d"]["status"], "idle");
    assert_eq!(c.dispatches("RESUMED")[0]["s"], 4);
    let s = sim.stats();
    assert_eq!((s.connections, s.identifies, s.resumes), (2, 1, 1));
}

#[tokio::test]
async fn non_resumable_invalid_session_reidentifies() {
    let sim = sim(20, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    sim.fault(Fault::InvalidSession { resumable: false });
    assert!(c.until(|c| c.count("GUILD_CREATE") == 2).await);
    let readies = c.dispatches("READY");
    assert_eq!(readies.len(), 2);
    assert_ne!(readies[0]["d"]["session_id"], readies[1]["d"]["session_id"]);
    assert_eq!(readies[1]["s"], 1);
    let s = sim.stats();
    assert_eq!((s.identifies, s.resumes, s.sessions), (2, 0, 1));
}

#[tokio::test]
async fn reconnect_op_resumes() {
    let sim = sim(20, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    sim.fault(Fault::Reconnect);
    assert!(c.until(|c| c.count("RESUMED") == 1).await);
    assert_eq!(c.dispatches("RESUMED")[0]["s"], 3);
    let s = sim.stats();
    assert_eq!((s.connections, s.identifies, s.resumes), (2, 1, 1));
}

#[tokio::test]
async fn close_code_4000_resumes_and_4004_is_fatal() {
    let sim = sim(5, 41250);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    sim.fault(Fault::Close(4000));
    assert!(c.until(|c| c.count("RESUMED") == 1).await);
    assert_eq!(c.closes, vec![Some(4000)]);

    let mut bad = Client::new(&sim, "wrong-token");
    assert!(bad.until(|c| c.ended).await);
    assert_eq!(bad.closes, vec![Some(4004)]);
    assert_eq!(bad.count("READY"), 0);
}

#[tokio::test]
async fn resume_after_close_4007_or_4009_is_refused_and_the_client_identifies_anew() {
    for code in [4007, 4009] {
        let sim = sim(20, 41250);
        let mut c = Client::new(&sim, &sim.token());
        assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
        sim.fault(Fault::Close(code));
        assert!(c.until(|c| c.count("GUILD_CREATE") == 2).await, "{code}");
        assert_eq!(c.closes.first(), Some(&Some(code)));
        // twilight tries to resume; the session is gone, so the answer is op 9 `false`.
        let invalid: Vec<&Value> = c.frames.iter().filter(|f| f["op"] == 9).collect();
        assert_eq!(invalid.len(), 1, "{code}");
        assert_eq!(invalid[0]["d"], false);
        assert_eq!(c.count("RESUMED"), 0);
        let readies = c.dispatches("READY");
        assert_eq!(readies.len(), 2);
        assert_ne!(readies[0]["d"]["session_id"], readies[1]["d"]["session_id"]);
        let s = sim.stats();
        assert_eq!((s.identifies, s.resumes, s.sessions), (2, 0, 1), "{code}");
    }
}

/// A raw gateway client, for what twilight never does (stop heartbeating).
async fn raw_ws(sim: &Simulator) -> async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream> {
    let (ws, _) = async_tungstenite::tokio::connect_async(format!("{}/?v=10&encoding=json", sim.gateway_url()))
        .await
        .unwrap();
    ws
}

/// The next text frame as JSON, or the close code when the server closes.
async fn raw_next(
    ws: &mut async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>,
) -> Result<Value, Option<u16>> {
    use async_tungstenite::tungstenite::Message as M;
    loop {
        match timeout(DEADLINE, ws.next()).await.expect("a frame before the deadline") {
            Some(Ok(M::Text(t))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(M::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

#[tokio::test]
async fn heartbeat_timeout_closes_4009_and_the_session_cannot_be_resumed() {
    let sim = sim(5, 200);
    let mut ws = raw_ws(&sim).await;
    assert_eq!(raw_next(&mut ws).await.unwrap()["op"], 10);
    let identify = serde_json::json!({"op": 2, "d": {
        "token": "Bot sim-token", "intents": 1 | (1 << 1) | (1 << 8),
        "properties": {"os": "linux", "browser": "test", "device": "test"},
    }});
    ws.send(async_tungstenite::tungstenite::Message::text(identify.to_string())).await.unwrap();
    let ready = raw_next(&mut ws).await.unwrap();
    assert_eq!(ready["t"], "READY");
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    // No heartbeats: the simulator gives up on the session.
    let code = loop {
        if let Err(code) = raw_next(&mut ws).await {
            break code;
        }
    };
    assert_eq!(code, Some(4009));

    let mut ws = raw_ws(&sim).await;
    assert_eq!(raw_next(&mut ws).await.unwrap()["op"], 10);
    let resume = serde_json::json!({"op": 6, "d": {"token": "Bot sim-token", "session_id": session_id, "seq": 2}});
    ws.send(async_tungstenite::tungstenite::Message::text(resume.to_string())).await.unwrap();
    let answer = raw_next(&mut ws).await.unwrap();
    assert_eq!(answer, serde_json::json!({"op": 9, "d": false, "s": null, "t": null}));
    let s = sim.stats();
    assert_eq!((s.identifies, s.resumes, s.sessions), (1, 0, 0));
}

#[tokio::test]
async fn privileged_intents_not_enabled_in_the_portal_close_4014() {
    let sim = Simulator::start(SimConfig {
        members: 5,
        privileged_intents: lantern::sim::PRIVILEGED_INTENTS & !(1 << 8),
        ..SimConfig::default()
    })
    .unwrap();
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.ended).await);
    assert_eq!(c.closes, vec![Some(4014)]);
    assert_eq!(c.count("READY"), 0);
    assert_eq!(sim.stats().identifies, 0);
}

#[tokio::test]
async fn missing_heartbeat_acks_trigger_zombie_reconnect() {
    let sim = sim(5, 300);
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("GUILD_CREATE") == 1).await);
    assert!(c.until_sim(&sim, |s| s.heartbeat_acks_sent >= 1).await);
    sim.fault(Fault::StopHeartbeatAcks(true));
    assert!(c.until_sim(&sim, |s| s.resumes >= 1).await);
    sim.fault(Fault::StopHeartbeatAcks(false));
    let acks = sim.stats().heartbeat_acks_sent;
    assert!(c.until_sim(&sim, |s| s.heartbeat_acks_sent > acks).await);
    assert!(c.count("RESUMED") >= 1);
    assert_eq!(sim.stats().identifies, 1);
}

#[tokio::test]
async fn twilight_http_commands_and_interaction_callback() {
    use twilight_model::application::command::{Command, CommandType};
    use twilight_model::http::interaction::{
        InteractionResponse, InteractionResponseData, InteractionResponseType,
    };

    let sim = sim(5, 41250);
    let client = twilight_http::Client::builder()
        .token(sim.token())
        .proxy(sim.api_url().trim_start_matches("http://").to_owned(), true)
        .ratelimiter(None)
        .build();
    let app = Id::new(sim.application_id().0);
    #[allow(deprecated)]
    let cmd = Command {
        application_id: None,
        contexts: None,
        default_member_permissions: None,
        description: "Show a member's presence".into(),
        description_localizations: None,
        dm_permission: None,
        guild_id: None,
        id: None,
        integration_types: None,
        kind: CommandType::ChatInput,
        name: "presence".into(),
        name_localizations: None,
        nsfw: None,
        options: Vec::new(),
        version: Id::new(1),
    };
    let ic = client.interaction(app);
    let set = ic
        .set_global_commands(&[cmd])
        .await
        .unwrap()
        .models()
        .await
        .unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].name, "presence");
    assert!(set[0].id.is_some());
    assert_eq!(set[0].application_id, Some(app));

    let resp = InteractionResponse {
        kind: InteractionResponseType::ChannelMessageWithSource,
        data: Some(InteractionResponseData {
            content: Some("alice is online".into()),
            ..Default::default()
        }),
    };
    ic.create_response(Id::new(1234567890123456789), "itoken", &resp)
        .await
        .unwrap();

    let reqs = sim.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(
        reqs[0].path,
        format!("/api/v10/applications/{}/commands", sim.application_id())
    );
    assert_eq!(reqs[0].authorization.as_deref(), Some("Bot sim-token"));
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body[0]["name"], "presence");
    assert_eq!(reqs[1].method, "POST");
    assert!(reqs[1]
        .path
        .starts_with("/api/v10/interactions/1234567890123456789/itoken/callback"));
    assert_eq!(reqs[1].authorization, None);
    let body: Value = serde_json::from_str(&reqs[1].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"type": 4, "data": {"content": "alice is online"}})
    );

    let listed = ic.global_commands().await.unwrap().models().await.unwrap();
    assert_eq!(listed, set);
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Checks the PNG structure (signature, chunk CRCs, IHDR, inflated size) and returns (w, h).
fn decode_png(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (mut pos, mut size, mut idat) = (8, (0, 0), Vec::new());
    loop {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        let crc = u32::from_be_bytes(bytes[pos + 8 + len..pos + 12 + len].try_into().unwrap());
        let mut c = flate2::Crc::new();
        c.update(kind);
        c.update(data);
        assert_eq!(c.sum(), crc);
        match kind {
            b"IHDR" => {
                size = (
                    u32::from_be_bytes(data[..4].try_into().unwrap()),
                    u32::from_be_bytes(data[4..8].try_into().unwrap()),
                );
                assert_eq!(&data[8..10], &[8, 2]);
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw.len() as u32, size.1 * (size.0 * 3 + 1));
    size
}

#[test]
fn cdn_serves_generated_pngs() {
    let sim = sim(5, 41250);
    let a = agent();
    let mut r = a
        .get(format!(
            "{}/avatars/1234567890123456789/a_0123456789abcdef0123456789abcdef.gif",
            sim.cdn_url()
        ))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("content-type").unwrap(), "image/png");
    let png = r.body_mut().read_to_vec().unwrap();
    assert_eq!(decode_png(&png), (64, 64));

    let r = a
        .get(format!("{}/embed/avatars/3.png", sim.cdn_url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = a
        .get(format!("{}/nothing/here.png", sim.cdn_url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        sim.cdn_hits(),
        vec![
            "/avatars/1234567890123456789/a_0123456789abcdef0123456789abcdef.gif".to_owned(),
            "/embed/avatars/3.png".to_owned(),
            "/nothing/here.png".to_owned(),
        ]
    );
}

#[test]
fn rest_requires_bot_token_and_control_api_changes_the_world() {
    let sim = sim(5, 41250);
    let a = agent();
    let mut r = a
        .get(format!("{}/api/v10/users/@me", sim.api_url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"message": "401: Unauthorized", "code": 0})
    );

    let mut r = a
        .get(format!("{}/api/v10/gateway/bot", sim.api_url()))
        .header("authorization", "Bot sim-token")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["url"], sim.gateway_url());
    assert_eq!(body["shards"], 1);

    let user = some_member(&sim).user.id;
    let p = serde_json::to_string(&presence_of(user, Status::Online, "via control")).unwrap();
    let r = a
        .post(format!("{}/_sim/presence", sim.api_url()))
        .send(p)
        .unwrap();
    assert_eq!(r.status(), 204);
    let stored = sim.member(user).unwrap().1.unwrap();
    assert_eq!(stored.activities[0].state.as_deref(), Some("via control"));

    let r = a
        .delete(format!("{}/_sim/members/{user}", sim.api_url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(sim.member(user).is_none());
    assert_eq!(sim.members().len(), 5);
}

#[tokio::test]
async fn churn_dispatches_presence_updates() {
    let sim = Simulator::start(SimConfig {
        members: 30,
        churn_per_sec: 100.0,
        ..SimConfig::default()
    })
    .unwrap();
    let mut c = Client::new(&sim, &sim.token());
    assert!(c.until(|c| c.count("PRESENCE_UPDATE") >= 5).await);
    for p in c.dispatches("PRESENCE_UPDATE") {
        assert_eq!(p["d"]["guild_id"], sim.guild_id().to_string());
    }
}

/// A client past its GUILD_CREATE, and its session's id and sequence.
async fn identified(sim: &Simulator) -> (Client, String, u64) {
    let mut client = Client::new(sim, &sim.token());
    assert!(client.until(|c| c.count("GUILD_CREATE") == 1).await);
    let (session, sequence) = {
        let s = client.shard.session().unwrap();
        (s.id().to_owned(), s.sequence())
    };
    (client, session, sequence)
}

/// Closes the client's connection with `frame` and reads until the close handshake is done.
async fn close_with(c: &mut Client, frame: twilight_gateway::CloseFrame<'static>) {
    c.shard.close(frame);
    assert!(c.until(|c| !c.closes.is_empty()).await);
}

#[tokio::test]
async fn a_session_closed_with_4000_is_resumed_from_another_client_which_gets_what_it_missed() {
    let sim = sim(20, 41250);
    let (mut first, session, sequence) = identified(&sim).await;
    close_with(&mut first, twilight_gateway::CloseFrame::RESUME).await;
    let user = some_member(&sim).user.id;
    sim.set_presence(presence_of(user, Status::Idle, "away"));
    let mut second = Client::resuming(&sim, &session, sequence);
    assert!(second.until(|c| c.count("RESUMED") == 1).await);
    let p = second.dispatches("PRESENCE_UPDATE");
    assert_eq!(p.len(), 1, "{:?}", second.frames);
    assert_eq!(p[0]["d"]["status"], "idle");
    assert_eq!(second.count("READY"), 0);
    let s = sim.stats();
    assert_eq!((s.identifies, s.resumes), (1, 1));
}

#[tokio::test]
async fn a_session_closed_with_1000_cannot_be_resumed() {
    let sim = sim(20, 41250);
    let (mut first, session, sequence) = identified(&sim).await;
    close_with(&mut first, twilight_gateway::CloseFrame::NORMAL).await;
    let mut second = Client::resuming(&sim, &session, sequence);
    // Refused with op 9 `false`; the client identifies anew.
    assert!(second.until(|c| c.count("READY") == 1).await);
    assert_eq!(second.frames.iter().filter(|f| f["op"] == 9).count(), 1);
    let s = sim.stats();
    assert_eq!((s.identifies, s.resumes), (2, 0));
}
