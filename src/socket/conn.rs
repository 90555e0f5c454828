//! One WebSocket connection, on the shard that accepted it: HELLO, the client's requests,
//! deadlines, the writer that drains its outbox, and a clean close.

use crate::fanout::close::{self, CloseReason};
use crate::fanout::outbox::{Next, Outbox};
use crate::fanout::{self, frames, Ack, ConnId, FanoutHost};
use crate::per_ip::{self, Kind};
use crate::shard::Shard;
use crate::socket::protocol::{self, Refusal, Request, Target};
use async_tungstenite::WebSocketStream;
use futures_util::{SinkExt, StreamExt};
use std::future::poll_fn;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::Message;

/// tungstenite's read buffer per connection (its default is 128 KiB). Client messages are small;
/// a larger one grows the buffer up to `max_frame_bytes` while it is read.
pub const READ_BUFFER: usize = 1024;
/// Frames are gathered into tungstenite's write buffer up to this size before a write (its
/// default is 128 KiB); the writer hands over at most this much per flush.
pub const WRITE_BATCH: usize = 16 * 1024;
/// The next client message is read only while at most this many bytes wait in the outbox (or
/// `max_queued_bytes`, if smaller): the answers a client provokes but does not read stay
/// bounded, and a client that stops reading is no longer read.
pub const REPLY_HIGH_WATER: usize = 64 * 1024;

type Stream = glommio::net::TcpStream;

/// The WebSocket settings for a server connection: small buffers and the inbound limit.
pub fn ws_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes))
}

/// Forgets the connection in fan-out however the task ends.
struct Registration<'a> {
    ctx: &'a Rc<Shard>,
    id: ConnId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        fanout::remove(self.ctx, self.id);
    }
}

enum Wake {
    Message(Option<Result<Message, tungstenite::Error>>),
    Deadline,
    Closing,
    Shutdown,
}

/// Serves an upgraded connection until it closes. `read_buf` holds bytes hyper read past the
/// upgrade request.
pub async fn run(ctx: Rc<Shard>, tcp: Stream, read_buf: Vec<u8>, ip: IpAddr) {
    let cfg = &ctx.config().server.socket;
    // The HTTP idle timeout does not apply: liveness is the heartbeat's job.
    let _ = tcp.set_read_timeout(None);
    let ws = WebSocketStream::from_partially_read(tcp, read_buf, Role::Server, Some(ws_config(cfg.max_frame_bytes))).await;
    let (sink, mut rx) = ws.split();
    let out = Rc::new(Outbox::default());
    let writer = glommio::spawn_local(write_loop(sink, out.clone()));

    let id = ctx.fanout().register(out.clone());
    let _registration = Registration { ctx: &ctx, id };
    let _slot = per_ip::acquire(&ctx, ip, Kind::Socket).await;
    if _slot.is_some() {
        out.push(frames::hello(cfg.heartbeat_interval.as_millis()), None);
    } else {
        fanout::close(&ctx, id, CloseReason::TooManyConnections, close::TOO_MANY_CONNECTIONS);
    }

    let mut shutdown = ctx.shutdown_signal();
    let mut initialized = false;
    let mut deadline = Instant::now() + cfg.init_timeout;
    let mut closing_since: Option<Instant> = None;
    // After a frame tungstenite could not read, the rest of the client's bytes are unreadable
    // WebSocket data: they are read and dropped so that closing the socket does not reset it
    // before the client has read the DISCONNECT.
    let mut discard_rest = false;
    loop {
        if closing_since.is_none() && out.is_closing() {
            closing_since = Some(Instant::now());
            deadline = Instant::now() + cfg.close_timeout;
        }
        let closing = closing_since.is_some();
        let wait = deadline.saturating_duration_since(Instant::now());
        let high_water = REPLY_HIGH_WATER.min(cfg.max_queued_bytes);
        let read = async {
            poll_fn(|cx| out.poll_room(cx, high_water)).await;
            Wake::Message(rx.next().await)
        };
        let wake = futures_lite::future::or(read, async {
            futures_lite::future::or(
                async {
                    glommio::timer::sleep(wait).await;
                    Wake::Deadline
                },
                futures_lite::future::or(
                    async {
                        if closing {
                            std::future::pending::<()>().await;
                        }
                        poll_fn(|cx| out.poll_closing(cx)).await;
                        Wake::Closing
                    },
                    async {
                        if closing || shutdown.wait_for(|stop| *stop).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        Wake::Shutdown
                    },
                ),
            )
            .await
        })
        .await;
        match wake {
            Wake::Closing => continue,
            Wake::Shutdown => fanout::close(&ctx, id, CloseReason::ShuttingDown, close::SHUTTING_DOWN),
            Wake::Deadline if closing => break,
            Wake::Deadline if initialized => fanout::close(&ctx, id, CloseReason::HeartbeatTimeout, close::HEARTBEAT_TIMEOUT),
            Wake::Deadline => fanout::close(&ctx, id, CloseReason::InitTimeout, close::INIT_TIMEOUT),
            Wake::Message(None) => break,
            Wake::Message(Some(Err(e))) => {
                if closing {
                    break;
                }
                discard_rest = true;
                match e {
                    tungstenite::Error::Capacity(_) => {
                        fanout::close(&ctx, id, CloseReason::MessageTooLarge, &too_large(cfg.max_frame_bytes));
                    }
                    tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
                        fanout::close(&ctx, id, CloseReason::ProtocolError, "WebSocket protocol error.");
                    }
                    _ => {
                        discard_rest = false;
                        break;
                    }
                }
            }
            Wake::Message(Some(Ok(msg))) => {
                if closing {
                    // Keep reading until the client answers the close (tungstenite replies to
                    // its close and flushes on the next poll).
                    continue;
                }
                match msg {
                    Message::Text(text) => {
                        if let Some(next) = on_text(&ctx, id, &out, text.as_str(), &mut initialized).await {
                            deadline = next;
                        }
                    }
                    Message::Binary(_) => {
                        out.push(frames::error("Binary frames are not supported; send JSON text frames."), None);
                    }
                    Message::Close(_) => {
                        // The client closes: stop fan-out to it at once, then finish the handshake.
                        fanout::remove(&ctx, id);
                        out.finish();
                        closing_since = Some(Instant::now());
                        deadline = Instant::now() + cfg.close_timeout;
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
        }
    }
    fanout::remove(&ctx, id);
    if !discard_rest {
        out.finish();
    }
    let sink = glommio::timer::timeout(cfg.close_timeout, async { Ok(writer.await) }).await.ok().flatten();
    if let (true, Some(sink)) = (discard_rest, sink) {
        if let Ok(ws) = WebSocketStream::reunite(sink, rx) {
            let mut tcp = ws.into_inner();
            let until = Instant::now() + cfg.close_timeout;
            let mut buf = [0u8; 4096];
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match glommio::timer::timeout(left, async { Ok(futures_lite::AsyncReadExt::read(&mut tcp, &mut buf).await) }).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => break,
                }
            }
        }
    }
}

