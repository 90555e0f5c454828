//! The kernel send buffer of a WebSocket's server side follows `[server.socket]
//! send_buffer_bytes`, so that a consumer that stops reading costs the server a bounded number
//! of writes. The server runs in this process, so the test reads the option off the server's
//! own end of the connection (Linux reports twice the value set, for its bookkeeping).

mod support;

use lantern::sim::SimConfig;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use support::kv::next_frame;
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

/// SO_SNDBUF of the socket whose local address is `local` and peer `peer`, found among this
/// process's descriptors.
fn send_buffer_of(local: SocketAddr, peer: SocketAddr) -> Option<i32> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Ok(fd) = entry.ok()?.file_name().to_string_lossy().parse::<RawFd>() else { continue };
        if addresses(fd) != Some((local, peer)) {
            continue;
        }
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `fd` is open in this process; the value is a c_int that lives for the call.
        let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (&mut value as *mut libc::c_int).cast(), &mut len) };
        return (rc == 0).then_some(value);
    }
    None
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
