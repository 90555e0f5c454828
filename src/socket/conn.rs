//! One WebSocket connection, on the shard that accepted it: HELLO, the client's requests, its
//! deadlines, and a clean close. One task per connection does it all: it reads when the socket
//! is readable (into the shard's scratch buffer, keeping only a partial frame), sends what the
//! kernel did not take, and is woken by this shard's one sweep when a deadline passes. The
//! shard's flusher writes what fan-out deliveries queued, one vectored write per connection.

use crate::fanout::close::{self, CloseReason};
use crate::fanout::outbox::{Flush, Outbox};
use crate::fanout::{self, frames, Ack, ConnId, Encoding, FanoutHost};
use crate::per_ip::{self, Kind};
use crate::shard::Shard;
use crate::socket::lanyard::{self, Dialect, LanyardRequest, Subscription};
use crate::socket::protocol::{self, Refusal, Request, Target};
use crate::socket::wire::{self, Inbound, Reader, WireError};
use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::future::poll_fn;
use std::net::IpAddr;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

/// The next client message is read only while at most this many bytes wait in the outbox (or
/// `max_queued_bytes`, if smaller): the answers a client provokes but does not read stay
/// bounded, and a client that stops reading is no longer read.
pub const REPLY_HIGH_WATER: usize = 64 * 1024;
/// The shard's scratch buffer that every connection reads into.
pub const SCRATCH_BYTES: usize = 16 * 1024;
/// How often the shard's sweep checks every connection's deadline (INIT, heartbeat, close): a
/// tenth of the shortest of them, between 20 ms and 1 s. Each sweep walks every connection of
/// the shard, so a fixed short period would cost idle CPU in proportion to the connections
/// (10,000 idle sockets swept every 100 ms took 1.5% of a core); a deadline is enforced at most
/// a tenth of itself late.
pub fn sweep_period(cfg: &crate::config::SocketConfig) -> Duration {
    let shortest = cfg.init_timeout.min(cfg.heartbeat_timeout()).min(cfg.close_timeout);
    (shortest / 10).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

type Stream = glommio::net::TcpStream;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice());
}

/// The connection's place in the shard while its session lives: its fan-out registration,
/// its session slot, and its count in the metrics, in all and by dialect and compression (it
/// speaks Lantern until a first Lanyard Initialize makes it Lanyard). Dropped however the
/// session ends.
struct Live<'a> {
    ctx: &'a Rc<Shard>,
    id: ConnId,
    session: usize,
    encoding: Encoding,
    lanyard: Cell<bool>,
}

impl<'a> Live<'a> {
    fn new(ctx: &'a Rc<Shard>, out: Rc<Outbox>, encoding: Encoding) -> Live<'a> {
        let (id, session) = ctx.fanout().register(out, encoding);
        ctx.metrics().websocket(1);
        ctx.metrics().websocket_kind("lantern", compression(encoding), 1);
        Live { ctx, id, session, encoding, lanyard: Cell::new(false) }
    }

    fn dialect(&self) -> &'static str {
        if self.lanyard.get() {
            "lanyard"
        } else {
            "lantern"
        }
    }

    fn now_lanyard(&self) {
        self.ctx.metrics().websocket_kind(self.dialect(), compression(self.encoding), -1);
        self.ctx.metrics().websocket_kind("lanyard", compression(self.encoding), 1);
        self.lanyard.set(true);
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        fanout::remove(self.ctx, self.id);
        self.ctx.fanout().end_session(self.session);
        self.ctx.metrics().websocket(-1);
        self.ctx.metrics().websocket_kind(self.dialect(), compression(self.encoding), -1);
    }
}

/// The metrics' name of a connection's compression.
fn compression(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Plain => "none",
        Encoding::Deflate => "permessage_deflate",
        Encoding::Zlib => "zlib_json",
    }
}

/// What woke the connection.
enum Wake {
    Message(Inbound),
    Refused(WireError),
    /// The client closed the stream, or the socket failed.
    Gone,
    Deadline,
    Closing,
}

/// Where the connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The server sent its close: read until the client's close (or the deadline).
    Closing,
    /// The client's input is unreadable: read and drop it until the end (or the deadline), so
    /// that closing the socket does not reset it before the client read the DISCONNECT.
    Discarding,
}

/// The shard's sweep: every [`sweep_period`] each connection's deadline is checked; once the
/// shard shuts down every connection is closed with 4011.
async fn sweep(ctx: Weak<Shard>) {
    let Some((mut shutdown, period)) = ctx.upgrade().map(|c| (c.shutdown_signal(), sweep_period(&c.config().server.socket))) else { return };
    let mut stopping = false;
    loop {
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                if stopping || shutdown.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
                true
            },
        )
        .await;
        stopping |= stop;
        let Some(ctx) = ctx.upgrade() else { return };
        if stopping {
            for id in ctx.fanout().sessions() {
                fanout::close(&ctx, id, CloseReason::ShuttingDown, close::SHUTTING_DOWN);
            }
        }
        ctx.fanout().sweep(Instant::now());
    }
}

