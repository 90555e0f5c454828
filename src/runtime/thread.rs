//! A thread of the process beside the shards (the gateway's ingest, the cluster's NATS client)
//! that runs until told to stop: its stop signal and its handle, joined on stop or on drop.

use std::thread::JoinHandle;
use tokio::sync::watch;

pub struct StoppableThread {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl StoppableThread {
    /// `stop` is the sender whose receiver the thread watches; `thread` its handle.
    pub fn new(stop: watch::Sender<bool>, thread: JoinHandle<()>) -> StoppableThread {
        StoppableThread { stop, thread: Some(thread) }
    }

    /// Tells the thread to stop and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoppableThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}
