//! A load-generating client process (`lantern-loadtest client`). The harness starts several,
//! each pinned to the client CPU, hands each a [`ClientSpec`] as one JSON line on stdin, and
//! then drives it with line commands:
//!
//! - WebSocket / TCP roles: the process connects everything, prints `{"ready":..}`, then
//!   answers `collect <timeout_ms> <expect>` with the frames received since the last collect
//!   (and writes their `(send stamp, receive time)` pairs to `samples_path`), and `exit`.
//! - HTTP role: `go` runs the request loop (bounded by `duration_ms` and `max_requests`) and
//!   prints the result; the `(intended start, end)` pairs go to `samples_path`.

use crate::util::{find_stamp, frame_op, mono_ns, pin_to_cpu};
use crate::ws;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::io::{BufRead, Write};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// WebSocket subscribers: one INIT per connection.
    Ws,
    /// Plain TCP connections held open (for the idle-socket comparator).
    Tcp,
    /// HTTP/1.1 keep-alive request loops.
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSpec {
    pub role: Role,
    pub addr: String,
    pub cpu: Option<usize>,
    pub samples_path: String,
    /// WebSocket path (`/socket`).
    #[serde(default)]
    pub path: String,
    /// Ws: the INIT `d` of each connection (one connection per entry).
    #[serde(default)]
    pub inits: Vec<String>,
    /// Tcp: how many connections.
    #[serde(default)]
    pub count: usize,
    /// Ws: stop reading after INIT_ACK (slow consumers).
    #[serde(default)]
    pub slow: bool,
    /// Ws: negotiate permessage-deflate (and inflate what arrives compressed).
    #[serde(default)]
    pub deflate: bool,
    /// Http: request paths, used round-robin.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub connections: usize,
    #[serde(default)]
    pub duration_ms: u64,
    /// Http: requests per second over all connections; 0 is a closed loop (saturation).
    #[serde(default)]
    pub rate: f64,
    #[serde(default)]
    pub max_requests: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    pub ready: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Collected {
    /// PRESENCE_UPDATE frames received since the last collect.
    pub received: u64,
    /// Of those, frames that carried a send stamp (written to the samples file).
    pub stamped: u64,
    /// Connections closed by the server so far.
    pub closed: u64,
    /// Fewest frames any one connection received since the last collect.
    pub min_per_conn: u64,
    pub max_per_conn: u64,
    /// Bytes on the wire of those frames (header and payload, compressed or not).
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpResult {
    pub ok: u64,
    pub errors: u64,
    pub connect_failed: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Default)]
struct St {
    ready: Cell<usize>,
    failed: Cell<usize>,
    first_error: RefCell<Option<String>>,
    received: Cell<u64>,
    bytes: Cell<u64>,
    closed: Cell<u64>,
    per_conn: RefCell<Vec<u64>>,
    samples: RefCell<Vec<(u64, u64)>>,
}

impl St {
    fn fail(&self, e: String) {
        self.failed.set(self.failed.get() + 1);
        self.first_error.borrow_mut().get_or_insert(e);
    }
}

pub fn write_samples(path: &str, samples: &[(u64, u64)]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(samples.len() * 16);
    for (a, b) in samples {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    std::fs::write(path, out)
}

pub fn read_samples(path: &str) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .chunks_exact(16)
        .map(|c| (u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8])), u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8]))))
        .collect()
}

fn say<T: Serialize>(v: &T) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(v).unwrap_or_default());
    let _ = out.flush();
}

