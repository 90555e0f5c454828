//! One connection's way out: frames are written to the socket as they come (a non-blocking
//! write while nothing waits before them), and only what the kernel did not take is queued,
//! bounded in bytes, for the connection's task to send in vectored writes once the socket
//! drains. Also the connection's deadline, which one sweep per shard checks.
//!
//! A client that stops reading is noticed from the receive window it advertises, before its
//! buffers fill: once the window has shrunk by [`PARK_WINDOW_SHRINK`] from what it was when
//! the connection opened, or the kernel holds bytes back for want of it, frames are queued
//! instead of written (the connection is parked) until it reads again.
//! Without that, a stalled client takes a write per frame until its receive buffer and this
//! side's send buffer are both full, hundreds of frames, each as dear as a healthy delivery.

use crate::fanout::close::CloseReason;
use crate::fanout::frames::{self, Frame};
use bytes::{Buf, Bytes};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::unix::io::RawFd;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Most frames handed to the kernel in one vectored write.
pub const MAX_IOVECS: usize = 64;
/// The client's receive window is read (`TCP_INFO`) once every this many writes, and once
/// every this many frames queued while the connection is parked: one `getsockopt` per eight
/// writes costs well under 1% of a delivery.
pub const WINDOW_CHECK_EVERY: u8 = 8;
/// How far below its first value a client's receive window may fall before the connection is
/// parked. A receiver advertises its free buffer space up to a ceiling, so the window of a
/// client that reads as it receives (even one lagging by several frames) stays at that
/// ceiling, and shrinks only once some 25 KiB lie unread; a stalled client's shrinks by about
/// each frame from then on. A client held back by congestion alone keeps its window wide.
pub const PARK_WINDOW_SHRINK: u32 = 8 * 1024;
/// Bytes the kernel holds back for a closed window at which a connection is parked whatever
/// its window reads: the window a receiver reports need not shrink before its buffer is full.
pub const PARK_UNSENT_BYTES: u32 = 16 * 1024;

/// Shared (on one shard) between fan-out, which sends frames, and the connection's task.
pub struct Outbox {
    inner: RefCell<Inner>,
}

struct Inner {
    fd: RawFd,
    /// Bytes the kernel has not taken yet, in order (the front may be the rest of a frame).
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// Set once: the DISCONNECT and the close frame are queued.
    closing: Option<CloseReason>,
    /// Nothing more is written (the stream ended, or the close handshake is done).
    finished: bool,
    /// A write failed: the peer is gone.
    broken: bool,
    /// When the connection's deadline passes (INIT, heartbeat, or the close's).
    deadline: Instant,
    expired: bool,
    /// The connection's task.
    waker: Option<Waker>,
    /// Writes (or frames queued while parked) since the window was last read.
    since_check: u8,
    /// Frames wait in the queue, unwritten: the client stopped reading ([`Peer::stalled`]).
    parked: bool,
    /// The receive window the client advertised when the connection opened (0: unknown,
    /// and the window is never read).
    window: u32,
}

/// `tcp_info.tcpi_state` of an established connection (the kernel's `TCP_ESTABLISHED`).
const TCP_ESTABLISHED: u8 = 1;

/// What the kernel says of the connection on `fd`, for parking.
struct Peer {
    /// The receive window the peer advertises.
    window: u32,
    /// Bytes in the send queue not yet sent, for want of window.
    unsent: u32,
    /// The connection is still established: a peer that closed or reset is never parked, so
    /// that the next write finds it gone.
    established: bool,
}

impl Peer {
    /// Whether a client whose window read `opened` when the connection opened has stopped
    /// reading: its window is [`PARK_WINDOW_SHRINK`] below that, or the kernel holds
    /// [`PARK_UNSENT_BYTES`] back whatever the window reads. A peer that closed or reset is
    /// never stalled, so that the next write finds it gone.
    fn stalled(&self, opened: u32) -> bool {
        self.established && (self.window.saturating_add(PARK_WINDOW_SHRINK) < opened || self.unsent >= PARK_UNSENT_BYTES)
    }
}

