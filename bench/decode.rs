//! Decoding gateway dispatches: serde_json against simd-json 0.19, through twilight's
//! `GatewayEventDeserializer` (a serde `DeserializeSeed`) and into the project's own
//! `lantern::discord` types, plus the server's whole decode step (`Dispatcher::frame`).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lantern::discord::events::{Dispatch, GuildCreate};
use lantern::discord::Presence;
use lantern::ingest::decode::Dispatcher;
use serde::de::DeserializeSeed;
use twilight_model::gateway::event::{GatewayEvent, GatewayEventDeserializer};

#[path = "fixtures.rs"]
mod fixtures;

fn twilight_serde(text: &str) -> GatewayEvent {
    let d = GatewayEventDeserializer::from_json(text).expect("envelope");
    let mut de = serde_json::Deserializer::from_str(text);
    d.deserialize(&mut de).expect("decodes")
}

fn twilight_simd(text: &str, buf: &mut Vec<u8>) -> GatewayEvent {
    let d = GatewayEventDeserializer::from_json(text).expect("envelope").into_owned();
    buf.clear();
    buf.extend_from_slice(text.as_bytes());
    let mut de = simd_json::Deserializer::from_slice(buf).expect("tape");
    d.deserialize(&mut de).expect("decodes")
}

fn bench_event<T: serde::de::DeserializeOwned>(c: &mut Criterion, name: &str, text: &str, with_twilight: bool) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("lantern types / serde_json", |b| b.iter(|| serde_json::from_str::<Dispatch<T>>(black_box(text)).expect("decodes")));
    let mut buffers = simd_json::Buffers::new(text.len());
    let mut bytes = Vec::with_capacity(text.len());
    g.bench_function("lantern types / simd-json", |b| {
        b.iter(|| {
            bytes.clear();
            bytes.extend_from_slice(black_box(text).as_bytes());
            simd_json::serde::from_slice_with_buffers::<Dispatch<T>>(&mut bytes, &mut buffers).expect("decodes")
        })
    });
    g.bench_function("serde_json::Value (baseline)", |b| b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(text)).expect("decodes")));
    // twilight's Guild needs fields a synthetic GUILD_CREATE may lack: check first.
    let twilight_ok = with_twilight && {
        let d = GatewayEventDeserializer::from_json(text).expect("envelope");
        let mut de = serde_json::Deserializer::from_str(text);
        match d.deserialize(&mut de) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("{name}: twilight cannot decode this frame ({e}); its rows are skipped");
                false
            }
        }
    };
    if twilight_ok {
        g.bench_function("twilight GatewayEvent / serde_json", |b| b.iter(|| twilight_serde(black_box(text))));
        let mut buf = Vec::with_capacity(text.len());
        g.bench_function("twilight GatewayEvent / simd-json", |b| b.iter(|| twilight_simd(black_box(text), &mut buf)));
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let presence = fixtures::presence_update();
    bench_event::<Presence>(c, "decode PRESENCE_UPDATE", &presence, true);
    let guild = fixtures::guild_create(1000);
    bench_event::<GuildCreate>(c, "decode GUILD_CREATE 1000 members", &guild, true);

    // The server's ingest step as it runs: envelope, decode, route to the owner shard.
    let mut g = c.benchmark_group("ingest Dispatcher::frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("PRESENCE_UPDATE", |b| {
        let mut d = Dispatcher::new(fixtures::GUILD, 2, false);
        let mut out = Vec::with_capacity(4);
        b.iter_batched_ref(Vec::new, |_: &mut Vec<u8>| {
            out.clear();
            d.frame(black_box(&presence), &mut out).expect("decodes");
        }, BatchSize::SmallInput)
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
