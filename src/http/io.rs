//! Adapter from a glommio socket to hyper's IO traits, and the per-connection phase it tracks
//! for the header deadline and for shedding idle connections.
//!
//! A connection is [`Phase::Idle`] between requests (and before its first). The first byte
//! read while idle starts a request's head ([`Phase::Head`]) and arms the header deadline;
//! the service being called ([`ConnState::busy`]) disarms it. Past the deadline a read fails
//! with `TimedOut` and [`ConnState::timed_out`] is set, so that the connection can answer 408.
//! An idle connection told to go ([`ConnState::shed`]) reads as end-of-stream, which hyper
//! takes as the client closing between requests.
//!
//! Pipelining: bytes of a next request that arrive together with (or while serving) the
//! previous one are already in hyper's buffer and arm nothing; that request is served at once
//! if it is complete, and otherwise its head deadline starts with the next byte read.

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::{Read, ReadBufCursor, Write};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The most one read takes from the socket (see [`GlommioIo`]'s `poll_read`): a request head
/// fits; a longer body takes several reads.
const READ_CHUNK: usize = 8192;

thread_local! {
    /// Each shard's read buffer, shared by its connections (see [`GlommioIo`]'s `poll_read`).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// The most slices one vectored write hands the kernel (Linux's `UIO_MAXIOV` is 1024).
const MAX_IOV: usize = 64;

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request (keep-alive): the idle timeout applies, and it may be shed.
    Idle,
    /// A request's head is arriving: the header deadline applies.
    Head,
    /// The service is answering a request.
    Busy,
    /// Answered 101: the connection has left HTTP.
    Upgraded,
}

/// What the accept loop, the service and the IO adapter share about one connection.
pub struct ConnState {
    phase: Cell<Phase>,
    /// When the current phase began.
    since: Cell<Instant>,
    shed: Cell<bool>,
    timed_out: Cell<bool>,
    /// The last read found nothing to read (and nothing was read since): the client is not
    /// sending.
    waiting: Cell<bool>,
    /// The task waiting on that read, woken to shed the connection.
    reader: Cell<Option<Waker>>,
    /// Since when the current wait for the client has lasted (valid while `waiting`).
    waiting_since: Cell<Instant>,
    /// The client sent nothing for the idle timeout: the next read fails with `TimedOut`.
    expired: Cell<bool>,
    /// The server stops: the connection finishes the request in flight and closes.
    stopping: Cell<bool>,
}

impl Default for ConnState {
    fn default() -> ConnState {
        ConnState {
            phase: Cell::new(Phase::Idle),
            since: Cell::new(Instant::now()),
            shed: Cell::new(false),
            timed_out: Cell::new(false),
            waiting: Cell::new(false),
            reader: Cell::new(None),
            waiting_since: Cell::new(Instant::now()),
            expired: Cell::new(false),
            stopping: Cell::new(false),
        }
    }
}

impl ConnState {
    fn set(&self, phase: Phase) {
        self.phase.set(phase);
        self.since.set(Instant::now());
    }

    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// The service was called: the head is complete. (When the answer began is not kept: no
    /// deadline or shedding looks at a busy connection's age.)
    pub fn busy(&self) {
        self.phase.set(Phase::Busy);
    }

    /// The service has answered, at `at`; the connection waits for the next request.
    pub fn answered(&self, at: Instant) {
        if self.phase.get() == Phase::Busy {
            self.phase.set(Phase::Idle);
            self.since.set(at);
        }
    }

    pub fn upgraded(&self) {
        self.set(Phase::Upgraded);
    }

    /// Since when the connection has been idle, if it is idle, waiting for the client (a
    /// connection just accepted, whose request may already be there unread, is not yet), and
    /// not already shed.
    pub fn idle_since(&self) -> Option<Instant> {
        (self.phase.get() == Phase::Idle && self.waiting.get() && !self.shed.get()).then(|| self.since.get())
    }

    /// The server stops: the connection's task is woken if it waits for its client (a task
    /// at work sees the flag when it is next polled) and closes once the request in flight is
    /// answered.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.wake_reader();
    }

    /// Whether the server has asked the connection to close (see [`ConnState::stop`]).
    pub fn stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Wakes the connection's task if it waits for its client, to see a flag just set.
    fn wake_reader(&self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Asks an idle connection to close: its next idle read ends the stream.
    pub fn shed(&self) {
        self.shed.set(true);
        self.wake_reader();
    }

    /// Ends a connection whose client has sent nothing for `idle` while it waited (between
    /// requests, in a head or in a body): its read fails with `TimedOut`, as a socket read
    /// timeout would. One sweep per shard does this for every connection (see
    /// `http::serve`), instead of a timer armed and cancelled around every read.
    pub fn expire_if_silent(&self, now: Instant, idle: Duration) {
        if self.waiting.get() && self.phase.get() != Phase::Upgraded && now.saturating_duration_since(self.waiting_since.get()) >= idle {
            self.expired.set(true);
            self.wake_reader();
        }
    }

    /// A connection in `phase` since `since`, whose last read found nothing when `waiting`.
    #[cfg(test)]
    pub fn test_state(phase: Phase, since: Instant, waiting: bool) -> ConnState {
        let s = ConnState::default();
        s.phase.set(phase);
        s.since.set(since);
        s.waiting.set(waiting);
        s.waiting_since.set(since);
        s
    }

    /// Whether the connection failed because its request head missed the deadline.
    pub fn timed_out(&self) -> bool {
        self.timed_out.get()
    }
}

/// A glommio TCP stream seen through hyper's `Read`/`Write`.
pub struct GlommioIo {
    stream: glommio::net::TcpStream,
    state: std::rc::Rc<ConnState>,
    header_timeout: Duration,
    /// The idle timeout, set on the socket itself when it leaves HTTP (a WebSocket).
    idle_timeout: Duration,
    /// The header deadline of the current head, created when a read of it has to wait.
    deadline: Option<glommio::timer::Timer>,
}

impl GlommioIo {
    pub fn new(stream: glommio::net::TcpStream, state: std::rc::Rc<ConnState>, header_timeout: Duration, idle_timeout: Duration) -> GlommioIo {
        GlommioIo { stream, state, header_timeout, idle_timeout, deadline: None }
    }

    /// The socket, with the idle timeout as its read timeout from now on (while it served
    /// HTTP, the shard's sweep applied it instead).
    pub fn into_stream(self) -> glommio::net::TcpStream {
        let _ = self.stream.set_read_timeout(Some(self.idle_timeout));
        self.stream
    }
}

impl Read for GlommioIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let state = &*this.state;
        if state.shed.get() && state.phase.get() == Phase::Idle {
            return Poll::Ready(Ok(()));
        }
        if state.expired.get() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing for the idle timeout")));
        }
        // hyper offers uninitialised memory (its whole buffer, 8 KiB and more, on every read)
        // and glommio reads into `&mut [u8]`: zeroing that memory first cost more than the
        // read itself. The read goes into the shard's scratch buffer instead (initialised once;
        // nothing stays in it once this returns, so every connection of the shard shares it)
        // and only the bytes read are copied over.
        let want = buf.remaining().min(READ_CHUNK);
        let polled = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let slice = &mut scratch[..want];
            match Pin::new(&mut this.stream).poll_read(cx, slice) {
                Poll::Ready(Ok(n)) => {
                    buf.put_slice(&slice[..n]);
                    Poll::Ready(Ok(n))
                }
                other => other,
            }
        });
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    state.waiting.set(false);
                    if state.phase.get() == Phase::Idle {
                        // The head's deadline is dated when a read of it first has to wait
                        // (below), microseconds later: a head that arrives whole, as nearly
                        // every one does, reads no clock for it.
                        state.phase.set(Phase::Head);
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // One clock read dates both: the start of this wait, and the deadline of a head
                // that waits for the first time.
                let wait_starts = !state.waiting.get();
                let head_starts = state.phase.get() == Phase::Head && this.deadline.is_none();
                let now = if wait_starts || head_starts { Instant::now() } else { state.since.get() };
                if wait_starts {
                    state.waiting_since.set(now);
                }
                state.waiting.set(true);
                let waker = match state.reader.take() {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                state.reader.set(Some(waker));
                if state.phase.get() == Phase::Head {
                    let timeout = this.header_timeout;
                    let timer = this.deadline.get_or_insert_with(|| {
                        // The first wait of this head: its deadline runs from now.
                        state.since.set(now);
                        glommio::timer::Timer::new(timeout)
                    });
                    if Pin::new(timer).poll(cx).is_ready() {
                        state.timed_out.set(true);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head not complete in time")));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Write for GlommioIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    /// hyper hands over the head it wrote and the body as separate slices; one `sendmsg` sends
    /// them together, so the body is not copied into hyper's buffer first. When the socket has
    /// no room, the first slice goes through glommio's write, which waits for room.
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let n = bufs.len().min(MAX_IOV);
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (std documents it), the
        // slices outlive the call, and the kernel only reads them.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = n as _;
        loop {
            let sent = unsafe { libc::sendmsg(self.stream.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if sent >= 0 {
                return Poll::Ready(Ok(sent as usize));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
                    return Pin::new(&mut self.stream).poll_write(cx, first);
                }
                _ => return Poll::Ready(Err(err)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_waiting_on_their_client_between_requests_are_idle() {
        let t = Instant::now();
        assert_eq!(ConnState::test_state(Phase::Idle, t, true).idle_since(), Some(t));
        // Just accepted (nothing read yet): its request may be there unread.
        assert_eq!(ConnState::test_state(Phase::Idle, t, false).idle_since(), None);
        for phase in [Phase::Head, Phase::Busy, Phase::Upgraded] {
            assert_eq!(ConnState::test_state(phase, t, true).idle_since(), None, "{phase:?}");
        }
        let s = ConnState::test_state(Phase::Idle, t, true);
        s.shed();
        assert_eq!(s.idle_since(), None, "shed once");
        let s = ConnState::test_state(Phase::Busy, t, true);
        s.answered(t + Duration::from_secs(1));
        assert_eq!(s.idle_since(), Some(t + Duration::from_secs(1)), "idle again once answered, since the answer");
        s.upgraded();
        s.answered(t);
        assert_eq!(s.phase(), Phase::Upgraded, "an upgraded connection stays upgraded");
    }

    #[test]
    fn only_connections_whose_client_is_silent_for_the_idle_timeout_expire() {
        let t = Instant::now();
        let idle = Duration::from_secs(60);
        let later = t + Duration::from_secs(61);
        for phase in [Phase::Idle, Phase::Head, Phase::Busy] {
            let s = ConnState::test_state(phase, t, true);
            s.expire_if_silent(t + Duration::from_secs(59), idle);
            assert!(!s.expired.get(), "{phase:?}: not yet");
            s.expire_if_silent(later, idle);
            assert!(s.expired.get(), "{phase:?}: silent for the timeout");
        }
        let reading = ConnState::test_state(Phase::Busy, t, false);
        reading.expire_if_silent(later, idle);
        assert!(!reading.expired.get(), "not waiting on its client");
        let upgraded = ConnState::test_state(Phase::Upgraded, t, true);
        upgraded.expire_if_silent(later, idle);
        assert!(!upgraded.expired.get(), "a WebSocket has its own timeout");
    }
}