/// Entry point of the client process.
pub fn main() -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| e.to_string())?;
    let spec: ClientSpec = serde_json::from_str(line.trim()).map_err(|e| format!("bad client spec: {e}"))?;
    if let Some(cpu) = spec.cpu {
        pin_to_cpu(cpu);
    }
    // Commands arrive on a plain thread and are forwarded into the runtime.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::stdin().lock().lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let st = Rc::new(St::default());
        match spec.role {
            Role::Ws | Role::Tcp => {
                let n = if spec.role == Role::Ws { spec.inits.len() } else { spec.count };
                st.per_conn.borrow_mut().resize(n, 0);
                let gate = Rc::new(tokio::sync::Semaphore::new(128));
                for i in 0..n {
                    let (st, gate, spec) = (st.clone(), gate.clone(), spec.clone());
                    tokio::task::spawn_local(async move {
                        if spec.role == Role::Ws {
                            ws_conn(st, gate, &spec, i).await
                        } else {
                            tcp_conn(st, gate, &spec).await
                        }
                    });
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                while st.ready.get() + st.failed.get() < n && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                say(&Ready { ready: st.ready.get(), failed: st.failed.get() + (n - st.ready.get() - st.failed.get()), first_error: st.first_error.borrow().clone() });
                let mut last_received = 0u64;
                let mut last_bytes = 0u64;
                while let Some(cmd) = rx.recv().await {
                    let parts: Vec<&str> = cmd.split_whitespace().collect();
                    match parts.as_slice() {
                        ["collect", timeout_ms, expect] => {
                            let timeout: u64 = timeout_ms.parse().unwrap_or(1000);
                            let expect: u64 = expect.parse().unwrap_or(0);
                            let end = tokio::time::Instant::now() + Duration::from_millis(timeout);
                            while st.received.get() - last_received < expect && tokio::time::Instant::now() < end {
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            let samples = std::mem::take(&mut *st.samples.borrow_mut());
                            let _ = write_samples(&spec.samples_path, &samples);
                            let mut per = st.per_conn.borrow_mut();
                            let (min, max) = per.iter().fold((u64::MAX, 0), |(a, b), &c| (a.min(c), b.max(c)));
                            per.iter_mut().for_each(|c| *c = 0);
                            let received = st.received.get() - last_received;
                            last_received = st.received.get();
                            let bytes = st.bytes.get() - last_bytes;
                            last_bytes = st.bytes.get();
                            say(&Collected { received, stamped: samples.len() as u64, closed: st.closed.get(), min_per_conn: if per.is_empty() { 0 } else { min }, max_per_conn: max, bytes });
                        }
                        ["exit"] => break,
                        _ => {}
                    }
                }
            }
            Role::Http => {
                while let Some(cmd) = rx.recv().await {
                    match cmd.trim() {
                        "go" => {
                            let r = http_run(&spec).await;
                            say(&r);
                        }
                        "exit" => break,
                        _ => {}
                    }
                }
            }
        }
    });
    // Connections are dropped with the process.
    std::process::exit(0);
}

async fn tcp_conn(st: Rc<St>, gate: Rc<tokio::sync::Semaphore>, spec: &ClientSpec) {
    let permit = gate.acquire().await;
    let s = match TcpStream::connect(&spec.addr).await {
        Ok(s) => s,
        Err(e) => return st.fail(e.to_string()),
    };
    drop(permit);
    st.ready.set(st.ready.get() + 1);
    let mut s = s;
    let mut b = [0u8; 64];
    while let Ok(n) = s.read(&mut b).await {
        if n == 0 {
            break;
        }
    }
    st.closed.set(st.closed.get() + 1);
}

