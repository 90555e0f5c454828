//! HTTP: hyper 1 (`http1`) over glommio sockets, one accept loop per shard.
//!
//! Every shard binds the same port with SO_REUSEPORT, so the kernel spreads connections over
//! the shards. A request is answered by the shard that accepted it, which asks the owner
//! shards of the users involved through their mailboxes when it does not own them itself.

pub mod card;
pub mod deploy;
pub mod io;
pub mod lanyard;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod privacy;
pub mod response;
pub mod router;
pub mod status;
pub mod storage;
pub mod upgrade;
pub mod users;

use crate::http::io::{ConnState, Phase};
use crate::http::response::{accepts_gzip, ApiError, Body, Reply};
use crate::http::router::Route;
use crate::per_ip::{self, Kind};
use crate::shard::Shard;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Idle keep-alive connections closed at once when an accept runs out of descriptors.
const SHED_BATCH: usize = 16;
/// Accept failures are logged at most this often (each line carries the count since the last).
const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long a connection answered outside hyper (429, 408) is given to read the answer and
/// close before the socket is closed anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Accepts connections until shutdown, then waits (up to the grace period) for in-flight
/// connections to finish.
pub async fn serve(ctx: Rc<Shard>, listener: glommio::net::TcpListener) {
    let active = Rc::new(Active::default());
    // Dropped (cancelled) when serving ends.
    let _sweep = glommio::spawn_local(expire_silent(active.clone(), ctx.config().server.idle_timeout));
    let mut failures = AcceptFailures::default();
    let mut shutdown = ctx.shutdown_signal();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            let _ = shutdown.wait_for(|stop| *stop).await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => {
                if let Some(report) = failures.succeeded(Instant::now()) {
                    report.log(ctx.index());
                }
                s
            }
            Some(Err(e)) => {
                // Out of descriptors: close the longest-idle keep-alive connections so that the
                // clients waiting to be accepted can be served. First let the connections whose
                // bytes have arrived read them: only those still waiting on their client are idle.
                let shed = if out_of_descriptors(&e) {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                    active.shed_idle(SHED_BATCH)
                } else {
                    0
                };
                if let Some(report) = failures.failed(e.to_string(), shed, Instant::now()) {
                    report.log(ctx.index());
                }
                // Shed connections close as soon as their tasks run; otherwise back off briefly
                // instead of spinning.
                glommio::timer::sleep(Duration::from_millis(if shed > 0 { 1 } else { 10 })).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let active = active.clone();
        let state = Rc::new(ConnState::default());
        let key = active.insert(state.clone());
        glommio::spawn_local(async move {
            match connection(ctx, stream, state).await {
                // A WebSocket runs as a task of its own, so that the HTTP connection's state
                // is freed rather than held for the socket's life.
                Some(ws) => {
                    let keep = (ws.slot, active.upgraded(key));
                    glommio::spawn_local(crate::socket::conn::run(ws.ctx, ws.stream, ws.read_buf, ws.peer_ip, ws.encoding, keep)).detach();
                }
                None => active.remove(key),
            }
        })
        .detach();
    }
    drop(listener);
    for c in active.conns.borrow().values() {
        c.stop();
    }
    let drained = || async {
        loop {
            // Created before the check, so a notification in between is not missed.
            let idle = active.idle.notified();
            if active.is_empty() {
                return;
            }
            idle.await;
        }
    };
    futures_lite::future::or(drained(), glommio::timer::sleep(ctx.config().server.shutdown_grace)).await;
    if active.sockets.get() > 0 {
        // WebSockets whose clients did not finish the close in the grace period end now, while
        // the shard still runs their tasks: a task left when the shard stops would keep the
        // shard's state alive (its outbox holds the task's waker), and with it the storage
        // writer's handle that the server's stop waits on.
        crate::socket::conn::end_all(&ctx);
        futures_lite::future::or(drained(), glommio::timer::sleep(SESSIONS_END)).await;
    }
}

/// How long the sessions ended at the close of the grace period get to finish their tasks.
const SESSIONS_END: Duration = Duration::from_secs(1);