/// The receive window `fd`'s peer advertises, the bytes held back for want of it and whether
/// the connection is established, when the kernel reports them.
fn peer(fd: RawFd) -> Option<Peer> {
    // SAFETY: `info` is a plain C struct the kernel fills up to `len` bytes; both live for
    // the call.
    let (rc, len, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len);
        (rc, len as usize, info)
    };
    // Kernels before 5.4 do not report the field.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + std::mem::size_of::<u32>();
    (rc == 0 && len >= needed).then_some(Peer {
        window: info.tcpi_snd_wnd,
        unsent: info.tcpi_notsent_bytes,
        established: info.tcpi_state == TCP_ESTABLISHED,
    })
}

/// One non-blocking write of `bufs` (no SIGPIPE).
fn send(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    if let [one] = bufs {
        // One buffer (every write of a fan-out delivery): `send` skips copying a msghdr and
        // an iovec array in from user space, which `sendmsg` pays on every call.
        // SAFETY: the slice is live for the duration of the call.
        let n = unsafe { libc::send(fd, one.as_ptr().cast(), one.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        return if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) };
    }
    // SAFETY: the iovecs point into live buffers for the duration of the call; msghdr is
    // zeroed (no address, no control data) apart from them.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What the connection's task is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing is queued.
    Done,
    /// The socket is full; the task is woken when it drains.
    Waiting,
    /// The peer is gone.
    Broken,
}

impl Outbox {
    /// The outbox of the connection on socket `fd`, with its first deadline.
    pub fn new(fd: RawFd, deadline: Instant) -> Outbox {
        Outbox {
            inner: RefCell::new(Inner {
                fd,
                queue: VecDeque::new(),
                bytes: 0,
                closing: None,
                finished: false,
                broken: false,
                deadline,
                expired: false,
                waker: None,
                since_check: 0,
                parked: false,
                window: peer(fd).map_or(0, |p| p.window),
            }),
        }
    }

    /// Sends a frame: written at once when nothing waits before it, whatever the kernel does
    /// not take is queued. False when the queue would pass `cap` bytes: a frame larger than the
    /// cap is never admitted, not even into an empty queue. `None` is for answers to the
    /// client's own requests, which are bounded instead by the connection reading its next
    /// request only below a high-water mark. Frames for a closing connection are dropped.
    pub fn push(&self, frame: &Frame, cap: Option<usize>) -> bool {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() || inner.finished {
            return true;
        }
        if cap.is_some_and(|cap| inner.bytes + frame.len() > cap) {
            return false;
        }
        inner.send_or_queue(frame.wire());
        crate::metrics::local::frames_out(1);
        true
    }

    /// Queues a frame of a fan-out delivery without writing it: the shard's flusher writes
    /// every connection's queued frames, after the batch of events being delivered, in one
    /// vectored write each (a storm of changes costs one write per connection and batch, not
    /// one per frame). True when the connection needs the flusher (its queue was empty); the
    /// cap is as for [`Outbox::push`], `Err(())` when it would be passed.
    pub fn queue(&self, frame: &Frame, cap: usize) -> Result<bool, ()> {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() || inner.finished {
            return Ok(false);
        }
        if inner.bytes + frame.len() > cap {
            return Err(());
        }
        let was_empty = inner.queue.is_empty();
        inner.bytes += frame.len();
        inner.queue.push_back(frame.wire().clone());
        crate::metrics::local::frames_out(1);
        if inner.parked {
            inner.queued_while_parked();
            return Ok(false);
        }
        Ok(was_empty && !inner.broken)
    }

    /// The flusher: writes what is queued, in one vectored write; what the kernel does not
    /// take is left to the connection's task, woken to wait for the socket to drain.
    pub fn flush_now(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.finished || inner.broken || inner.queue.is_empty() || inner.held_back() {
            return;
        }
        let before = inner.bytes;
        inner.write_queue(MAX_IOVECS);
        if inner.bytes < before {
            inner.wrote();
        }
        if !inner.queue.is_empty() || inner.broken {
            inner.wake();
        }
    }

    /// Sends a control frame (a pong, or the close's echo once the client closed); dropped
    /// once the connection finished.
    pub fn push_control(&self, bytes: Bytes) {
        let mut inner = self.inner.borrow_mut();
        if !inner.finished {
            inner.send_or_queue(&bytes);
            crate::metrics::local::frames_out(1);
        }
    }

