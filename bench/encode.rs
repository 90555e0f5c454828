//! Building and serializing a user object (`lantern::presence::user_object::build`), rendering
//! it, and wrapping it in a WebSocket text frame.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lantern::presence::user_object::{build, UserInputs};

#[path = "fixtures.rs"]
mod fixtures;

fn encode(c: &mut Criterion) {
    let g = fixtures::guild(200);
    // The member with the most activities makes the largest object.
    let (member, presence) = g.iter().max_by_key(|(_, p)| p.as_ref().map(|p| p.activities.len()).unwrap_or(0)).cloned().expect("members");
    let mut presence = presence.expect("presence");
    presence.user.id = member.user.id;
    let input = UserInputs { member: &member, presence: Some(&presence), last_seen_ms: None, storage_json: &bytes::Bytes::from_static(b"{}") };
    let obj = build(&input);
    let body = obj.render(1_700_000_100_000);

    let mut grp = c.benchmark_group("user object");
    grp.throughput(Throughput::Bytes(body.len() as u64));
    grp.bench_function("build + serialize", |b| b.iter(|| build(black_box(&input))));
    grp.bench_function("render cached bytes", |b| b.iter(|| black_box(&obj).render(1_700_000_100_000)));
    grp.finish();

    let mut grp = c.benchmark_group("encode frame");
    let payload = format!("{{\"t\":\"PRESENCE_UPDATE\",\"op\":6,\"d\":{}}}", String::from_utf8_lossy(&body));
    grp.throughput(Throughput::Bytes(payload.len() as u64));
    grp.bench_function("envelope + header into one buffer", |b| {
        b.iter(|| {
            let d = black_box(&obj);
            let mut json = Vec::with_capacity(body.len() + 40);
            json.extend_from_slice(b"{\"t\":\"PRESENCE_UPDATE\",\"op\":6,\"d\":");
            d.render_into(1_700_000_100_000, &mut json);
            json.push(b'}');
            let mut frame = Vec::with_capacity(json.len() + 4);
            frame.push(0x81);
            if json.len() < 126 {
                frame.push(json.len() as u8);
            } else {
                frame.push(126);
                frame.extend_from_slice(&(json.len() as u16).to_be_bytes());
            }
            frame.extend_from_slice(&json);
            frame
        })
    });
    grp.bench_function("tungstenite Frame::format", |b| {
        b.iter(|| {
            let f = tungstenite::protocol::frame::Frame::message(black_box(payload.as_bytes()).to_vec(), tungstenite::protocol::frame::coding::OpCode::Data(tungstenite::protocol::frame::coding::Data::Text), true);
            let mut out = Vec::with_capacity(payload.len() + 4);
            f.format(&mut out).expect("formats");
            out
        })
    });
    grp.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