/// Ends connections whose client has sent nothing for `idle` (see
/// [`ConnState::expire_if_silent`]), checking every connection a few times per timeout.
async fn expire_silent(active: Rc<Active>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        glommio::timer::sleep(tick).await;
        let now = Instant::now();
        for c in active.conns.borrow().values() {
            c.expire_if_silent(now, idle);
        }
    }
}

/// The connections in flight on a shard, and a signal for when there are none left.
#[derive(Default)]
struct Active {
    next: Cell<u64>,
    /// HTTP connections (their state is shared for the idle sweep and shedding).
    conns: RefCell<HashMap<u64, Rc<ConnState>>>,
    /// WebSocket sessions, counted only: they have their own deadlines and are never shed
    /// as idle, so an idle socket holds no HTTP state.
    sockets: Cell<usize>,
    idle: tokio::sync::Notify,
}

impl Active {
    fn insert(&self, state: Rc<ConnState>) -> u64 {
        let key = self.next.get();
        self.next.set(key + 1);
        self.conns.borrow_mut().insert(key, state);
        key
    }

    fn remove(&self, key: u64) {
        self.conns.borrow_mut().remove(&key);
        self.notify_if_empty();
    }

    /// The connection `key` has become a WebSocket: it is counted until its session drops
    /// the returned guard.
    fn upgraded(self: &Rc<Self>, key: u64) -> Gone {
        self.conns.borrow_mut().remove(&key);
        self.sockets.set(self.sockets.get() + 1);
        Gone { active: self.clone() }
    }

    fn is_empty(&self) -> bool {
        self.sockets.get() == 0 && self.conns.borrow().is_empty()
    }

    fn notify_if_empty(&self) {
        if self.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Asks up to `max` idle connections to close, longest idle first; returns how many.
    fn shed_idle(&self, max: usize) -> usize {
        let conns = self.conns.borrow();
        let mut idle: Vec<(Instant, &Rc<ConnState>)> = conns.values().filter_map(|c| c.idle_since().map(|t| (t, c))).collect();
        let n = max.min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        }
        for (_, c) in &idle[..n] {
            c.shed();
        }
        n
    }
}

/// EMFILE or ENFILE: the process (or the system) has no descriptor left for the connection.
fn out_of_descriptors(e: &glommio::GlommioError<()>) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    let source = match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        _ => return false,
    };
    matches!(source.raw_os_error(), Some(ENFILE | EMFILE))
}

/// Accept failures since the last log line; a line is written at most once a
/// [`FAILURE_REPORT_EVERY`].
#[derive(Debug, Default)]
struct AcceptFailures {
    last_report: Option<Instant>,
    failures: u64,
    shed: usize,
    last_error: String,
}

/// One log line about accept failures.
#[derive(Debug, PartialEq, Eq)]
struct FailureReport {
    failures: u64,
    shed: usize,
    error: String,
}

impl FailureReport {
    fn log(&self, shard: usize) {
        tracing::warn!(shard, failures = self.failures, shed_idle = self.shed, error = %self.error,
            "accept failed");
    }
}

impl AcceptFailures {
    fn due(&self, now: Instant) -> bool {
        self.last_report.is_none_or(|t| now.saturating_duration_since(t) >= FAILURE_REPORT_EVERY)
    }

    fn take(&mut self, now: Instant) -> FailureReport {
        self.last_report = Some(now);
        let report = FailureReport { failures: self.failures, shed: self.shed, error: std::mem::take(&mut self.last_error) };
        self.failures = 0;
        self.shed = 0;
        report
    }

    /// Counts a failure (and the idle connections it shed); a report when one is due.
    fn failed(&mut self, error: String, shed: usize, now: Instant) -> Option<FailureReport> {
        self.failures += 1;
        self.shed += shed;
        self.last_error = error;
        self.due(now).then(|| self.take(now))
    }

    /// After a successful accept: reports failures not yet reported, when a report is due.
    fn succeeded(&mut self, now: Instant) -> Option<FailureReport> {
        (self.failures > 0 && self.due(now)).then(|| self.take(now))
    }
}

type ServiceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>>>>;

/// An upgraded connection, handed from HTTP to the WebSocket session.
struct Upgraded {
    ctx: Rc<Shard>,
    stream: glommio::net::TcpStream,
    read_buf: Vec<u8>,
    peer_ip: std::net::IpAddr,
    encoding: crate::fanout::Encoding,
    slot: per_ip::Slot<Shard>,
}

/// Takes a WebSocket off the shard's connections when its session ends.
struct Gone {
    active: Rc<Active>,
}

impl Drop for Gone {
    fn drop(&mut self) {
        self.active.sockets.set(self.active.sockets.get() - 1);
        self.active.notify_if_empty();
    }
}

async fn connection(ctx: Rc<Shard>, stream: glommio::net::TcpStream, state: Rc<ConnState>) -> Option<Upgraded> {
    let _ = stream.set_nodelay(true);
    // An idle keep-alive connection (or a client that stops mid-request) times out: the
    // shard's sweep (`expire_silent`) ends it, without a timer per read.
    let peer_ip = stream.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    // One slot per connection for its whole life, a WebSocket upgrade included.
    let Some(_slot) = per_ip::acquire(&ctx, peer_ip, Kind::Connection).await else {
        let refusal = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_connections", "Too many connections from your address.");
        answer_and_close(stream, &refusal, ctx.index()).await;
        return None;
    };
    let svc_ctx = ctx.clone();
    let svc_state = state.clone();
    let encoding = Rc::new(std::cell::Cell::new(crate::fanout::Encoding::Plain));
    let svc_encoding = encoding.clone();
    let service = hyper::service::service_fn(move |req| {
        // The head is complete: the header deadline no longer applies.
        svc_state.busy();
        // Boxed: hyper's `poll_without_shutdown` needs an `Unpin` future.
        Box::pin(handle_on(svc_ctx.clone(), req, svc_state.clone(), svc_encoding.clone())) as ServiceFuture
    });
    let io = io::GlommioIo::new(stream, state.clone(), ctx.config().server.header_timeout, ctx.config().server.idle_timeout);
    let mut conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    // The server's stop reaches the connection through its state (`serve` wakes every
    // connection that waits for its client), rather than a watch polled on every wake. The
    // connection is polled first, so that a request already arrived is read and answered.
    let finished = std::future::poll_fn(|cx| match conn.poll_without_shutdown(cx) {
        std::task::Poll::Pending if state.stopping() => std::task::Poll::Ready(None),
        polled => polled.map(Some),
    })
    .await;
    let result = match finished {
        Some(r) => r,
        None => {
            // Finish the request in flight, then close instead of keeping the connection alive.
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
        }
    };
    match result {
        Ok(()) if state.phase() == Phase::Upgraded => {
            let parts = conn.into_parts();
            let read_buf = parts.read_buf.to_vec();
            return Some(Upgraded { ctx: ctx.clone(), stream: parts.io.into_stream(), read_buf, peer_ip, encoding: encoding.get(), slot: _slot });
        }
        Err(_) if state.timed_out() => {
            let late = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "The request headers were not received in time.");
            answer_and_close(conn.into_parts().io.into_stream(), &late, ctx.index()).await;
        }
        // hyper is done with the connection (the client closed it, or an answer said
        // `Connection: close`). A body the route never read (a DELETE or a 401 ignores it) may
        // still be arriving: closing now would reset the connection and could destroy the
        // answer before the client reads it.
        Ok(()) => linger_close(conn.into_parts().io.into_stream(), &[]).await,
        Err(_) => {}
    }
    None
}

/// Writes an error answer with `Connection: close` straight to the socket (outside hyper) and
/// closes it (see [`linger_close`]).
async fn answer_and_close(stream: glommio::net::TcpStream, err: &ApiError, shard: usize) {
    linger_close(stream, &response::closing_answer(err, shard)).await;
}