/// Reads until one whole frame is buffered; returns it (inflated when it came compressed), or
/// an error text.
async fn next_frame(s: &mut TcpStream, buf: &mut Vec<u8>, z: &mut Option<Box<flate2::Decompress>>) -> Result<(u8, Vec<u8>), String> {
    loop {
        if let Some(f) = ws::parse(buf).map_err(|e| e.to_string())? {
            let payload = match z.as_deref_mut() {
                Some(z) if f.rsv1 => ws::inflate(z, &buf[f.start..f.end]).map_err(|e| e.to_string())?,
                _ => buf[f.start..f.end].to_vec(),
            };
            buf.drain(..f.size);
            return Ok((f.op, payload));
        }
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn ws_conn(st: Rc<St>, gate: Rc<tokio::sync::Semaphore>, spec: &ClientSpec, index: usize) {
    let permit = gate.acquire().await;
    let mut s = match TcpStream::connect(&spec.addr).await {
        Ok(s) => s,
        Err(e) => return st.fail(format!("connect: {e}")),
    };
    let _ = s.set_nodelay(true);
    if let Err(e) = s.write_all(&ws::client_handshake(&spec.addr, &spec.path, spec.deflate)).await {
        return st.fail(format!("handshake write: {e}"));
    }
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        if let Some(end) = ws::head_end(&buf) {
            break end;
        }
        let mut tmp = [0u8; 1024];
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return st.fail("closed during the handshake".into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        let first = String::from_utf8_lossy(&buf[..head]).lines().next().unwrap_or("").to_string();
        return st.fail(format!("no WebSocket upgrade at {}: {first}", spec.path));
    }
    let mut z = None;
    if spec.deflate {
        let answer = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
        if !answer.contains("sec-websocket-extensions: permessage-deflate") {
            return st.fail("the server did not negotiate permessage-deflate".into());
        }
        z = Some(Box::new(flate2::Decompress::new(false)));
    }
    buf.drain(..head);
    // HELLO, then INIT, then INIT_ACK.
    let mut heartbeat = Duration::from_secs(30);
    loop {
        match next_frame(&mut s, &mut buf, &mut z).await {
            Ok((ws::OP_TEXT, p)) if frame_op(&p) == Some(1) => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p) {
                    if let Some(ms) = v["d"]["heartbeat_interval"].as_u64() {
                        heartbeat = Duration::from_millis(ms.max(100));
                    }
                }
                break;
            }
            Ok(_) => {}
            Err(e) => return st.fail(format!("waiting for HELLO: {e}")),
        }
    }
    let init = format!("{{\"op\":2,\"d\":{}}}", spec.inits[index]);
    if let Err(e) = s.write_all(&ws::client_frame(ws::OP_TEXT, init.as_bytes())).await {
        return st.fail(format!("INIT: {e}"));
    }
    loop {
        match next_frame(&mut s, &mut buf, &mut z).await {
            Ok((ws::OP_TEXT, p)) if frame_op(&p) == Some(3) => break,
            Ok((ws::OP_TEXT, p)) if frame_op(&p) == Some(11) => return st.fail(format!("ERROR after INIT: {}", String::from_utf8_lossy(&p))),
            Ok(_) => {}
            Err(e) => return st.fail(format!("waiting for INIT_ACK: {e}")),
        }
    }
    drop(permit);
    st.ready.set(st.ready.get() + 1);
    let hb = ws::client_frame(ws::OP_TEXT, br#"{"op":4}"#);
    // Heartbeat a little early, staggered so that connections do not beat in lockstep.
    let period = heartbeat.mul_f64(0.8);
    let mut next_hb = tokio::time::Instant::now() + period.mul_f64(0.5 + (index % 100) as f64 / 200.0);
    if spec.slow {
        // A consumer that stopped reading: it keeps the connection (and its heartbeats) alive.
        loop {
            tokio::time::sleep_until(next_hb).await;
            next_hb += period;
            if s.write_all(&hb).await.is_err() {
                break;
            }
        }
        st.closed.set(st.closed.get() + 1);
        return;
    }
    let mut tmp = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = s.read(&mut tmp) => {
                let n = match r { Ok(0) | Err(_) => break, Ok(n) => n };
                let now = mono_ns();
                buf.extend_from_slice(&tmp[..n]);
                let mut at = 0;
                loop {
                    let f = match ws::parse(&mut buf[at..]) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(_) => { st.closed.set(st.closed.get() + 1); return; }
                    };
                    let inflated;
                    let payload = match z.as_deref_mut() {
                        Some(z) if f.rsv1 => match ws::inflate(z, &buf[at + f.start..at + f.end]) {
                            Ok(p) => { inflated = p; &inflated[..] }
                            Err(_) => { st.closed.set(st.closed.get() + 1); return; }
                        },
                        _ => &buf[at + f.start..at + f.end],
                    };
                    match f.op {
                        ws::OP_TEXT if frame_op(payload) == Some(6) => {
                            st.received.set(st.received.get() + 1);
                            st.bytes.set(st.bytes.get() + f.size as u64);
                            st.per_conn.borrow_mut()[index] += 1;
                            if let Some(stamp) = find_stamp(payload) {
                                st.samples.borrow_mut().push((stamp, now));
                            }
                        }
                        ws::OP_PING => {
                            let pong = ws::client_frame(ws::OP_PONG, payload);
                            let _ = s.write_all(&pong).await;
                        }
                        ws::OP_CLOSE => { st.closed.set(st.closed.get() + 1); return; }
                        _ => {}
                    }
                    at += f.size;
                }
                buf.drain(..at);
                if buf.capacity() > 64 * 1024 && buf.len() < 1024 {
                    buf.shrink_to(4096);
                }
            }
            _ = tokio::time::sleep_until(next_hb) => {
                next_hb += period;
                if s.write_all(&hb).await.is_err() { break; }
            }
        }
    }
    st.closed.set(st.closed.get() + 1);
}

