//! The comparators, each its own process pinned to the server CPU, so that every figure of
//! lantern is also a ratio to a floor measured on the same machine at the same moment:
//!
//! - `floor`: the raw fan-out floor. Speaks just enough of the socket protocol (upgrade,
//!   HELLO, INIT → INIT_ACK) for the same clients to subscribe, then on `burst <stamp>` builds
//!   one frame and `write()`s it to every accepted socket.
//! - `hyper-hello`: hyper 1.x on a tokio current-thread runtime answering fixed bodies (the
//!   harness gives it lantern's own response bytes, so both send the same sizes).
//! - `hold`: accepts TCP connections and holds them idle, one task each (memory floor).
//!
//! Each reads a JSON spec line on stdin and prints `{"port":N}` once listening.

use crate::util::pin_to_cpu;
use crate::ws;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComparatorSpec {
    pub cpu: Option<usize>,
    /// Floor: the INIT_ACK `d` and the PRESENCE_UPDATE frame text, whose stamp
    /// `lantern-lt:` + 19 zeros is replaced at each burst.
    #[serde(default)]
    pub init_ack: String,
    #[serde(default)]
    pub template: String,
    /// Floor: frames per write (1 = one write per frame and socket).
    #[serde(default)]
    pub batch: usize,
    /// hyper-hello: body per request path.
    #[serde(default)]
    pub bodies: HashMap<String, String>,
    /// Floor and Node peer: the heartbeat interval their HELLO announces (30 s when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
}

pub const STAMP_PLACEHOLDER: &str = "lantern-lt:0000000000000000000";

fn read_spec() -> Result<ComparatorSpec, String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    let spec: ComparatorSpec = serde_json::from_str(line.trim()).map_err(|e| format!("bad spec: {e}"))?;
    if let Some(cpu) = spec.cpu {
        pin_to_cpu(cpu);
    }
    Ok(spec)
}

fn announce(port: u16) {
    println!("{{\"port\":{port}}}");
    let _ = std::io::stdout().flush();
}

// ---- floor-fanout ----

fn floor_handshake(mut s: TcpStream, hello: &[u8], init_ack: &[u8]) -> std::io::Result<TcpStream> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 2048];
    let head = loop {
        if let Some(h) = ws::head_end(&buf) {
            break h;
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let resp = ws::server_handshake(&buf[..head]).ok_or(std::io::ErrorKind::InvalidData)?;
    buf.drain(..head);
    s.write_all(&[resp, hello.to_vec()].concat())?;
    // INIT (any text frame) → INIT_ACK.
    loop {
        if let Some(f) = ws::parse(&mut buf).map_err(|_| std::io::ErrorKind::InvalidData)? {
            buf.drain(..f.size);
            if f.op == ws::OP_TEXT {
                break;
            }
            continue;
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    s.write_all(init_ack)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

pub fn floor_main() -> Result<(), String> {
    let spec = read_spec()?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let hello = format!(r#"{{"t":"HELLO","op":1,"d":{{"heartbeat_interval":{}}}}}"#, spec.heartbeat_interval_ms.unwrap_or(30_000));
    let hello = ws::server_frame(ws::OP_TEXT, hello.as_bytes());
    let ack = ws::server_frame(ws::OP_TEXT, format!("{{\"t\":\"INIT_ACK\",\"op\":3,\"d\":{}}}", spec.init_ack).as_bytes());
    let (tx, rx) = std::sync::mpsc::channel::<TcpStream>();
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..4 {
        let (rx, sockets, hello, ack) = (rx.clone(), sockets.clone(), hello.clone(), ack.clone());
        std::thread::spawn(move || loop {
            let s = match rx.lock().map(|r| r.recv()) {
                Ok(Ok(s)) => s,
                _ => return,
            };
            if let Ok(s) = floor_handshake(s, &hello, &ack) {
                sockets.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        });
    }
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    announce(port);
    let batch = spec.batch.max(1);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["burst", stamp] => {
                let stamp: u64 = stamp.parse().unwrap_or(0);
                let text = spec.template.replace(STAMP_PLACEHOLDER, &format!("lantern-lt:{stamp:019}"));
                let one = ws::server_frame(ws::OP_TEXT, text.as_bytes());
                let frame = one.repeat(batch);
                let mut socks = sockets.lock().unwrap_or_else(|e| e.into_inner());
                let (written, blocked) = write_all_sockets(&mut socks, &frame);
                println!("{{\"sockets\":{},\"written\":{written},\"blocked\":{blocked}}}", socks.len());
            }
            ["count"] => println!("{{\"sockets\":{}}}", sockets.lock().map(|s| s.len()).unwrap_or(0)),
            ["exit"] => break,
            _ => println!("{{}}"),
        }
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// One `write()` per socket; sockets whose buffer is full are retried until written.
fn write_all_sockets(socks: &mut [TcpStream], frame: &[u8]) -> (usize, usize) {
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let mut written = 0;
    for (i, s) in socks.iter_mut().enumerate() {
        match s.write(frame) {
            Ok(n) if n == frame.len() => written += 1,
            Ok(n) => pending.push((i, n)),
            Err(_) => pending.push((i, 0)),
        }
    }
    let blocked = pending.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !pending.is_empty() && std::time::Instant::now() < deadline {
        pending.retain_mut(|(i, off)| match socks[*i].write(&frame[*off..]) {
            Ok(n) if *off + n == frame.len() => {
                written += 1;
                false
            }
            Ok(n) => {
                *off += n;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        });
        if !pending.is_empty() {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    (written, blocked)
}

// ---- hyper-hello ----

pub fn hyper_main() -> Result<(), String> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let spec = read_spec()?;
    let bodies: Arc<HashMap<String, Bytes>> = Arc::new(spec.bodies.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        announce(listener.local_addr().map_err(|e| e.to_string())?.port());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let bodies = bodies.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = bodies.get(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")).cloned();
                    async move {
                        let resp = match body {
                            Some(b) => hyper::Response::builder().header("content-type", "application/json").body(Full::new(b)),
                            None => hyper::Response::builder().status(404).body(Full::new(Bytes::from_static(b"{}"))),
                        };
                        resp.map_err(|e| e.to_string())
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    })
}

// ---- raw-hold ----

pub fn hold_main() -> Result<(), String> {
    let _spec = read_spec()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        announce(listener.local_addr().map_err(|e| e.to_string())?.port());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut stream = stream;
                let mut b = [0u8; 1];
                while let Ok(n) = stream.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    })
}