fn too_large(max: usize) -> String {
    format!("Message too large (the limit is {max} bytes).")
}

/// Handles one text frame; returns the new deadline when the client proved it is alive.
async fn on_text(ctx: &Rc<Shard>, id: ConnId, out: &Outbox, text: &str, initialized: &mut bool) -> Option<Instant> {
    let cfg = &ctx.config().server.socket;
    let alive = || Some(Instant::now() + cfg.heartbeat_timeout());
    let request = match protocol::parse(text) {
        Ok(r) => r,
        Err(Refusal::Error(message)) => {
            out.push(frames::error(&message), None);
            return None;
        }
        Err(Refusal::Disconnect(reason, message)) => {
            fanout::close(ctx, id, reason, &message);
            return None;
        }
    };
    let not_initialized = || {
        fanout::close(ctx, id, CloseReason::NotInitialized, close::INVALID_CONNECTION);
        None
    };
    match request {
        Request::Heartbeat if !*initialized => not_initialized(),
        Request::Heartbeat => {
            out.push(frames::bare(frames::HEARTBEAT_ACK), None);
            alive()
        }
        Request::Init(_) if *initialized => {
            out.push(frames::error("You are already initialized. Use SUBSCRIBE (op 12) to add users."), None);
            None
        }
        Request::Init(target) => {
            if target.ids().len() > cfg.max_subscriptions {
                out.push(frames::error(&too_many(cfg.max_subscriptions)), None);
                return None;
            }
            match fanout::subscribe(ctx, id, &target, Ack::Init).await {
                Ok(()) => {
                    *initialized = true;
                    alive()
                }
                Err(message) => {
                    out.push(frames::error(&message), None);
                    None
                }
            }
        }
        Request::Subscribe(_) | Request::Unsubscribe(_) if !*initialized => not_initialized(),
        Request::Subscribe(target) => {
            let Some((all, subs)) = ctx.fanout().subscription(id) else { return None };
            let refusal = if all {
                Some("You are already subscribed to all users.".to_string())
            } else {
                let dup: Vec<_> = target.ids().iter().filter(|i| subs.contains(i)).copied().collect();
                match &target {
                    Target::One(i) if !dup.is_empty() => Some(format!("You are already subscribed to user {i}.")),
                    Target::Many(_) if !dup.is_empty() => {
                        Some(format!("You are already subscribed to user(s) {}.", protocol::join_ids(&dup)))
                    }
                    Target::One(_) | Target::Many(_) if subs.len() + target.ids().len() > cfg.max_subscriptions => {
                        Some(too_many(cfg.max_subscriptions))
                    }
                    _ => None,
                }
            };
            if let Some(message) = refusal {
                out.push(frames::error(&message), None);
                return None;
            }
            match fanout::subscribe(ctx, id, &target, Ack::Subscribe).await {
                Ok(()) => alive(),
                Err(message) => {
                    out.push(frames::error(&message), None);
                    None
                }
            }
        }
        Request::Unsubscribe(target) => match fanout::unsubscribe(ctx, id, &target) {
            Ok(true) => {
                fanout::close(ctx, id, CloseReason::Unsubscribed, close::UNSUBSCRIBED);
                None
            }
            Ok(false) => {
                out.push(frames::bare(frames::UNSUBSCRIBE_ACK), None);
                alive()
            }
            Err(message) => {
                out.push(frames::error(&message), None);
                None
            }
        },
    }
}

fn too_many(max: usize) -> String {
    format!("You can subscribe to at most {max} users per connection.")
}

/// Drains the outbox into the socket: several queued frames go out in one write, then one flush.
/// Gives the sink back after a clean close (`None` when the socket failed).
async fn write_loop(mut sink: async_tungstenite::WebSocketSender<Stream>, out: Rc<Outbox>) -> Option<async_tungstenite::WebSocketSender<Stream>> {
    loop {
        match poll_fn(|cx| out.poll_next(cx, WRITE_BATCH)).await {
            Next::Frames(frames) => {
                for f in frames {
                    if sink.feed(Message::Text(f)).await.is_err() {
                        return None;
                    }
                }
                if sink.flush().await.is_err() {
                    return None;
                }
            }
            Next::Close(reason) => {
                let frame = CloseFrame { code: CloseCode::from(reason.code()), reason: "".into() };
                return sink.send(Message::Close(Some(frame))).await.ok().map(|()| sink);
            }
            Next::Stop => return Some(sink),
        }
    }
}
