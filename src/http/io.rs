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

    /// The service was called: the head is complete.
    pub fn busy(&self) {
        self.set(Phase::Busy);
    }

    /// The service has answered; the connection waits for the next request.
    pub fn answered(&self) {
        if self.phase.get() == Phase::Busy {
            self.set(Phase::Idle);
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

    /// Asks an idle connection to close: its next idle read ends the stream.
    pub fn shed(&self) {
        self.shed.set(true);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// A connection in `phase` since `since`, whose last read found nothing when `waiting`.
    #[cfg(test)]
    pub fn test_state(phase: Phase, since: Instant, waiting: bool) -> ConnState {
        let s = ConnState::default();
        s.phase.set(phase);
        s.since.set(since);
        s.waiting.set(waiting);
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
    /// The header deadline of the current head, created when a read of it has to wait.
    deadline: Option<glommio::timer::Timer>,
}

impl GlommioIo {
    pub fn new(stream: glommio::net::TcpStream, state: std::rc::Rc<ConnState>, header_timeout: Duration) -> GlommioIo {
        GlommioIo { stream, state, header_timeout, deadline: None }
    }

    pub fn into_stream(self) -> glommio::net::TcpStream {
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
        // SAFETY: the uninitialized tail is zeroed before it is viewed as `[u8]`, and only the
        // `n` bytes the read reported are marked filled.
        let slice = unsafe {
            let uninit = buf.as_mut();
            std::ptr::write_bytes(uninit.as_mut_ptr(), 0, uninit.len());
            std::slice::from_raw_parts_mut(uninit.as_mut_ptr() as *mut u8, uninit.len())
        };
        match Pin::new(&mut this.stream).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    state.waiting.set(false);
                    if state.phase.get() == Phase::Idle {
                        state.set(Phase::Head);
                        this.deadline = None;
                    }
                }
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                state.waiting.set(true);
                let waker = match state.reader.take() {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                state.reader.set(Some(waker));
                if state.phase.get() == Phase::Head {
                    let timeout = this.header_timeout;
                    let timer = this.deadline.get_or_insert_with(|| {
                        glommio::timer::Timer::new((state.since.get() + timeout).saturating_duration_since(Instant::now()))
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
        s.answered();
        assert!(s.idle_since().is_some_and(|since| since >= t), "idle again once answered");
        s.upgraded();
        s.answered();
        assert_eq!(s.phase(), Phase::Upgraded, "an upgraded connection stays upgraded");
    }
}
