//! Awaitable cross-thread queues: a crossbeam channel plus a waker.
//!
//! glommio's wakers are thread-safe (a foreign wake pushes onto the executor's queue and
//! kicks its eventfd), so a plain crossbeam queue becomes awaitable by registering the
//! receiving task's waker in an [`AtomicWaker`] and waking it after each send. The receiver
//! never blocks its thread: it drains with `try_recv` and parks the task, not the executor.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use futures_util::task::AtomicWaker;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

/// Creates an unbounded mailbox. Senders may live on any thread; the receiver belongs to one task.
pub fn mailbox<T>() -> (MailboxSender<T>, MailboxReceiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker = Arc::new(AtomicWaker::new());
    (MailboxSender { tx, waker: waker.clone() }, MailboxReceiver { rx, waker })
}

pub struct MailboxSender<T> {
    tx: Sender<T>,
    waker: Arc<AtomicWaker>,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        MailboxSender { tx: self.tx.clone(), waker: self.waker.clone() }
    }
}

/// The receiving end is gone (its shard has stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiving shard has stopped")]
pub struct Closed;

impl<T> MailboxSender<T> {
    /// Queues a message and wakes the receiver. Never blocks.
    pub fn send(&self, msg: T) -> Result<(), Closed> {
        self.tx.send(msg).map_err(|_| Closed)?;
        self.waker.wake();
        Ok(())
    }

    /// Messages queued and not yet received.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

pub struct MailboxReceiver<T> {
    rx: Receiver<T>,
    waker: Arc<AtomicWaker>,
}

impl<T> MailboxReceiver<T> {
    /// Waits for the next message; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| match self.rx.try_recv() {
            Ok(m) => Poll::Ready(Some(m)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                self.waker.register(cx.waker());
                // A send may have landed between the first try and the registration.
                match self.rx.try_recv() {
                    Ok(m) => Poll::Ready(Some(m)),
                    Err(TryRecvError::Disconnected) => Poll::Ready(None),
                    Err(TryRecvError::Empty) => Poll::Pending,
                }
            }
        })
        .await
    }

    /// Takes whatever else is already queued, without waiting (for batching after `recv`).
    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_a_glommio_task_from_another_thread() {
        let (tx, rx) = mailbox::<u32>();
        let sender = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
        });
        let sum = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut sum = 0u64;
                while let Some(v) = rx.recv().await {
                    sum += v as u64;
                }
                sum
            })
            .unwrap()
            .join()
            .unwrap();
        sender.join().unwrap();
        assert_eq!(sum, (0..1000u64).sum::<u64>());
    }
}
