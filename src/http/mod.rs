//! HTTP: hyper 1 (`http1`) over glommio sockets, one accept loop per shard.
//!
//! Every shard binds the same port with SO_REUSEPORT, so the kernel spreads connections over
//! the shards. A request is answered by the shard that accepted it, which asks the owner
//! shards of the users involved through their mailboxes when it does not own them itself.

pub mod io;
pub mod response;
pub mod router;
pub mod storage;
pub mod users;

use crate::http::response::{accepts_gzip, ApiError, Body, Reply};
use crate::http::router::Route;
use crate::runtime::ShardContext;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

/// Accepts connections until shutdown, then waits (up to the grace period) for in-flight
/// connections to finish.
pub async fn serve(ctx: Rc<ShardContext>, listener: glommio::net::TcpListener) {
    let active = Rc::new(Active::default());
    let mut shutdown = ctx.shutdown.subscribe();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            let _ = shutdown.wait_for(|stop| *stop).await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // Out of descriptors or similar: back off briefly instead of spinning.
                tracing::warn!(shard = ctx.index, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let active = active.clone();
        active.count.set(active.count.get() + 1);
        glommio::spawn_local(async move {
            connection(ctx, stream).await;
            active.count.set(active.count.get() - 1);
            if active.count.get() == 0 {
                active.idle.notify_waiters();
            }
        })
        .detach();
    }
    drop(listener);
    let drained = async {
        loop {
            // Created before the check, so a notification in between is not missed.
            let idle = active.idle.notified();
            if active.count.get() == 0 {
                return;
            }
            idle.await;
        }
    };
    futures_lite::future::or(drained, glommio::timer::sleep(ctx.config.server.shutdown_grace)).await;
}

/// Connections in flight on a shard, and a signal for when there are none left.
#[derive(Default)]
struct Active {
    count: Cell<usize>,
    idle: tokio::sync::Notify,
}

type ServiceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>>>>;

async fn connection(ctx: Rc<ShardContext>, stream: glommio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    // An idle keep-alive connection (or a client that stops mid-request) times out on read.
    let _ = stream.set_read_timeout(Some(ctx.config.server.idle_timeout));
    let peer_ip = stream.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    // Set when the service answers a WebSocket upgrade with 101: the connection then leaves
    // hyper (without shutting the socket) and becomes a WebSocket.
    let upgraded = Rc::new(Cell::new(false));
    let svc_ctx = ctx.clone();
    let flag = upgraded.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        let flag = flag.clone();
        Box::pin(async move {
            if let Some(mut resp) = crate::socket::upgrade::accept(&req) {
                flag.set(true);
                resp.headers_mut().insert("x-lantern-shard", HeaderValue::from(ctx.index));
                return Ok(resp);
            }
            Ok::<_, Infallible>(handle(&ctx, req).await)
        }) as ServiceFuture
    });
    let mut conn = hyper::server::conn::http1::Builder::new().serve_connection(io::GlommioIo(stream), service);
    let mut shutdown = ctx.shutdown.subscribe();
    let finished = futures_lite::future::or(async { Some(std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await) }, async {
        let _ = shutdown.wait_for(|stop| *stop).await;
        None
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
    if result.is_ok() && upgraded.get() {
        let parts = conn.into_parts();
        crate::socket::conn::run(ctx, parts.io.0, parts.read_buf.to_vec(), peer_ip).await;
    }
}

/// Answers one request.
pub async fn handle(ctx: &ShardContext, mut req: Request<Incoming>) -> Response<Body> {
    let gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
    let reply = match dispatch(ctx, &mut req).await {
        Ok(r) => r,
        Err(e) => e.into_reply(),
    };
    reply.finish(gzip, ctx.index)
}

async fn dispatch(ctx: &ShardContext, req: &mut Request<Incoming>) -> Result<Reply, ApiError> {
    // The route borrows the path while a handler may read the body; a `Uri` clone is cheap.
    let uri = req.uri().clone();
    let Some(route) = router::route(uri.path()) else { return Err(ApiError::not_found()) };
    // WebSocket upgrades are served on `/socket` only; anywhere else the resource does not exist.
    if route != Route::Socket && crate::socket::upgrade::is_upgrade(req) {
        return Err(ApiError::not_found());
    }
    let method = &req.method().clone();
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
    match route {
        Route::Info => Ok(users::info(ctx).await),
        Route::Health => Ok(users::health(ctx).await),
        Route::Users => users::users(ctx, req.uri().query()).await,
        Route::User(id) => users::user(ctx, id, req.uri().query(), req.headers()).await,
        Route::Storage(id) => storage::storage(ctx, id, req).await,
        Route::StorageKey(id, key) => storage::storage_key(ctx, id, key, req).await,
        Route::Socket => Err(ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", "This path expects a WebSocket upgrade.")),
    }
}
