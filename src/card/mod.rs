//! The profile card: `GET /api/v1/users/:id?svg=1` (SVG) and `?format=png` (PNG).
//!
//! - [`params`]: the query, validated with the contract's messages.
//! - [`model`]: what a card shows, taken from the owner shard's state.
//! - [`svg`]: layout and the SVG writer; [`text`]: the embedded font, measuring, ellipsis,
//!   escaping; [`badges`]: one glyph per public flag.
//! - [`images`]: the host allowlist and the fetch thread; [`png`]: resvg rasterisation.
//! - [`cache`]: the per-shard caches (fetched images, rendered cards), on the `lru` crate.
//!
//! The owner shard of a user renders its card: it has the data, the version and the caches.
//! A request that lands elsewhere asks the owner (`Shard::card`, an `on_owner`) and awaits the answer.
//! Rendered cards are cached per (user, data version, parameters, format), plus the clock step
//! for cards that show a clock; the ETag is derived from the same key, so `If-None-Match`
//! is answered with 304 without rendering.

pub mod avatar;
pub mod badges;
pub mod cache;
pub mod images;
pub mod model;
pub mod params;
pub mod png;
pub mod svg;
pub mod text;

use crate::config::CardConfig;
use crate::discord::Snowflake;
use crate::time_fmt::now_ms;
use base64::Engine as _;
use bytes::Bytes;
use cache::ByteLru;
use images::Fetcher;
use params::{CardParams, Format, Theme};
use std::cell::RefCell;
use std::collections::HashMap;
use tokio::sync::oneshot;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A failed image is retried after this long (or the image TTL, if shorter).
const FAILED_IMAGE_TTL: Duration = Duration::from_secs(10);

/// A card request, as sent to the owner shard.
#[derive(Debug, Clone)]
pub struct CardRequest {
    pub format: Format,
    pub params: CardParams,
    /// The request's `If-None-Match`, verbatim.
    pub if_none_match: Option<String>,
}

/// The owner shard's answer.
#[derive(Debug, Clone)]
pub enum CardAnswer {
    NotMonitored,
    /// Rendering failed (logged).
    Failed,
    NotModified { etag: String },
    Card { etag: String, body: Bytes, timing: String },
}

#[derive(Clone)]
struct Rendered {
    etag: String,
    body: Bytes,
}

/// One shard's card state: its fetch thread and caches.
pub struct ShardCard {
    config: CardConfig,
    /// Distinguishes this process's ETags from those of an earlier run (versions restart at 0).
    epoch: u64,
    fetcher: Fetcher,
    /// Public image URL → data URI (`None`: the fetch failed recently).
    images: RefCell<ByteLru<String, Option<Rc<str>>>>,
    /// Images being fetched now, with the requests waiting for the same one: a second request
    /// for an image already on its way waits for that fetch instead of starting another.
    in_flight: RefCell<HashMap<String, Vec<oneshot::Sender<Option<Rc<str>>>>>>,
    cards: RefCell<ByteLru<u64, Rendered>>,
}

impl ShardCard {
    pub fn new(shard: usize, config: &CardConfig) -> ShardCard {
        png::set_emoji_font(&config.emoji_font);
        ShardCard {
            config: config.clone(),
            epoch: rand::random(),
            fetcher: Fetcher::new(shard, config.fetch_timeout, config.max_image_bytes),
            images: RefCell::new(ByteLru::new(config.image_cache_bytes)),
            in_flight: RefCell::new(HashMap::new()),
            cards: RefCell::new(ByteLru::new(config.card_cache_bytes)),
        }
    }

