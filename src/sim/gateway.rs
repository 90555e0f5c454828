//! The gateway WebSocket: one task per connection speaking Discord's JSON protocol (HELLO,
//! IDENTIFY, RESUME, heartbeats, REQUEST_GUILD_MEMBERS) with Discord's close codes.
//!
//! A connection task owns its socket; everything it sends other than heartbeat ACKs arrives on
//! its channel from the world (dispatches) or from faults, so frames keep the world's order.

use super::world::{Identify, MemberRequest, Out};
use super::{bump, Shared, PRIVILEGED_INTENTS};
use crate::discord::Snowflake;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::{sleep_until, timeout, Instant};

type Ws = WebSocketStream<TokioAdapter<TcpStream>>;

/// Intent bits Discord defines (0..=25); others are refused with 4013.
const KNOWN_INTENTS: u64 = (1 << 26) - 1;

/// Whether a session survives the server closing its connection with `code`: Discord asks for
/// a new session after 4007 (invalid seq) and 4009 (session timed out), and does not take the
/// client back after the fatal codes; any other close can be resumed.
pub(crate) fn session_survives(code: u16) -> bool {
    !matches!(code, 4004 | 4007 | 4009..=4014)
}

/// Discord's reason text for its close codes.
fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error.",
        4001 => "Unknown opcode.",
        4002 => "Error while decoding payload.",
        4003 => "Not authenticated.",
        4004 => "Authentication failed.",
        4005 => "Already authenticated.",
        4007 => "Invalid seq.",
        4008 => "Rate limited.",
        4009 => "Session timed out.",
        4010 => "Invalid shard.",
        4011 => "Sharding required.",
        4012 => "Invalid API version.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "",
    }
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                // Without NODELAY, Nagle + delayed ACK stalls READY → GUILD_CREATE by ~40 ms.
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(tcp, shared.clone()));
            }
            Err(e) => {
                tracing::warn!("simulator gateway accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(tcp: TcpStream, shared: Arc<Shared>) {
    // Any path and query are accepted; twilight asks for `/?v=10&encoding=json`.
    let Ok(Ok(ws)) = timeout(
        Duration::from_secs(10),
        async_tungstenite::tokio::accept_async(tcp),
    )
    .await
    else {
        return;
    };
    bump(&shared.counters.connections);
    let (tx, rx) = unbounded_channel();
    let conn_id = shared.world().register_conn(tx.clone());
    let interval = Duration::from_millis(shared.cfg.heartbeat_interval_ms.max(1));
    let mut conn = Conn {
        ws,
        shared: shared.clone(),
        conn_id,
        tx,
        session: None,
        interval,
    };
    conn.run(rx).await;
    shared
        .world()
        .unregister_conn(conn_id, conn.session.as_deref());
}

/// Why the read side ends the connection.
enum End {
    /// Close with this gateway close code.
    Close(u16),
    /// Stop without a close frame.
    Drop,
}

struct Conn {
    ws: Ws,
    shared: Arc<Shared>,
    conn_id: u64,
    tx: UnboundedSender<Out>,
    session: Option<String>,
    interval: Duration,
}

impl Conn {
    /// A client that misses heartbeats for this long is closed with 4009 (Discord allows slack
    /// beyond the interval for jitter and latency).
    fn heartbeat_deadline(&self) -> Instant {
        Instant::now() + self.interval * 3 / 2 + Duration::from_secs(2)
    }

    async fn run(&mut self, mut rx: UnboundedReceiver<Out>) {
        let hello = format!(
            r#"{{"op":10,"d":{{"heartbeat_interval":{}}},"s":null,"t":null}}"#,
            self.interval.as_millis()
        );
        if self.ws.send(Message::text(hello)).await.is_err() {
            return;
        }
        let mut deadline = self.heartbeat_deadline();
        let end = loop {
            tokio::select! {
                msg = self.ws.next() => match msg {
                    None | Some(Err(_)) => return,
                    Some(Ok(Message::Text(t))) => {
                        if let Err(end) = self.handle(t.as_str(), &mut deadline).await {
                            break end;
                        }
                    }
                    // Discord's JSON encoding accepts text frames only.
                    Some(Ok(Message::Binary(_))) => break End::Close(4002),
                    // A client closing with 1000 or 1001 ends its session, as on Discord; any
                    // other code leaves it to be resumed.
                    Some(Ok(Message::Close(frame))) => {
                        if frame.is_some_and(|f| matches!(u16::from(f.code), 1000 | 1001)) {
                            if let Some(id) = self.session.take() {
                                self.shared.world().end_session(&id);
                            }
                        }
                    }
                    // A close from the client: keep polling so tungstenite flushes its reply.
                    Some(Ok(_)) => {}
                },
                out = rx.recv() => match out {
                    Some(Out::Dispatch(frame)) => {
                        if let Some(observe) = self.shared.on_dispatch.get() {
                            observe(&frame);
                        }
                        if self.ws.send(Message::text(frame)).await.is_err() {
                            return;
                        }
                        bump(&self.shared.counters.dispatches_sent);
                    }
                    Some(Out::Raw(frame)) => {
                        if self.ws.send(Message::text(frame)).await.is_err() {
                            return;
                        }
                    }
                    Some(Out::Close(code)) => break End::Close(code),
                    Some(Out::Drop) | None => break End::Drop,
                },
                _ = sleep_until(deadline) => break End::Close(4009),
            }
        };
        if let End::Close(code) = end {
            if !session_survives(code) {
                // Gone before the close frame leaves, so no RESUME can race it.
                if let Some(id) = self.session.take() {
                    self.shared.world().end_session(&id);
                }
            }
            self.close(code).await;
        }
        // End::Drop: returning drops the socket, a TCP close with no close frame.
    }

    /// Sends a close frame, then drains until the client's reply (or a short timeout).
    async fn close(&mut self, code: u16) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: close_reason(code).into(),
        };
        if self.ws.close(Some(frame)).await.is_err() {
            return;
        }
        let _ = timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    async fn send_raw(&mut self, frame: String) -> Result<(), End> {
        self.ws
            .send(Message::text(frame))
            .await
            .map_err(|_| End::Drop)
    }

    async fn handle(&mut self, text: &str, deadline: &mut Instant) -> Result<(), End> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Err(End::Close(4002));
        };
        let Some(op) = v.get("op").and_then(Value::as_u64) else {
            return Err(End::Close(4002));
        };
        let d = v.get("d").unwrap_or(&Value::Null);
        match op {
            1 => {
                bump(&self.shared.counters.heartbeats);
                *deadline = self.heartbeat_deadline();
                if !self.shared.stop_acks.load(Ordering::Relaxed) {
                    self.send_raw(r#"{"op":11,"d":null,"s":null,"t":null}"#.into())
                        .await?;
                    bump(&self.shared.counters.heartbeat_acks_sent);
                }
                Ok(())
            }
            2 => self.identify(d),
            // Presence and voice state updates from the bot are accepted and ignored.
            3 | 4 => self.require_session(),
            6 => self.resume(d).await,
            8 => {
                self.require_session()?;
                bump(&self.shared.counters.member_requests);
                let req = parse_member_request(d).ok_or(End::Close(4002))?;
                let session = self.session.clone().unwrap_or_default();
                self.shared.world().request_members(&session, &req);
                Ok(())
            }
            _ => Err(End::Close(4001)),
        }
    }

    fn require_session(&self) -> Result<(), End> {
        if self.session.is_some() {
            Ok(())
        } else {
            Err(End::Close(4003))
        }
    }

    fn check_token(&self, d: &Value) -> Result<(), End> {
        let token = d
            .get("token")
            .and_then(Value::as_str)
            .ok_or(End::Close(4002))?;
        if token.strip_prefix("Bot ") == Some(self.shared.cfg.token.as_str()) {
            Ok(())
        } else {
            Err(End::Close(4004))
        }
    }

    fn identify(&mut self, d: &Value) -> Result<(), End> {
        if self.session.is_some() {
            return Err(End::Close(4005));
        }
        if !d.get("properties").is_some_and(Value::is_object) {
            return Err(End::Close(4002));
        }
        self.check_token(d)?;
        let intents = d
            .get("intents")
            .and_then(Value::as_u64)
            .ok_or(End::Close(4002))?;
        if intents & !KNOWN_INTENTS != 0 {
            return Err(End::Close(4013));
        }
        if intents & PRIVILEGED_INTENTS & !self.shared.cfg.privileged_intents != 0 {
            return Err(End::Close(4014));
        }
        let shard = match d.get("shard") {
            None | Some(Value::Null) => None,
            Some(s) => {
                let pair = s
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or(End::Close(4002))?;
                let (id, n) = (
                    pair[0].as_u64().ok_or(End::Close(4002))?,
                    pair[1].as_u64().ok_or(End::Close(4002))?,
                );
                if n == 0 || id >= n {
                    return Err(End::Close(4010));
                }
                Some([id, n])
            }
        };
        let large_threshold = d
            .get("large_threshold")
            .and_then(Value::as_u64)
            .unwrap_or(50)
            .clamp(50, 250);
        let ident = Identify {
            intents,
            large_threshold,
            shard,
        };
        let id = self
            .shared
            .world()
            .identify(self.conn_id, self.tx.clone(), &ident);
        self.session = Some(id);
        bump(&self.shared.counters.identifies);
        Ok(())
    }

    async fn resume(&mut self, d: &Value) -> Result<(), End> {
        if self.session.is_some() {
            return Err(End::Close(4005));
        }
        self.check_token(d)?;
        let session_id = d
            .get("session_id")
            .and_then(Value::as_str)
            .ok_or(End::Close(4002))?
            .to_owned();
        let seq = match d.get("seq") {
            None | Some(Value::Null) => 0,
            Some(s) => s.as_u64().ok_or(End::Close(4002))?,
        };
        let ok = self
            .shared
            .world()
            .resume(self.conn_id, self.tx.clone(), &session_id, seq);
        if ok {
            self.session = Some(session_id);
            bump(&self.shared.counters.resumes);
        } else {
            // The client answers by closing and identifying again.
            self.send_raw(r#"{"op":9,"d":false,"s":null,"t":null}"#.into())
                .await?;
        }
        Ok(())
    }
}

/// A snowflake or a list of them (op 8 accepts both for `guild_id` and `user_ids`).
fn ids(v: &Value) -> Option<Vec<Snowflake>> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| serde_json::from_value(x.clone()).ok())
            .collect(),
        other => serde_json::from_value(other.clone())
            .ok()
            .map(|id| vec![id]),
    }
}

fn parse_member_request(d: &Value) -> Option<MemberRequest> {
    let guild_ids = ids(d.get("guild_id")?)?;
    let user_ids = match d.get("user_ids") {
        None | Some(Value::Null) => None,
        Some(v) => Some(ids(v)?),
    };
    let query = d
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if user_ids.is_none() && d.get("query").is_none() {
        return None;
    }
    let nonce = d
        .get("nonce")
        .and_then(Value::as_str)
        .map(|n| n.chars().take(32).collect());
    Some(MemberRequest {
        guild_ids,
        query,
        limit: d.get("limit").and_then(Value::as_u64).unwrap_or(0),
        presences: d.get("presences").and_then(Value::as_bool).unwrap_or(false),
        user_ids,
        nonce,
    })
}
