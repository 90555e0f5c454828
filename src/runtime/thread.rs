//! A thread of the process beside the shards (the gateway's ingest, the cluster's NATS client)
//! that runs until told to stop: its stop signal and its handle, joined on stop or on drop.

use std::thread::JoinHandle;
use tokio::sync::watch;

pub struct StoppableThread {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl StoppableThread {
    /// Starts thread `name` running `task` on a tokio current-thread runtime of its own;
    /// `task` gets the receiver that says when to stop.
    pub fn spawn<F, Fut>(name: &str, task: F) -> std::io::Result<StoppableThread>
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (stop, stop_rx) = watch::channel(false);
        let label = name.to_owned();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(task(stop_rx)),
                Err(e) => tracing::error!(error = %e, thread = %label, "cannot start the thread's runtime"),
            }
        })?;
        Ok(StoppableThread { stop, thread: Some(thread) })
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