/// The shard's flusher: once a batch of deliveries has queued frames, writes every such
/// connection's frames in one vectored write each.
async fn flush(ctx: Weak<Shard>) {
    loop {
        let dirty = poll_fn(|cx| match ctx.upgrade() {
            Some(c) => c.fanout().poll_dirty(cx).map(Some),
            None => Poll::Ready(None),
        })
        .await;
        let Some(dirty) = dirty else { return };
        for out in dirty {
            out.flush_now();
        }
    }
}

/// Ends every session on this shard at once (the shutdown's grace period is over): each task
/// sees its socket as gone and finishes.
pub fn end_all(ctx: &Rc<Shard>) {
    ctx.fanout().end_sessions();
}

/// Caps the kernel's send buffer of a connection (`SO_SNDBUF`): a consumer that stops reading
/// then costs as many writes as fit in it, and its later frames wait in its queue, shared and
/// unwritten, until it reads again or passes the queue's cap. Without the cap the kernel grows
/// the buffer to megabytes, about a thousand writes of presence per stalled consumer.
fn limit_send_buffer(fd: std::os::unix::io::RawFd, bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is this connection's open socket; the option value is a c_int that lives
    // for the call.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot set a WebSocket's send buffer; the kernel's sizing stays");
    }
}

/// Serves an upgraded connection until it closes. `read_buf` holds bytes hyper read past the
/// upgrade request; `encoding` is what the upgrade negotiated; `keep` (the HTTP connection's
/// slot, its count among the shard's connections) is dropped when the connection ends.
///
/// A plain function returning the session's future, rather than an `async fn`: the future
/// owns its inputs once, where an `async fn` would also keep a copy of each argument for the
/// connection's whole life.
pub fn run<K>(ctx: Rc<Shard>, mut tcp: Stream, read_buf: Vec<u8>, ip: IpAddr, encoding: Encoding, keep: K) -> impl Future<Output = ()> {
    let cfg = &ctx.config().server.socket;
    // The HTTP idle timeout does not apply: liveness is the heartbeat's job.
    let _ = tcp.set_read_timeout(None);
    if ctx.fanout().claim_sweeper() {
        glommio::spawn_local(sweep(Rc::downgrade(&ctx))).detach();
        glommio::spawn_local(flush(Rc::downgrade(&ctx))).detach();
    }
    if cfg.send_buffer_bytes > 0 {
        limit_send_buffer(tcp.as_raw_fd(), cfg.send_buffer_bytes);
    }
    let out = Rc::new(Outbox::new(tcp.as_raw_fd(), Instant::now() + cfg.init_timeout));
    let mut reader = Reader::default();
    reader.feed(&read_buf);
    drop(read_buf);
    async move {
        let cfg = &ctx.config().server.socket;
        let live = Live::new(&ctx, out.clone(), encoding);
        let id = live.id;
        // Boxed, like every step an idle connection is not in: its state is not held at rest.
        let slot = Box::pin(per_ip::acquire(&ctx, ip, Kind::Socket)).await;
        if slot.is_some() {
            out.push(&encoding.direct(&frames::hello(cfg.heartbeat_interval.as_millis())), None);
        } else {
            fanout::close(&ctx, id, CloseReason::TooManyConnections, close::TOO_MANY_CONNECTIONS);
        }

        let mut inflater = (encoding == Encoding::Deflate).then(|| Box::new(flate2::Decompress::new(false)));
        let mut initialized = false;
        let mut dialect: Option<Dialect> = None;
        let mut phase = Phase::Open;
        loop {
            let wake = poll_fn(|cx| {
                out.register(cx);
                if out.poll_flush(cx, |cx, bytes| Pin::new(&mut tcp).poll_write(cx, bytes)) == Flush::Broken {
                    return Poll::Ready(Wake::Gone);
                }
                if out.take_expired() {
                    return Poll::Ready(Wake::Deadline);
                }
                if phase == Phase::Open && out.is_closing() {
                    return Poll::Ready(Wake::Closing);
                }
                if phase == Phase::Open && out.queued_bytes() > REPLY_HIGH_WATER.min(cfg.max_queued_bytes) {
                    return Poll::Pending;
                }
                loop {
                    if phase != Phase::Discarding {
                        match reader.next(cfg.max_frame_bytes, inflater.as_deref_mut()) {
                            Ok(Some(m)) => return Poll::Ready(Wake::Message(m)),
                            Ok(None) => {}
                            Err(e) => return Poll::Ready(Wake::Refused(e)),
                        }
                    }
                    let read = SCRATCH.with(|s| {
                        let mut s = s.borrow_mut();
                        match Pin::new(&mut tcp).poll_read(cx, &mut s) {
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(false),
                            Poll::Ready(Ok(n)) => {
                                if phase != Phase::Discarding {
                                    reader.feed(&s[..n]);
                                }
                                Poll::Ready(true)
                            }
                            Poll::Pending => Poll::Pending,
                        }
                    });
                    match read {
                        Poll::Ready(true) => continue,
                        Poll::Ready(false) => return Poll::Ready(Wake::Gone),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await;
            if matches!(wake, Wake::Message(_)) { crate::metrics::local::frame_in(); }
            match wake {
                Wake::Closing => {
                    phase = Phase::Closing;
                    out.set_deadline(Instant::now() + cfg.close_timeout);
                }
                Wake::Gone => break,
                Wake::Deadline => match phase {
                    Phase::Closing | Phase::Discarding => break,
                    Phase::Open if dialect == Some(Dialect::Lanyard) => fanout::close_lanyard(&ctx, id, 1000, "idle timeout"),
                    Phase::Open if initialized => fanout::close(&ctx, id, CloseReason::HeartbeatTimeout, close::HEARTBEAT_TIMEOUT),
                    Phase::Open => fanout::close(&ctx, id, CloseReason::InitTimeout, close::INIT_TIMEOUT),
                },
                Wake::Refused(e) => {
                    if phase == Phase::Open {
                        match e {
                            WireError::TooLarge => fanout::close(&ctx, id, CloseReason::MessageTooLarge, &too_large(cfg.max_frame_bytes)),
                            WireError::Protocol => fanout::close(&ctx, id, CloseReason::ProtocolError, "WebSocket protocol error."),
                        }
                        out.set_deadline(Instant::now() + cfg.close_timeout);
                    }
                    phase = Phase::Discarding;
                    reader = Reader::default();
                }
                Wake::Message(Inbound::Close(code)) => {
                    if phase == Phase::Open {
                        // The client closes: stop fan-out to it at once and answer its close.
                        fanout::remove(&ctx, id);
                        crate::metrics::local::close(false, code.unwrap_or(1005));
                        let echo = code.map_or_else(|| wire::frame(wire::OP_CLOSE, false, &[]), wire::close_frame);
                        out.push_control(echo);
                    }
                    // Our close is answered (or theirs is): the handshake is done once the queue
                    // is written.
                    let _ = Box::pin(glommio::timer::timeout(cfg.close_timeout, async {
                        let _ = poll_fn(|cx| match out.poll_flush(cx, |cx, bytes| Pin::new(&mut tcp).poll_write(cx, bytes)) {
                            Flush::Waiting => Poll::Pending,
                            _ => Poll::Ready(()),
                        })
                        .await;
                        Ok(())
                    }))
                    .await;
                    break;
                }
                Wake::Message(_) if phase != Phase::Open => {}
                Wake::Message(Inbound::Ping(payload)) => out.push_control(wire::frame(wire::OP_PONG, false, &payload)),
                Wake::Message(Inbound::Pong) => {}
                Wake::Message(Inbound::Binary) => {
                    out.push(&frames::error("Binary frames are not supported; send JSON text frames."), None);
                }
                Wake::Message(Inbound::Text(text)) => {
                    // The first Initialize fixes the dialect; a later switch is refused by the
                    // dialect's own parser.
                    if dialect.is_none() {
                        dialect = lanyard::dialect_of(text.as_bytes());
                        if dialect == Some(Dialect::Lanyard) {
                            fanout::set_lanyard(&ctx, id);
                            live.now_lanyard();
                        }
                    }
                    if dialect == Some(Dialect::Lanyard) {
                        if let Some(next) = Box::pin(on_lanyard(&ctx, id, &out, encoding, &text)).await {
                            out.set_deadline(next);
                        }
                        continue;
                    }
                    // Boxed: the state of a request in flight is not part of an idle connection.
                    if let Some(next) = Box::pin(on_text(&ctx, id, &out, encoding, &text, &mut initialized)).await {
                        out.set_deadline(next);
                    }
                }
            }
        }
        out.finish();
        drop(slot);
        drop(keep);
    }
}

fn too_large(max: usize) -> String {
    format!("Message too large (the limit is {max} bytes).")
}

/// Sends an answer in the connection's encoding.
fn send(out: &Outbox, encoding: Encoding, frame: &frames::Frame) {
    out.push(&encoding.direct(frame), None);
}

/// Handles one message of a Lanyard connection; returns the new deadline (every message
/// counts as a sign of life). Refusals close with Lanyard's code and reason.
async fn on_lanyard(ctx: &Rc<Shard>, id: ConnId, out: &Outbox, encoding: Encoding, text: &str) -> Option<Instant> {
    let alive = || Some(Instant::now() + ctx.config().server.socket.lanyard_idle_timeout);
    let target = |sub: Subscription| match sub {
        Subscription::One(i) => Some(Target::One(i)),
        Subscription::Many(ids) => Some(Target::Many(ids)),
        Subscription::All => Some(Target::All),
        Subscription::Nobody => None,
    };
    match lanyard::parse(text.as_bytes()) {
        Err(refused) => {
            fanout::close_lanyard(ctx, id, refused.code, refused.reason);
            None
        }
        Ok(LanyardRequest::Heartbeat) | Ok(LanyardRequest::Unsubscribe(None)) => alive(),
        Ok(LanyardRequest::Unsubscribe(Some(sub))) => {
            if let Some(t) = target(sub) {
                fanout::unsubscribe_lanyard(ctx, id, &t);
            }
            alive()
        }
        Ok(LanyardRequest::Initialize(sub)) => {
            let Some(t) = target(sub) else {
                send(out, encoding, &frames::lanyard_event("INIT_STATE", b"{}"));
                return alive();
            };
            let max = ctx.config().server.socket.max_subscriptions;
            let had = ctx.fanout().subscription(id).map_or(0, |(_, subs)| subs.len());
            if had + t.ids().len() > max {
                fanout::close_lanyard(ctx, id, lanyard::INVALID_PAYLOAD, "invalid_payload");
                return None;
            }
            match fanout::subscribe_lanyard(ctx, id, &t).await {
                Ok(()) => alive(),
                Err(_) => {
                    fanout::close(ctx, id, CloseReason::ShuttingDown, close::SHUTTING_DOWN);
                    None
                }
            }
        }
    }
}

/// Handles one text frame; returns the new deadline when the client proved it is alive.
async fn on_text(ctx: &Rc<Shard>, id: ConnId, out: &Outbox, encoding: Encoding, text: &str, initialized: &mut bool) -> Option<Instant> {
    let cfg = &ctx.config().server.socket;
    let alive = || Some(Instant::now() + cfg.heartbeat_timeout());
    let request = match protocol::parse(text) {
        Ok(r) => r,
        Err(Refusal::Error(message)) => {
            send(out, encoding, &frames::error(&message));
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
            send(out, encoding, &frames::bare(frames::HEARTBEAT_ACK));
            alive()
        }
        Request::Init(_) if *initialized => {
            send(out, encoding, &frames::error("You are already initialized. Use SUBSCRIBE (op 12) to add users."));
            None
        }
        Request::Init(target) => {
            if target.ids().len() > cfg.max_subscriptions {
                send(out, encoding, &frames::error(&too_many(cfg.max_subscriptions)));
                return None;
            }
            match fanout::subscribe(ctx, id, &target, Ack::Init).await {
                Ok(()) => {
                    *initialized = true;
                    alive()
                }
                Err(message) => {
                    send(out, encoding, &frames::error(&message));
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
                send(out, encoding, &frames::error(&message));
                return None;
            }
            match fanout::subscribe(ctx, id, &target, Ack::Subscribe).await {
                Ok(()) => alive(),
                Err(message) => {
                    send(out, encoding, &frames::error(&message));
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
                send(out, encoding, &frames::bare(frames::UNSUBSCRIBE_ACK));
                alive()
            }
            Err(message) => {
                send(out, encoding, &frames::error(&message));
                None
            }
        },
    }
}

fn too_many(max: usize) -> String {
    format!("You can subscribe to at most {max} users per connection.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned_size<A, B, C, D, E, G, F>(_: impl Fn(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle connection holds in its task and its records (the README's breakdown).
    #[test]
    fn an_idle_connection_is_small() {
        // The HTTP connection's slot and a guard of one pointer, as the HTTP server passes.
        let session = returned_size(run::<(per_ip::Slot<Shard>, Rc<()>)>);
        eprintln!(
            "session future {session} B, Outbox {} B, Reader {} B, TcpStream {} B, Slot {} B",
            std::mem::size_of::<Outbox>(),
            std::mem::size_of::<Reader>(),
            std::mem::size_of::<Stream>(),
            std::mem::size_of::<per_ip::Slot<Shard>>(),
        );
        assert!(session <= 512, "the session's future is {session} bytes");
    }
}