/// Writes `last` (when there is one), shuts the write side and reads and discards what the
/// client still sends until it closes its side, or for at most [`CLOSE_LINGER`]. A socket
/// closed with unread bytes in its receive queue is reset by the kernel, and a reset can
/// discard an answer the client has not read yet.
async fn linger_close(mut stream: glommio::net::TcpStream, last: &[u8]) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let _ = glommio::timer::timeout(CLOSE_LINGER, async {
        if !last.is_empty() {
            stream.write_all(last).await?;
            stream.flush().await?;
        }
        stream.shutdown(std::net::Shutdown::Write).await?;
        let mut buf = [0u8; 1024];
        while stream.read(&mut buf).await? > 0 {}
        Ok(())
    })
    .await;
}

/// Answers one request of a connection: a WebSocket upgrade of `/socket` is answered 101 and
/// the connection marked upgraded (it then leaves hyper without shutting the socket).
///
/// This and [`answer`] are plain functions returning an `async move` block rather than
/// `async fn`s: an `async fn`'s future keeps its arguments and, beside them, the locals they
/// are moved into, so every request's future (boxed and copied when created) held the
/// request twice per level.
fn handle_on(ctx: Rc<Shard>, mut req: Request<Incoming>, state: Rc<ConnState>, encoding: Rc<Cell<crate::fanout::Encoding>>) -> impl std::future::Future<Output = Result<Response<Body>, Infallible>> {
    async move {
        // The path is routed once: the upgrade check, the dispatch and the gateway header all
        // use this route.
        let uri = req.uri().clone();
        let route = router::route(uri.path());
        if route == Some(Route::Socket) {
            if let Some((mut resp, negotiated)) = crate::http::upgrade::accept(&req, ctx.config().server.socket.permessage_deflate) {
                encoding.set(negotiated);
                // The connection then leaves hyper (without shutting the socket) and becomes a
                // WebSocket.
                state.upgraded();
                resp.headers_mut().insert(response::SHARD_HEADER, response::shard_value(ctx.index()));
                return Ok(resp);
            }
        }
        Ok(answer(&ctx, route, &mut req, &state).await)
    }
}

/// Answers one request, routed to `route`, and tells the connection's `state` when it was
/// answered.
fn answer<'a>(ctx: &'a Rc<Shard>, route: Option<Route<'a>>, req: &'a mut Request<Incoming>, state: &'a ConnState) -> impl std::future::Future<Output = Response<Body>> + 'a {
    async move {
        let started = Instant::now();
        let gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
        let mut reply = match dispatch(ctx, route.as_ref(), req, gzip).await {
            Ok(r) => r,
            Err(e) => e.into_reply(),
        };
        users::mark_gateway_state(ctx, req.method(), route.as_ref(), &mut reply);
        let finished = Instant::now();
        ctx.metrics().http(metrics::route_label(route.as_ref(), req.uri().path()), reply.status.as_u16(), finished.saturating_duration_since(started));
        state.answered(finished);
        reply.finish(gzip, ctx.index())
    }
}

/// A path the Lantern routes do not know: Lanyard's dialect and its quicklinks, or a 404.
async fn other_dialect(ctx: &Rc<Shard>, req: &mut Request<Incoming>) -> Result<Reply, ApiError> {
    let uri = req.uri().clone();
    if let Some((id, ext)) = lanyard::quicklink(uri.path()) {
        return Ok(lanyard::avatar(ctx, id, ext, req.method()).await);
    }
    match lanyard::route(uri.path()) {
        Some(route) if !crate::http::upgrade::is_upgrade(req) => Ok(lanyard::handle(ctx, route, req).await),
        _ => Err(ApiError::not_found()),
    }
}

