//! Awaitable, bounded cross-thread queues: a crossbeam channel plus wakers.
//!
//! glommio's wakers are thread-safe (a foreign wake pushes onto the executor's queue and
//! kicks its eventfd), so a plain crossbeam queue becomes awaitable by registering the
//! receiving task's waker in an [`AtomicWaker`] and waking it after each send. The receiver
//! never blocks its thread: it drains with `try_recv` and parks the task, not the executor.
//!
//! The queue is bounded. A sender that finds it full parks its *task* (on glommio or tokio
//! alike) until the receiver has taken something, never its thread; [`MailboxSender::try_send`]
//! is for callers that must not wait.

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use futures_util::task::AtomicWaker;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// Creates a mailbox holding at most `capacity` messages. Senders may live on any thread;
/// the receiver belongs to one task.
pub fn mailbox<T>(capacity: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let wake = Arc::new(Wakers::default());
    (MailboxSender { tx, wake: wake.clone() }, MailboxReceiver { rx, wake })
}

#[derive(Default)]
struct Wakers {
    receiver: AtomicWaker,
    /// Senders waiting for room; `waiting` mirrors its length so the receiver's hot path
    /// takes no lock while nobody waits.
    senders: Mutex<Vec<Waker>>,
    waiting: AtomicUsize,
}

pub struct MailboxSender<T> {
    tx: Sender<T>,
    wake: Arc<Wakers>,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        MailboxSender { tx: self.tx.clone(), wake: self.wake.clone() }
    }
}

/// The receiving end is gone (its shard has stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiving shard has stopped")]
pub struct Closed;

/// Why [`MailboxSender::try_send`] gave the message back.
#[derive(Debug)]
pub enum Refused<T> {
    Full(T),
    Closed(T),
}

impl<T> MailboxSender<T> {
    /// Queues a message, waiting (as a task) while the mailbox is full.
    pub async fn send(&self, msg: T) -> Result<(), Closed> {
        let mut msg = Some(msg);
        poll_fn(|cx| {
            let Some(m) = msg.take() else { return Poll::Ready(Ok(())) };
            let m = match self.try_send(m) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(Refused::Closed(_)) => return Poll::Ready(Err(Closed)),
                Err(Refused::Full(m)) => m,
            };
            {
                let mut senders = self.wake.senders.lock().unwrap_or_else(|p| p.into_inner());
                senders.push(cx.waker().clone());
                self.wake.waiting.store(senders.len(), Ordering::SeqCst);
            }
            // The receiver may have made room between the try and the registration.
            match self.try_send(m) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(Refused::Closed(_)) => Poll::Ready(Err(Closed)),
                Err(Refused::Full(m)) => {
                    msg = Some(m);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Queues a message if there is room, without waiting.
    pub fn try_send(&self, msg: T) -> Result<(), Refused<T>> {
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.wake.receiver.wake();
                Ok(())
            }
            Err(TrySendError::Full(m)) => Err(Refused::Full(m)),
            Err(TrySendError::Disconnected(m)) => Err(Refused::Closed(m)),
        }
    }

    /// Messages queued and not yet received.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// How many messages the mailbox holds at most.
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }
}

pub struct MailboxReceiver<T> {
    rx: Receiver<T>,
    wake: Arc<Wakers>,
}

impl<T> MailboxReceiver<T> {
    /// Waits for the next message; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| match self.take() {
            Ok(m) => Poll::Ready(Some(m)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                self.wake.receiver.register(cx.waker());
                // A send may have landed between the first try and the registration.
                match self.take() {
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
        self.take().ok()
    }

    fn take(&self) -> Result<T, TryRecvError> {
        let m = self.rx.try_recv()?;
        if self.wake.waiting.load(Ordering::SeqCst) > 0 {
            // The count is reset under the lock that senders register under: reset after it,
            // it could erase a sender that registered in between, which then waits for ever.
            let waiting = {
                let mut senders = self.wake.senders.lock().unwrap_or_else(|p| p.into_inner());
                self.wake.waiting.store(0, Ordering::SeqCst);
                std::mem::take(&mut *senders)
            };
            waiting.into_iter().for_each(Waker::wake);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_a_glommio_task_from_another_thread() {
        let (tx, rx) = mailbox::<u32>(16);
        let sender = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                for i in 0..1000 {
                    tx.send(i).await.unwrap();
                }
            })
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

    #[test]
    fn a_full_mailbox_refuses_try_send_and_parks_send_until_there_is_room() {
        let (tx, rx) = mailbox::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(Refused::Full(3))));
        let waiting = std::thread::spawn({
            let tx = tx.clone();
            move || futures_lite::future::block_on(tx.send(3))
        });
        // The parked sender gets in once the receiver takes one message, and order is kept.
        assert_eq!(rx.try_recv(), Some(1));
        waiting.join().unwrap().unwrap();
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(tx.len(), 0);
        drop(rx);
        assert!(matches!(tx.try_send(4), Err(Refused::Closed(4))));
    }
}