    /// Queues DISCONNECT with `text`, then a close frame with the reason's code. A slow
    /// consumer's backlog is dropped first (whole frames only: one partly written is
    /// finished). Later calls do nothing.
    pub fn close(&self, reason: CloseReason, text: &str) {
        self.close_as(reason, text, true);
    }

    /// As [`Outbox::close`]; without DISCONNECT when `!disconnect` (a Lanyard connection: the
    /// text goes in the close frame's reason).
    pub fn close_as(&self, reason: CloseReason, text: &str, disconnect: bool) {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() || inner.finished {
            return;
        }
        if reason == CloseReason::SlowConsumer && !inner.queue.is_empty() {
            // The front may be the rest of a frame the client has partly received: keep it.
            inner.queue.truncate(1);
            inner.bytes = inner.queue.front().map_or(0, Bytes::len);
        }
        inner.closing = Some(reason);
        if disconnect {
            inner.send_or_queue(frames::disconnect(text).wire());
            inner.send_or_queue(&frames::close_frame(reason.code()));
            crate::metrics::local::frames_out(2);
        } else {
            inner.send_or_queue(&frames::close_frame_with(reason.code(), text));
            crate::metrics::local::frames_out(1);
        }
        crate::metrics::local::close(true, reason.code());
        inner.wake();
    }

    /// Queues a close frame with `code` and `reason` and nothing before it (Lanyard's
    /// refusals). Later calls do nothing.
    pub fn close_with_code(&self, code: u16, reason: &str) {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() || inner.finished {
            return;
        }
        inner.closing = Some(CloseReason::InvalidPayload);
        inner.send_or_queue(&frames::close_frame_with(code, reason));
        crate::metrics::local::frames_out(1);
        crate::metrics::local::close(true, code);
        inner.wake();
    }

    pub fn is_closing(&self) -> bool {
        self.inner.borrow().closing.is_some()
    }

    /// Nothing more will be written; what is queued is dropped.
    pub fn finish(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.finished = true;
        inner.queue = VecDeque::new();
        inner.bytes = 0;
        inner.wake();
    }

    /// The connection is given up (the server stops): its task sees the socket as gone.
    pub fn end(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.broken = true;
        inner.wake();
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.inner.borrow().bytes
    }

    /// Sets the connection's deadline (and clears an expiry not yet seen).
    pub fn set_deadline(&self, at: Instant) {
        let mut inner = self.inner.borrow_mut();
        inner.deadline = at;
        inner.expired = false;
    }

    /// The sweep: marks the connection expired and wakes it once its deadline has passed.
    pub fn check_deadline(&self, now: Instant) {
        let mut inner = self.inner.borrow_mut();
        if !inner.expired && now >= inner.deadline {
            inner.expired = true;
            inner.wake();
        }
    }

    /// The sweep: a parked connection whose client reads again is unparked, and its task
    /// woken to write what waited (one parked early is written to, to learn its window).
    pub fn check_window(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.parked {
            inner.recheck_parked(true);
        }
    }

    /// Whether the deadline passed (seen once: it then counts as handled).
    pub fn take_expired(&self) -> bool {
        let mut inner = self.inner.borrow_mut();
        std::mem::replace(&mut inner.expired, false)
    }

    /// The connection's task waits here for fan-out's news: a frame queued, the close, the
    /// deadline.
    pub fn register(&self, cx: &Context<'_>) {
        let mut inner = self.inner.borrow_mut();
        match &inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
    }

    /// Writes what is queued, many frames per write; when the socket is full, `wait` (a write
    /// of the next bytes that wakes the task once the socket drains) is polled with them and
    /// returns how many it took.
    pub fn poll_flush(&self, cx: &mut Context<'_>, mut wait: impl FnMut(&mut Context<'_>, &[u8]) -> Poll<io::Result<usize>>) -> Flush {
        let mut inner = self.inner.borrow_mut();
        loop {
            if inner.finished {
                return Flush::Done;
            }
            if inner.broken {
                return Flush::Broken;
            }
            if inner.queue.is_empty() {
                return Flush::Done;
            }
            if inner.held_back() {
                // Woken once the client reads again (or when the connection closes).
                return Flush::Waiting;
            }
            let result = {
                let bufs: Vec<io::IoSlice<'_>> = inner.queue.iter().take(MAX_IOVECS).map(|b| io::IoSlice::new(b)).collect();
                send(inner.fd, &bufs)
            };
            match result {
                Ok(n) => inner.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let front = inner.queue.front().cloned().unwrap_or_default();
                    match wait(cx, &front) {
                        Poll::Ready(Ok(n)) => inner.advance(n),
                        Poll::Ready(Err(_)) => inner.broken = true,
                        Poll::Pending => return Flush::Waiting,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => inner.broken = true,
            }
        }
    }
}