async fn dispatch(ctx: &Rc<Shard>, route: Option<&Route<'_>>, req: &mut Request<Incoming>, gzip: bool) -> Result<Reply, ApiError> {
    // The routes off the lookup path are boxed: a future is as large as its largest branch,
    // and every lookup's future would carry (and copy when created) the space of the
    // storage, privacy and Lanyard handlers.
    let Some(route) = route else { return Box::pin(other_dialect(ctx, req)).await };
    // WebSocket upgrades are served on `/socket` only; anywhere else the resource does not exist.
    if *route != Route::Socket && crate::http::upgrade::is_upgrade(req) {
        return Err(ApiError::not_found());
    }
    let method = req.method();
    if method == Method::OPTIONS {
        return Ok(Reply::preflight());
    }
    if !route.allowed().contains(method) {
        let mut reply = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("Method {method} is not allowed on this path."),
        )
        .into_reply();
        if let Ok(v) = HeaderValue::from_str(&route.allow_header()) {
            reply.headers.insert(header::ALLOW, v);
        }
        return Ok(reply);
    }
    match *route {
        Route::Info => Ok(status::info(ctx, req.headers()).await),
        Route::Page(name) => page::serve(ctx, name).await,
        Route::Health => Ok(status::health(ctx).await),
        Route::Users => users::users(ctx, req.uri().query()).await,
        Route::User(id) => users::user(ctx, id, req.uri().query(), req.headers(), gzip).await,
        Route::Storage(id) => Box::pin(storage::storage(ctx, id, req)).await,
        Route::StorageKey(id, key) => Box::pin(storage::storage_key(ctx, id, key, req)).await,
        Route::Privacy(id) => Box::pin(privacy::privacy(ctx, id, req)).await,
        Route::OpenApi => Ok(openapi::document()),
        Route::Docs => Ok(openapi::page()),
        Route::Deploy => Ok(deploy::webhook(ctx, req).await),
        Route::Metrics => Ok(metrics::metrics(ctx).await),
        Route::Socket => Err(ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", "This path expects a WebSocket upgrade.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::io::Phase;

    #[test]
    fn accept_failures_are_reported_at_most_once_a_second_with_their_count() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut f = AcceptFailures::default();
        let report = |failures, shed| Some(FailureReport { failures, shed, error: "EMFILE".into() });
        assert_eq!(f.failed("EMFILE".into(), 0, t), report(1, 0), "the first failure is reported at once");
        assert_eq!(f.failed("EMFILE".into(), 16, ms(10)), None);
        assert_eq!(f.succeeded(ms(20)), None, "not yet due");
        assert_eq!(f.failed("EMFILE".into(), 0, ms(500)), None);
        assert_eq!(f.failed("EMFILE".into(), 2, ms(1000)), report(3, 18));
        assert_eq!(f.succeeded(ms(2500)), None, "nothing left to report");
        assert_eq!(f.failed("EMFILE".into(), 0, ms(2600)), report(1, 0));
        assert_eq!(f.failed("EMFILE".into(), 0, ms(2700)), None);
        assert_eq!(f.succeeded(ms(3000)), None);
        assert_eq!(f.succeeded(ms(3600)), report(1, 0), "a success reports what is left once due");
    }

    #[test]
    fn shedding_closes_the_longest_idle_connections_first() {
        let t = Instant::now() + Duration::from_secs(200);
        let active = Active::default();
        let mut idle = Vec::new();
        for age in [5u64, 50, 1, 30, 40, 2] {
            let c = Rc::new(ConnState::test_state(Phase::Idle, t - Duration::from_secs(age), true));
            active.insert(c.clone());
            idle.push((age, c));
        }
        for phase in [Phase::Head, Phase::Busy, Phase::Upgraded] {
            active.insert(Rc::new(ConnState::test_state(phase, t - Duration::from_secs(100), true)));
        }
        active.insert(Rc::new(ConnState::test_state(Phase::Idle, t - Duration::from_secs(100), false)));
        assert_eq!(active.shed_idle(3), 3);
        let mut shed: Vec<u64> = idle.iter().filter(|(_, c)| c.idle_since().is_none()).map(|(age, _)| *age).collect();
        shed.sort();
        assert_eq!(shed, [30, 40, 50]);
        assert_eq!(active.shed_idle(16), 3, "only the idle ones not yet shed");
        assert_eq!(active.shed_idle(16), 0);
    }
}