async fn http_run(spec: &ClientSpec) -> HttpResult {
    let reqs: Rc<Vec<Vec<u8>>> = Rc::new(
        spec.paths
            .iter()
            .map(|p| format!("GET {p} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lantern-loadtest\r\n\r\n", spec.addr).into_bytes())
            .collect(),
    );
    let conns = spec.connections.max(1);
    let start = mono_ns() + 20_000_000;
    let end = start + spec.duration_ms * 1_000_000;
    let per_conn_max = spec.max_requests.div_ceil(conns as u64).max(1);
    let interval = if spec.rate > 0.0 { (conns as f64 * 1e9 / spec.rate) as u64 } else { 0 };
    let samples = Rc::new(RefCell::new(Vec::with_capacity(1 << 16)));
    let result = Rc::new(RefCell::new(HttpResult { start_ns: start, end_ns: end, ..HttpResult::default() }));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (reqs, samples, result, addr) = (reqs.clone(), samples.clone(), result.clone(), spec.addr.clone());
        let offset = if interval > 0 { interval * c as u64 / conns as u64 } else { 0 };
        tasks.push(tokio::task::spawn_local(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else {
                result.borrow_mut().connect_failed += 1;
                return;
            };
            let _ = s.set_nodelay(true);
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut tmp = vec![0u8; 16 * 1024];
            wait_until_ns(start).await;
            for i in 0..per_conn_max {
                let intended = if interval > 0 { start + offset + i * interval } else { mono_ns() };
                if intended >= end {
                    break;
                }
                if interval > 0 {
                    wait_until_ns(intended).await;
                }
                if s.write_all(&reqs[(i as usize + c) % reqs.len()]).await.is_err() {
                    result.borrow_mut().errors += 1;
                    return;
                }
                match read_response(&mut s, &mut buf, &mut tmp).await {
                    Some(status) => {
                        let done = mono_ns();
                        samples.borrow_mut().push((intended, done));
                        let mut r = result.borrow_mut();
                        if (200..300).contains(&status) {
                            r.ok += 1
                        } else {
                            r.errors += 1
                        }
                    }
                    None => {
                        result.borrow_mut().errors += 1;
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = write_samples(&spec.samples_path, &samples.borrow());
    let r = result.borrow().clone();
    r
}

async fn wait_until_ns(t: u64) {
    let now = mono_ns();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, tmp: &mut [u8]) -> Option<u16> {
    loop {
        if let Some(head) = ws::head_end(buf) {
            let text = std::str::from_utf8(&buf[..head]).ok()?;
            let status: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
            let len: usize = text
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < head + len {
                let n = s.read(tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..head + len);
            return Some(status);
        }
        let n = s.read(tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}
