//! The cross-shard queue: `lantern::runtime::mailbox` (crossbeam + AtomicWaker, bounded at 4,096
//! like a shard's mailbox) against tokio mpsc and glommio's `shared_channel`, from one glommio executor to another (1,000 messages
//! per iteration, so each figure is the time of 1,000 sends and receives).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use std::time::{Duration, Instant};

const N: u64 = 1000;

/// Runs `iters` batches through a producer and a consumer executor; returns the total time.
fn run_pair<P, C, PF, CF>(producer: P, consumer: C) -> Duration
where
    P: FnOnce() -> PF + Send + 'static,
    PF: std::future::Future<Output = ()> + 'static,
    C: FnOnce() -> CF + Send + 'static,
    CF: std::future::Future<Output = Duration> + 'static,
{
    let cons = LocalExecutorBuilder::new(Placement::Unbound).spawn(move || async move { consumer().await }).expect("executor");
    let prod = LocalExecutorBuilder::new(Placement::Unbound).spawn(move || async move { producer().await }).expect("executor");
    prod.join().expect("producer");
    cons.join().expect("consumer")
}

fn mailbox(iters: u64) -> Duration {
    let (tx, rx) = lantern::runtime::mailbox::<u64>(4096);
    run_pair(
        move || async move {
            for i in 0..iters * N {
                tx.send(i).await.expect("send");
            }
        },
        move || async move {
            let t = Instant::now();
            let mut n = 0;
            while n < iters * N {
                rx.recv().await.expect("recv");
                n += 1;
                while rx.try_recv().is_some() {
                    n += 1;
                }
            }
            t.elapsed()
        },
    )
}

fn tokio_mpsc(iters: u64) -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    run_pair(
        move || async move {
            for i in 0..iters * N {
                tx.send(i).expect("send");
            }
        },
        move || async move {
            let t = Instant::now();
            let mut buf = Vec::with_capacity(1024);
            let mut n = 0;
            while n < iters * N {
                n += rx.recv_many(&mut buf, 1024).await as u64;
                buf.clear();
            }
            t.elapsed()
        },
    )
}

fn shared_channel(iters: u64) -> Duration {
    let (tx, rx) = glommio::channels::shared_channel::new_bounded::<u64>(4096);
    run_pair(
        move || async move {
            let tx = tx.connect().await;
            for i in 0..iters * N {
                tx.send(i).await.expect("send");
            }
        },
        move || async move {
            let rx = rx.connect().await;
            let t = Instant::now();
            let mut n = 0;
            while n < iters * N {
                rx.recv().await.expect("recv");
                n += 1;
            }
            t.elapsed()
        },
    )
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross-shard queue, 1000 messages");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    g.bench_function("lantern mailbox (crossbeam + AtomicWaker, bounded 4096)", |b| b.iter_custom(mailbox));
    g.bench_function("tokio mpsc unbounded (recv_many)", |b| b.iter_custom(tokio_mpsc));
    g.bench_function("glommio shared_channel (bounded 4096)", |b| b.iter_custom(shared_channel));
    g.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);
