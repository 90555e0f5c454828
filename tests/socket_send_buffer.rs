//! A consumer that stops reading costs the server a bounded number of writes: the kernel send
//! buffer of a WebSocket's server side follows `[server.socket] send_buffer_bytes`, and a
//! client whose receive window has shrunk by a few frames is parked (its frames queued, not written)
//! until it reads again. The server runs in this process, so the tests look at the server's
//! own end of the connection (Linux reports twice the send buffer set, for its bookkeeping).

mod support;

use lantern::sim::SimConfig;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use support::kv::next_frame;
use lantern::discord::{Member, Snowflake, User};
use std::os::fd::AsRawFd;
use support::kv::{create_token, value_body};
use support::raw_ws::RawWs;
use support::{wait_for, Env, DEADLINE};

/// The local and peer addresses of socket `fd`, if it is an IPv4 TCP socket.
fn addresses(fd: RawFd) -> Option<(SocketAddr, SocketAddr)> {
    let get = |peer: bool| {
        // SAFETY: a zeroed sockaddr_in is valid; the length says how much the kernel may write.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = (&mut addr as *mut libc::sockaddr_in).cast();
        let rc = unsafe { if peer { libc::getpeername(fd, p, &mut len) } else { libc::getsockname(fd, p, &mut len) } };
        (rc == 0 && addr.sin_family == libc::AF_INET as libc::sa_family_t)
            .then(|| SocketAddr::from((u32::from_be(addr.sin_addr.s_addr).to_be_bytes(), u16::from_be(addr.sin_port))))
    };
    Some((get(false)?, get(true)?))
}

/// The descriptor of the socket whose local address is `local` and peer `peer`, found among
/// this process's descriptors.
fn socket_of(local: SocketAddr, peer: SocketAddr) -> Option<RawFd> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Ok(fd) = entry.ok()?.file_name().to_string_lossy().parse::<RawFd>() else { continue };
        if addresses(fd) == Some((local, peer)) {
            return Some(fd);
        }
    }
    None
}

/// SO_SNDBUF of the socket whose local address is `local` and peer `peer`.
fn send_buffer_of(local: SocketAddr, peer: SocketAddr) -> Option<i32> {
    let fd = socket_of(local, peer)?;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open in this process; the value is a c_int that lives for the call.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (&mut value as *mut libc::c_int).cast(), &mut len) };
    (rc == 0).then_some(value)
}

/// An ioctl that reports a byte count on socket `fd`: unread bytes (`FIONREAD`) or bytes in
/// the send queue not yet acknowledged (`TIOCOUTQ`).
fn bytes_of(fd: RawFd, request: libc::Ioctl) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is an open socket; the kernel writes one c_int.
    let rc = unsafe { libc::ioctl(fd, request, &mut n) };
    assert_eq!(rc, 0, "ioctl: {}", std::io::Error::last_os_error());
    n as usize
}

/// Segments carrying data that socket `fd` has sent (`TCP_INFO`): over loopback, whose
/// segments hold 64 KiB, one per write of a frame or of a batch of frames.
fn data_segments_sent(fd: RawFd) -> u32 {
    // SAFETY: `info` is a plain C struct the kernel fills up to `len` bytes; both live for
    // the call.
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len);
        (rc, info)
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    info.tcpi_data_segs_out
}

/// The server side's send buffer of a WebSocket to a server whose config sets `bytes`.
fn server_send_buffer(bytes: Option<usize>) -> Option<i32> {
    let env = Env::start_tweaked(SimConfig { members: 5, ..SimConfig::default() }, 1, |_| {}, move |c| {
        if let Some(b) = bytes {
            c.server.socket.send_buffer_bytes = b;
        }
    });
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/socket", env.port)).expect("upgrade");
    // HELLO comes once the connection is the socket's, its buffer set.
    assert_eq!(next_frame(&mut ws)["op"], 1);
    let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() else { unreachable!("plain TCP") };
    let (client, server) = (tcp.local_addr().unwrap(), tcp.peer_addr().unwrap());
    let mut found = None;
    assert!(wait_for(DEADLINE, || {
        found = send_buffer_of(server, client);
        found.is_some()
    }));
    found
}

#[test]
fn a_websockets_send_buffer_is_capped_at_64_kib_by_default_and_follows_the_setting() {
    assert_eq!(server_send_buffer(None), Some(2 * 65_536));
    assert_eq!(server_send_buffer(Some(32_768)), Some(2 * 32_768));
}

const ALICE: Snowflake = Snowflake(1_300_000_000_000_000_001);

