//! One connection's outbound queue: frames waiting for the connection's writer, bounded in bytes.

use crate::fanout::close::CloseReason;
use crate::fanout::frames::{self, Frame};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

/// Shared (on one shard) between the hub, which queues frames, and the connection's writer.
#[derive(Default)]
pub struct Outbox {
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Frame>,
    bytes: usize,
    /// Set once: the DISCONNECT is queued and the close follows the queue.
    closing: Option<CloseReason>,
    /// The reader saw the end of the stream: the writer stops.
    finished: bool,
    writer: Option<Waker>,
    reader: Option<Waker>,
    /// The reader waits here for the queue to drain below its high-water mark.
    room: Option<Waker>,
}

/// What the writer should do next.
pub enum Next {
    /// Write these frames, then flush.
    Frames(Vec<Frame>),
    /// Everything is written: send the close frame.
    Close(CloseReason),
    /// Stop.
    Stop,
}

impl Outbox {
    /// Queues a frame. False when the queue would pass `cap` bytes: a frame larger than the cap
    /// is never admitted, not even into an empty queue. `None` is for answers to the client's
    /// own requests, which are bounded instead by the reader waiting for [`Outbox::poll_room`]
    /// before it reads the next request. Frames for a closing connection are dropped.
    pub fn push(&self, frame: Frame, cap: Option<usize>) -> bool {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() || inner.finished {
            return true;
        }
        if cap.is_some_and(|cap| inner.bytes + frame.len() > cap) {
            return false;
        }
        inner.bytes += frame.len();
        inner.queue.push_back(frame);
        if let Some(w) = inner.writer.take() {
            w.wake();
        }
        true
    }

    /// Queues DISCONNECT with `text`, then a close with the reason's code. A slow consumer's
    /// backlog is dropped first. Later calls do nothing.
    pub fn close(&self, reason: CloseReason, text: &str) {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() || inner.finished {
            return;
        }
        if reason == CloseReason::SlowConsumer {
            inner.queue.clear();
            inner.bytes = 0;
        }
        let frame = frames::disconnect(text);
        inner.bytes += frame.len();
        inner.queue.push_back(frame);
        inner.closing = Some(reason);
        for w in [inner.writer.take(), inner.reader.take(), inner.room.take()].into_iter().flatten() {
            w.wake();
        }
    }

    pub fn is_closing(&self) -> bool {
        self.inner.borrow().closing.is_some()
    }

    /// The stream has ended: nothing more will be written.
    pub fn finish(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.finished = true;
        inner.queue.clear();
        inner.bytes = 0;
        for w in [inner.writer.take(), inner.room.take()].into_iter().flatten() {
            w.wake();
        }
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.inner.borrow().bytes
    }

    /// The writer's wait: up to `batch` bytes of frames (at least one), the close, or stop.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: usize) -> Poll<Next> {
        let mut inner = self.inner.borrow_mut();
        if inner.finished {
            return Poll::Ready(Next::Stop);
        }
        if !inner.queue.is_empty() {
            let mut out = Vec::new();
            let mut taken = 0;
            while inner.queue.front().is_some_and(|f| out.is_empty() || taken + f.len() <= batch) {
                let Some(f) = inner.queue.pop_front() else { break };
                taken += f.len();
                out.push(f);
            }
            inner.bytes -= taken;
            if let Some(w) = inner.room.take() {
                w.wake();
            }
            return Poll::Ready(Next::Frames(out));
        }
        if let Some(reason) = inner.closing {
            return Poll::Ready(Next::Close(reason));
        }
        inner.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The reader's wait before it reads the next request: ready while at most `high_water`
    /// bytes are queued (or the connection is closing). A client that does not read what it is
    /// sent thus stops being read, and the replies it provokes stay bounded.
    pub fn poll_room(&self, cx: &mut Context<'_>, high_water: usize) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.bytes <= high_water || inner.closing.is_some() || inner.finished {
            return Poll::Ready(());
        }
        inner.room = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The reader's wait for the connection to start closing.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.closing.is_some() {
            return Poll::Ready(());
        }
        inner.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}