    /// The data URI of the image at `url`; the flag is true when a fetch failed (the card then
    /// shows a placeholder and is not cached).
    async fn image(&self, url: Option<&str>) -> (Option<String>, bool) {
        let Some(url) = url else { return (None, false) };
        let Some(target) = images::resolve(url, &self.config.image_hosts) else { return (None, false) };
        if let Some(hit) = self.images.borrow_mut().get(url, Instant::now()) {
            crate::metrics::local::count(crate::metrics::series::CARD_IMAGES, "cached");
            return match hit {
                Some(uri) => (Some(uri.to_string()), false),
                None => (None, true),
            };
        }
        // Someone is fetching it already: wait for that answer.
        let waiting = self.in_flight.borrow_mut().get_mut(url).map(|waiters| {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            rx
        });
        if let Some(rx) = waiting {
            crate::metrics::local::count(crate::metrics::series::CARD_IMAGES, "merged");
            return match rx.await.ok().flatten() {
                Some(uri) => (Some(uri.to_string()), false),
                None => (None, true),
            };
        }
        self.in_flight.borrow_mut().insert(url.to_owned(), Vec::new());
        // Whatever happens to this future (even if it is dropped mid-fetch), the waiters are
        // answered and the entry removed.
        let mut guard = InFlight { card: self, url, result: None };
        let now = Instant::now();
        let result = match self.fetcher.fetch(target).await {
            Ok(img) => {
                crate::metrics::local::count(crate::metrics::series::CARD_IMAGES, "ok");
                let uri: Rc<str> = format!("data:{};base64,{}", img.mime, base64::engine::general_purpose::STANDARD.encode(&img.bytes)).into();
                self.images.borrow_mut().insert(url.to_owned(), Some(uri.clone()), uri.len() + url.len(), now + self.config.image_ttl);
                Some(uri)
            }
            Err(_) => {
                crate::metrics::local::count(crate::metrics::series::CARD_IMAGES, "failed");
                let ttl = FAILED_IMAGE_TTL.min(self.config.image_ttl);
                self.images.borrow_mut().insert(url.to_owned(), None, url.len() + 16, now + ttl);
                None
            }
        };
        guard.result = Some(result.clone());
        drop(guard);
        match result {
            Some(uri) => (Some(uri.to_string()), false),
            None => (None, true),
        }
    }

    /// The image file at `url` (a public image URL) through the same allowlist, cache and
    /// merged fetches as the card's images: `None` when it may not be fetched or the fetch
    /// failed. The cache holds data URIs, so the file is decoded from one.
    pub async fn image_file(&self, url: &str) -> Option<images::Image> {
        let (uri, _) = self.image(Some(url)).await;
        let (head, data) = uri?.strip_prefix("data:")?.split_once(";base64,").map(|(h, d)| (h.to_owned(), d.to_owned()))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
        let mime = images::sniff(&bytes).filter(|m| *m == head)?;
        Some(images::Image { mime, bytes: Bytes::from(bytes) })
    }

    /// How long a fetched image is kept (`card.image_ttl`).
    pub fn image_ttl(&self) -> Duration {
        self.config.image_ttl
    }

    /// Fetches what the card will show (hidden sections are not fetched), all at once. The mask
    /// has one bit per image that failed: avatar, emoji, tag icon, then each activity's large
    /// and small image.
    async fn images_for(&self, data: &model::CardData, p: &CardParams) -> (svg::Images, u64) {
        let shown: &[model::ActivityData] = if p.hide_activity { &[] } else { &data.activities[..data.activities.len().min(p.max_activities)] };
        let emoji = data.custom_status.as_ref().filter(|_| !p.hide_status).and_then(|c| c.emoji_url.as_deref());
        let tag = data.server_tag.as_ref().filter(|_| !p.hide_server_tag).and_then(|t| t.icon_url.as_deref());
        let mut urls: Vec<Option<&str>> = vec![Some(&data.avatar_url), emoji, tag];
        for a in shown {
            urls.push(a.large_image.as_deref());
            urls.push(a.small_image.as_deref().filter(|_| a.kind != crate::discord::activity_type::STREAMING));
        }
        let results = futures_util::future::join_all(urls.into_iter().map(|u| self.image(u))).await;
        let mask = results.iter().enumerate().fold(0u64, |m, (i, (_, failed))| if *failed { m | (1 << i.min(63)) } else { m });
        let mut it = results.into_iter().map(|(uri, _)| uri);
        let mut next = || it.next().flatten();
        let (avatar, emoji, tag_icon) = (next(), next(), next());
        let activities = shown.iter().map(|_| svg::ActivityImages { large: next(), small: next() }).collect();
        (svg::Images { avatar, emoji, tag_icon, activities }, mask)
    }
}

/// Removes an in-flight fetch and answers its waiters (with `None` when the fetch was dropped).
struct InFlight<'a> {
    card: &'a ShardCard,
    url: &'a str,
    result: Option<Option<Rc<str>>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let waiters = self.card.in_flight.borrow_mut().remove(self.url).unwrap_or_default();
        let result = self.result.take().flatten();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Whether `If-None-Match` lists `etag` (weak comparison, as for GET).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if_none_match.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

fn key(epoch: u64, id: Snowflake, version: u64, req: &CardRequest, clock: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (epoch, id.0, version, req.format, clock).hash(&mut h);
    req.params.canonical().hash(&mut h);
    h.finish()
}