impl Inner {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether a parked connection's frames stay unwritten: all but its close, which goes
    /// out as far as the kernel takes it.
    fn held_back(&self) -> bool {
        self.parked && self.closing.is_none()
    }

    /// A write went out: every [`WINDOW_CHECK_EVERY`] writes, the client's window is read,
    /// and the connection parked when the client has stopped reading ([`Peer::stalled`]).
    fn wrote(&mut self) {
        self.since_check += 1;
        if self.since_check < WINDOW_CHECK_EVERY || self.window == 0 {
            return;
        }
        self.since_check = 0;
        if peer(self.fd).is_some_and(|p| p.stalled(self.window)) {
            self.parked = true;
        }
    }

    /// A frame was queued on a parked connection: every [`WINDOW_CHECK_EVERY`] of them the
    /// window is read again.
    fn queued_while_parked(&mut self) {
        self.since_check += 1;
        if self.since_check >= WINDOW_CHECK_EVERY {
            self.recheck_parked(false);
        }
    }

    /// Once the client is no longer stalled and nothing is held back (or the peer has closed),
    /// the connection is unparked and its task woken to write the queue.
    ///
    /// A receiver announces a reopened window only once it can at least double it, so the
    /// window of a client parked early (still above half of its first value) may be stale
    /// after the client has read. On the sweep's check (`probe`), the first frame that waited
    /// then goes out, and its acknowledgement carries the window as it is (at once over
    /// loopback, by the next check over a network): the client is judged again. A stalled
    /// client parked early takes one frame per sweep until its window is below half, from
    /// where it would announce any reopening, and nothing more is written until it does.
    fn recheck_parked(&mut self, probe: bool) {
        self.since_check = 0;
        let reads = |p: &Peer, opened: u32| !p.established || (!p.stalled(opened) && p.unsent == 0);
        let Some(p) = peer(self.fd) else { return self.unpark() };
        if reads(&p, self.window) {
            return self.unpark();
        }
        if probe && p.window >= self.window / 2 && p.unsent == 0 && !self.queue.is_empty() && !self.finished && !self.broken {
            self.write_queue(1);
            if self.broken || peer(self.fd).is_none_or(|p| reads(&p, self.window)) {
                self.unpark();
            }
        }
    }

    fn unpark(&mut self) {
        self.parked = false;
        self.wake();
    }

    /// One vectored write of the first `frames` queued.
    fn write_queue(&mut self, frames: usize) {
        let result = {
            let bufs: Vec<io::IoSlice<'_>> = self.queue.iter().take(frames).map(|b| io::IoSlice::new(b)).collect();
            send(self.fd, &bufs)
        };
        match result {
            Ok(n) => self.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.broken = true,
        }
    }

    /// Writes `bytes` now if nothing waits before it; queues what is left (a reference to
    /// the shared bytes, cloned only then).
    fn send_or_queue(&mut self, bytes: &Bytes) {
        if self.queue.is_empty() && !self.broken && !self.held_back() {
            let rest = match send(self.fd, &[io::IoSlice::new(bytes)]) {
                Ok(n) if n == bytes.len() => {
                    self.wrote();
                    return;
                }
                Ok(n) => bytes.slice(n..),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => bytes.clone(),
                Err(_) => {
                    self.broken = true;
                    self.wake();
                    return;
                }
            };
            self.bytes += rest.len();
            self.queue.push_back(rest);
            // The task now waits for the socket to drain.
            self.wake();
            return;
        }
        self.bytes += bytes.len();
        self.queue.push_back(bytes.clone());
        if self.parked {
            self.queued_while_parked();
        }
    }

    /// `n` bytes were written.
    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else { break };
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.queue.is_empty() {
            // Give the ring's memory back: an idle connection holds no queue.
            self.queue = VecDeque::new();
        }
    }
}