/// A server with one member, and a client subscribed to her that has stopped reading after a
/// healthy client received 300 storage updates of about 1.1 KB (330 KB: several times the
/// stalled client's receive window and the server's send buffer together). The healthy client
/// reads each update before the next is written, so each has been delivered to both.
struct Stalled {
    env: Env,
    token: String,
    stalled: RawWs,
    healthy: RawWs,
    /// The server's end of the stalled connection.
    server_fd: RawFd,
}

const ROUNDS: usize = 300;

impl Stalled {
    fn start() -> Stalled {
        let env = Env::start_tweaked(
            SimConfig { members: 5, ..SimConfig::default() },
            1,
            |sim| {
                let user = User { id: ALICE, username: "alice".into(), discriminator: "0".into(), ..Default::default() };
                sim.add_member(Member { user, ..Default::default() }, None);
            },
            |_| {},
        );
        let subscribe = |ws: &mut RawWs| {
            assert_eq!(ws.recv()["t"], "HELLO");
            ws.send(&format!(r#"{{"op":2,"d":{{"user_id":"{ALICE}"}}}}"#));
            assert_eq!(ws.recv()["t"], "INIT_ACK");
        };
        let mut stalled = RawWs::connect(env.port);
        subscribe(&mut stalled);
        let mut healthy = RawWs::connect(env.port);
        subscribe(&mut healthy);
        let (client, server) = (stalled.s.local_addr().unwrap(), stalled.s.peer_addr().unwrap());
        let server_fd = socket_of(server, client).expect("the server's end of the stalled connection");
        let token = create_token(&env.sim, ALICE);
        let mut s = Stalled { env, token, stalled, healthy, server_fd };
        s.put("pad", &"x".repeat(1000));
        assert_eq!(s.healthy.recv()["t"], "STORAGE_UPDATE");
        for i in 0..ROUNDS {
            s.put("n", &i.to_string());
            assert_eq!(s.healthy.recv()["d"]["n"], i.to_string());
        }
        s
    }

    fn put(&self, key: &str, value: &str) {
        let r = self.env.request("PUT", &format!("/api/v1/users/{ALICE}/storage/{key}"), &[("Authorization", &self.token)], &value_body(value));
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// The server's gauge of open WebSockets.
    fn open_sockets(&self) -> String {
        let text = self.env.get("/metrics").text();
        text.lines().find_map(|l| l.strip_prefix("lantern_websocket_connections ")).unwrap_or("").to_owned()
    }
}

#[test]
fn a_client_that_stops_reading_is_parked_before_its_window_closes_and_then_gets_every_frame() {
    let mut s = Stalled::start();
    let unread = bytes_of(s.stalled.s.as_raw_fd(), libc::FIONREAD);
    let unsent = bytes_of(s.server_fd, libc::TIOCOUTQ);
    // Parked while the client's window was still open: nothing waits in the server's send
    // buffer, where a closed window would leave it full (128 KiB, with the client holding
    // as much again, where parked it holds about 50 KiB).
    assert_eq!(unsent, 0, "the server kept writing into a closed window ({unread} bytes unread by the client)");
    // Parked once its window had shrunk by a few frames (35–43 writes of a frame, where
    // waiting for the window to halve took 62–65), then written a frame per sweep until
    // the window is below half.
    let writes = data_segments_sent(s.server_fd);
    assert!(writes < 55, "parked late: {writes} writes ({unread} bytes unread by the client)");

    // Reading again, it gets every frame, in order (its window reopens, and the shard's sweep
    // or the next frame unparks it).
    assert_eq!(s.stalled.recv()["t"], "STORAGE_UPDATE", "the pad");
    for i in 0..ROUNDS {
        let u = s.stalled.recv();
        assert_eq!((u["t"].as_str(), u["d"]["n"].as_str()), (Some("STORAGE_UPDATE"), Some(i.to_string().as_str())));
    }
    s.put("n", "last");
    assert_eq!(s.stalled.recv()["d"]["n"], "last");
    assert_eq!(s.healthy.recv()["d"]["n"], "last");
}

#[test]
fn a_parked_client_that_goes_away_is_let_go() {
    let s = Stalled::start();
    eprintln!("started");
    assert_eq!(s.open_sockets(), "2");
    eprintln!("metrics ok");
    // The client shuts its socket down (a FIN to the server). The server's side is neither
    // reading (its queue is over the reply high-water mark) nor writing (parked): it learns
    // that the peer closed when its window is next read.
    // SAFETY: shuts down the client's own open socket; nothing reads or writes it afterwards.
    unsafe { libc::shutdown(s.stalled.s.as_raw_fd(), libc::SHUT_RDWR) };
    assert!(wait_for(DEADLINE, || s.open_sockets() == "1"), "the server still holds {} sockets", s.open_sockets());
}