impl ShardCard {
    /// Renders (or finds in the cache) the card of `id`, whose owner shard this is; `data` is
    /// what the card shows and the user's data version (`None`: not monitored).
    pub async fn serve(&self, id: Snowflake, data: Option<(model::CardData, u64)>, req: CardRequest) -> CardAnswer {
        serve_owned(self, id, data, req).await
    }
}

async fn serve_owned(card: &ShardCard, id: Snowflake, data: Option<(model::CardData, u64)>, req: CardRequest) -> CardAnswer {
    let Some((data, version)) = data else { return CardAnswer::NotMonitored };
    let now = now_ms();
    let step = card.config.clock_step.as_millis().max(1) as i64;
    let (clock, render_ms) = if data.shows_clock(req.params.hide_activity, req.params.hide_last_seen, req.params.max_activities) {
        let bucket = now.div_euclid(step);
        (bucket as u64, bucket * step)
    } else {
        (0, now)
    };
    let k = key(card.epoch, id, version, &req, clock);
    let etag = format!("W/\"{k:016x}\"");
    if req.if_none_match.as_deref().is_some_and(|inm| etag_matches(inm, &etag)) {
        return CardAnswer::NotModified { etag };
    }
    if let Some(hit) = card.cards.borrow_mut().get(&k, Instant::now()) {
        crate::metrics::local::count(crate::metrics::series::CARD_CACHE_HITS, "");
        return CardAnswer::Card { etag: hit.etag, body: hit.body, timing: "cache;desc=hit".into() };
    }
    let started = Instant::now();
    let (imgs, degraded) = card.images_for(&data, &req.params).await;
    let fetched = started.elapsed();
    // A card with a placeholder for a failed image gets its own ETag (naming which images are
    // missing) and is not kept, so the next request tries the images again; when that request
    // draws the same placeholders, its `If-None-Match` is answered with 304 all the same.
    let etag = match degraded {
        0 => etag,
        mask => format!("W/\"{k:016x}.{mask:x}-p\""),
    };
    if degraded != 0 && req.if_none_match.as_deref().is_some_and(|inm| etag_matches(inm, &etag)) {
        return CardAnswer::NotModified { etag };
    }
    let svg_text = svg::render(&data, &req.params, &imgs, render_ms);
    crate::metrics::local::count(crate::metrics::series::CARD_RENDERS, "");
    let drawn = started.elapsed();
    let body = match req.format {
        Format::Svg => Bytes::from(svg_text),
        Format::Png => match glommio::executor().spawn_blocking(move || png::render(&svg_text)).await {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(user = %id, error = %e, "card PNG failed");
                return CardAnswer::Failed;
            }
        },
    };
    let total = started.elapsed();
    let timing = format!(
        "images;dur={:.1}, svg;dur={:.1}, {}total;dur={:.1}",
        fetched.as_secs_f64() * 1e3,
        (drawn - fetched).as_secs_f64() * 1e3,
        if req.format == Format::Png { format!("png;dur={:.1}, ", (total - drawn).as_secs_f64() * 1e3) } else { String::new() },
        total.as_secs_f64() * 1e3
    );
    if degraded == 0 {
        let expires = Instant::now() + card.config.image_ttl;
        card.cards.borrow_mut().insert(k, Rendered { etag: etag.clone(), body: body.clone() }, body.len() + 64, expires);
    }
    CardAnswer::Card { etag, body, timing }
}

/// The error card for a user who is not monitored, as SVG or PNG; `None` when the PNG could not
/// be drawn. It names `raw_id` as requested and says how to join (`invite`).
pub async fn not_monitored_card(raw_id: &str, format: Format, theme: Theme, invite: &str) -> Option<Bytes> {
    let svg_text = svg::not_monitored(raw_id, theme, invite);
    match format {
        Format::Svg => Some(Bytes::from(svg_text)),
        Format::Png => glommio::executor().spawn_blocking(move || png::render(&svg_text)).await.ok().map(Bytes::from),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn if_none_match() {
        assert!(super::etag_matches("W/\"abc\"", "W/\"abc\""));
        assert!(super::etag_matches("\"x\", W/\"abc\"", "W/\"abc\""));
        assert!(super::etag_matches("*", "W/\"abc\""));
        assert!(!super::etag_matches("W/\"abc-p\"", "W/\"abc\""));
    }
}
