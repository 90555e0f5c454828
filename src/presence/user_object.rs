//! The Lantern user object: Discord member + presence + last seen + storage → JSON bytes.
//!
//! The object is serialized once per change. Only one field depends on the clock — the
//! elapsed time of a Spotify track (`time.start_human_readable`) — so the bytes are kept with
//! the offset of that value and [`UserJson::render`] inserts the elapsed time there. A large
//! `storage` map is kept the same way, as its own piece inserted at render time, so that
//! neither a presence change nor a storage write copies it into a new object. The owner also
//! keeps where each activity's piece lies ([`Layout`]), so that a rebuild copies the pieces of
//! the activities that did not change instead of writing them again ([`build_reusing`]).

use crate::discord::{activity_type, Activity, Member, Presence, Snowflake, Status};
use crate::presence::flags::flag_names;
use crate::presence::json_out;
use crate::time_fmt::{clock_str, iso, parse_iso_ms, Formatted};
use bytes::Bytes;
use serde::Serialize;
use smallvec::SmallVec;
use std::cell::RefCell;
use std::io::Write as _;

pub const CDN: &str = "https://cdn.discordapp.com";

/// Everything the user object is built from.
pub struct UserInputs<'a> {
    pub member: &'a Member,
    pub presence: Option<&'a Presence>,
    /// Unix milliseconds of the last transition to offline, if the user is offline since.
    pub last_seen_ms: Option<i64>,
    /// The user's key-value map, already serialized as a JSON object.
    pub storage_json: &'a Bytes,
}

/// Storage maps up to this size are copied into the object's bytes (cheap, and rendering then
/// returns the bytes as they are); larger ones stay a separate piece.
pub const INLINE_STORAGE_MAX: usize = 16 * 1024;

/// Rendered objects shorter than this are not worth compressing (they are served plain).
pub const COMPRESS_MIN: usize = 1024;

/// A serialized user object.
#[derive(Debug, Clone)]
pub struct UserJson {
    bytes: Bytes,
    /// When a Spotify elapsed time must be rendered: (byte offset to insert it at, start unix ms).
    splice: Option<(usize, i64)>,
    /// A storage map larger than [`INLINE_STORAGE_MAX`]: (byte offset to insert it at, the map).
    /// It comes after the elapsed time in the object.
    storage: Option<(usize, Bytes)>,
    /// The gzip form of the object as last rendered, with the elapsed seconds it was rendered
    /// for (`None` without a Spotify elapsed time): compressed once per version (and, while a
    /// track plays, once per second), never per request. A rebuilt object starts without one.
    gzip: RefCell<Option<(Option<i64>, Bytes)>>,
    /// The object as last rendered where rendering inserts something (an elapsed time, a large
    /// storage map), with the elapsed seconds it was rendered for: built once per second of a
    /// track (or once per version), so that lookups of a listening user share one buffer.
    rendered: RefCell<Option<(Option<i64>, Bytes)>>,
}

/// Objects are equal when their bytes are; a storage piece counts as the same only when it is
/// the same buffer (the KV store hands over a new one only when the pairs changed), so that
/// comparing never reads a large map.
impl PartialEq for UserJson {
    fn eq(&self, other: &UserJson) -> bool {
        let same_storage = match (&self.storage, &other.storage) {
            (None, None) => true,
            (Some((a, x)), Some((b, y))) => a == b && x.as_ptr() == y.as_ptr() && x.len() == y.len(),
            _ => false,
        };
        same_storage && self.splice == other.splice && self.bytes == other.bytes
    }
}

impl Eq for UserJson {}

impl UserJson {
    /// A placeholder that never equals a built object.
    pub(crate) fn empty() -> UserJson {
        UserJson { bytes: Bytes::new(), splice: None, storage: None, gzip: RefCell::new(None), rendered: RefCell::new(None) }
    }

    /// Length of the object's own bytes (without a large storage map or the elapsed time).
    pub(crate) fn own_len(&self) -> usize {
        self.bytes.len()
    }

    /// Length of the rendered object, give or take the elapsed time.
    fn len_hint(&self) -> usize {
        self.bytes.len() + self.storage.as_ref().map_or(0, |(_, s)| s.len()) + 8
    }

    /// The object as JSON at `now_ms`.
    pub fn render(&self, now_ms: i64) -> Bytes {
        if self.splice.is_none() && self.storage.is_none() {
            return self.bytes.clone();
        }
        let elapsed = self.elapsed_at(now_ms);
        if let Some((at, rendered)) = &*self.rendered.borrow() {
            if *at == elapsed {
                return rendered.clone();
            }
        }
        let mut out = Vec::with_capacity(self.len_hint());
        self.render_into(now_ms, &mut out);
        let rendered = Bytes::from(out);
        *self.rendered.borrow_mut() = Some((elapsed, rendered.clone()));
        rendered
    }

    /// The elapsed seconds the object shows at `now_ms` (what makes renders differ).
    fn elapsed_at(&self, now_ms: i64) -> Option<i64> {
        self.splice.map(|(_, start)| now_ms.saturating_sub(start).div_euclid(1000))
    }

    /// The object at `now_ms` gzip-compressed (`Ok`), from the cache when this version was
    /// already compressed for the same elapsed time; the plain object (`Err`) when it is
    /// shorter than [`COMPRESS_MIN`] and is served as it is.
    pub fn render_gzip(&self, now_ms: i64) -> Result<Bytes, Bytes> {
        let elapsed = self.elapsed_at(now_ms);
        if let Some((at, z)) = &*self.gzip.borrow() {
            if *at == elapsed {
                return Ok(z.clone());
            }
        }
        let plain = self.render(now_ms);
        if plain.len() < COMPRESS_MIN {
            return Err(plain);
        }
        let Some(z) = gzip(&plain) else { return Err(plain) };
        *self.gzip.borrow_mut() = Some((elapsed, z.clone()));
        Ok(z)
    }

    /// Appends the object at `now_ms` to `out` (for arrays and frames, without an extra copy).
    pub fn render_into(&self, now_ms: i64, out: &mut Vec<u8>) {
        let mut from = 0;
        if let Some((at, start)) = self.splice {
            out.extend_from_slice(&self.bytes[from..at]);
            // Activity timestamps are the user's to set: saturate rather than overflow.
            out.extend_from_slice(clock_str(now_ms.saturating_sub(start).div_euclid(1000)).as_str().as_bytes());
            from = at;
        }
        if let Some((at, storage)) = &self.storage {
            out.extend_from_slice(&self.bytes[from..*at]);
            out.extend_from_slice(storage);
            from = *at;
        }
        out.extend_from_slice(&self.bytes[from..]);
    }
}

/// gzip at flate2's fast level (the result is cached per version).
pub fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3 + 64), flate2::Compression::fast());
    enc.write_all(body).ok()?;
    enc.finish().ok().map(Bytes::from)
}

#[derive(Serialize)]
struct TimePair {
    unix: Option<i64>,
    raw: Option<Formatted>,
}

impl TimePair {
    fn from_ms(ms: Option<i64>) -> TimePair {
        match ms {
            Some(ms) => TimePair { unix: Some(ms.div_euclid(1000)), raw: Some(iso(ms)) },
            None => TimePair { unix: None, raw: None },
        }
    }
}

#[derive(Serialize)]
struct Flags {
    human_readable: Vec<&'static str>,
    bitfield: u64,
}

#[derive(Serialize)]
struct Metadata<'a> {
    id: String,
    username: &'a str,
    discriminator: &'a str,
    global_name: Option<&'a str>,
    avatar: Option<&'a str>,
    avatar_url: Option<String>,
    display_avatar_url: String,
    bot: bool,
    flags: Flags,
    monitoring_since: TimePair,
    avatar_decoration_data: Option<&'a crate::discord::Decoration>,
    banner_decoration_data: Option<&'a crate::discord::Decoration>,
    collectibles: Option<&'a crate::discord::Collectibles>,
    display_name_styles: Option<&'a crate::discord::DisplayNameStyles>,
    clan: Option<&'a crate::discord::PrimaryGuild>,
    primary_guild: Option<&'a crate::discord::PrimaryGuild>,
}

#[derive(Serialize)]
struct ServerTag<'a> {
    guild_id: String,
    name: Option<&'a str>,
    icon_url: Option<String>,
}

/// Lantern's name for a Discord activity type.
pub fn activity_type_name(kind: u8) -> &'static str {
    match kind {
        activity_type::PLAYING => "PLAYING",
        activity_type::STREAMING => "STREAMING",
        activity_type::LISTENING => "LISTENING",
        activity_type::WATCHING => "WATCHING",
        activity_type::CUSTOM => "CUSTOM",
        activity_type::COMPETING => "COMPETING",
        _ => "UNKNOWN",
    }
}

/// `https://cdn.discordapp.com/avatars/<id>/<hash>.<gif|png>`.
pub fn avatar_url(id: Snowflake, hash: &str) -> String {
    let ext = if hash.starts_with("a_") { "gif" } else { "png" };
    format!("{CDN}/avatars/{id}/{hash}.{ext}")
}

/// The default avatar Discord shows for a user without one.
pub fn default_avatar_url(id: Snowflake, discriminator: &str) -> String {
    let n = match discriminator.parse::<u64>() {
        Ok(d) if d != 0 => d % 5,
        _ => (id.0 >> 22) % 6,
    };
    format!("{CDN}/embed/avatars/{n}.png")
}

/// Resolves an activity asset (`mp:`, `spotify:`, `youtube:`, `twitch:` or an application
/// asset id) to an image URL; unknown prefixes give `None`.
pub fn asset_url(asset: &str, application_id: Option<Snowflake>) -> Option<String> {
    let mut id = itoa::Buffer::new();
    asset_url_pieces(asset, application_id, &mut id).map(|pieces| pieces.concat())
}

/// The pieces of [`asset_url`]'s URL, unjoined: the user object writes them straight into
/// its JSON (every activity with assets has one or two), the card joins them.
fn asset_url_pieces<'a>(asset: &'a str, application_id: Option<Snowflake>, id: &'a mut itoa::Buffer) -> Option<[&'a str; 6]> {
    Some(match asset.split_once(':') {
        Some(("mp", rest)) => ["https://media.discordapp.net/", rest, "", "", "", ""],
        Some(("spotify", rest)) => ["https://i.scdn.co/image/", rest, "", "", "", ""],
        Some(("youtube", rest)) => ["https://i.ytimg.com/vi/", rest, "/hqdefault_live.jpg", "", "", ""],
        Some(("twitch", rest)) => ["https://static-cdn.jtvnw.net/previews-ttv/live_user_", rest, ".png", "", "", ""],
        Some(_) => return None,
        None => [CDN, "/app-assets/", id.format(application_id?.0), "/", asset, ".png"],
    })
}

/// The emoji's image, for custom emoji.
pub fn emoji_url(id: Snowflake, animated: bool) -> String {
    emoji_url_pieces(&mut itoa::Buffer::new(), id, animated).concat()
}

/// [`emoji_url`]'s URL, unjoined (as for [`asset_url_pieces`]).
fn emoji_url_pieces(digits: &mut itoa::Buffer, id: Snowflake, animated: bool) -> [&str; 4] {
    [CDN, "/emojis/", digits.format(id.0), if animated { ".gif" } else { ".png" }]
}

/// Whether an activity is Spotify's (listening, named "Spotify").
pub fn is_spotify(a: &Activity) -> bool {
    a.name == "Spotify" && a.kind == activity_type::LISTENING
}

/// `{"unix":…,"raw":…}` for a time, `null` in both for none.
fn write_time_pair(out: &mut Vec<u8>, ms: Option<i64>) {
    match ms {
        Some(ms) => {
            out.extend_from_slice(b"{\"unix\":");
            json_out::int(out, ms.div_euclid(1000));
            out.extend_from_slice(b",\"raw\":\"");
            // ISO times need no escaping.
            out.extend_from_slice(iso(ms).as_str().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        None => out.extend_from_slice(b"{\"unix\":null,\"raw\":null}"),
    }
}

/// A time pair, or `null` without a time.
fn write_opt_time_pair(out: &mut Vec<u8>, ms: Option<i64>) {
    match ms {
        Some(_) => write_time_pair(out, ms),
        None => out.extend_from_slice(b"null"),
    }
}

/// The image URL of the asset `hash`, or `null` (none, or an unknown prefix).
fn write_asset_url(out: &mut Vec<u8>, hash: Option<&str>, application_id: Option<Snowflake>) {
    let mut id = itoa::Buffer::new();
    match hash.and_then(|h| asset_url_pieces(h, application_id, &mut id)) {
        Some(url) => json_out::pieces(out, &url),
        None => out.extend_from_slice(b"null"),
    }
}

/// One of an activity's images: `{"hash":…,"image_url":…,"text":…}`.
fn write_asset(out: &mut Vec<u8>, hash: Option<&str>, text: Option<&str>, application_id: Option<Snowflake>) {
    out.extend_from_slice(b"{\"hash\":");
    json_out::opt_str(out, hash);
    out.extend_from_slice(b",\"image_url\":");
    write_asset_url(out, hash, application_id);
    out.extend_from_slice(b",\"text\":");
    json_out::opt_str(out, text);
    out.push(b'}');
}

/// One entry of `activities`. Custom statuses carry their emoji and no details, application,
/// URL, assets or times; other activities the reverse.
fn write_activity(out: &mut Vec<u8>, a: &Activity) {
    let custom = a.kind == activity_type::CUSTOM;
    out.extend_from_slice(b"{\"id\":");
    json_out::opt_str(out, a.id.as_deref());
    out.extend_from_slice(b",\"name\":");
    json_out::str(out, &a.name);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(activity_type_name(a.kind).as_bytes());
    out.extend_from_slice(b"\",\"state\":");
    json_out::opt_str(out, a.state.as_deref());
    out.extend_from_slice(b",\"details\":");
    json_out::opt_str(out, if custom { None } else { a.details.as_deref() });
    out.extend_from_slice(b",\"application_id\":");
    json_out::opt_id(out, if custom { None } else { a.application_id.map(|id| id.0) });
    out.extend_from_slice(b",\"created_at\":");
    json_out::opt_int(out, a.created_at.map(|ms| ms.div_euclid(1000)));
    if custom {
        out.extend_from_slice(b",\"emoji\":");
        match &a.emoji {
            None => out.extend_from_slice(b"null"),
            Some(e) => {
                let animated = e.animated.unwrap_or(false);
                out.extend_from_slice(b"{\"name\":");
                json_out::str(out, &e.name);
                out.extend_from_slice(b",\"id\":");
                json_out::opt_id(out, e.id.map(|id| id.0));
                out.extend_from_slice(b",\"animated\":");
                json_out::bool(out, animated);
                out.extend_from_slice(b",\"image_url\":");
                match e.id {
                    Some(id) => json_out::pieces(out, &emoji_url_pieces(&mut itoa::Buffer::new(), id, animated)),
                    None => out.extend_from_slice(b"null"),
                }
                out.push(b'}');
            }
        }
        out.push(b'}');
        return;
    }
    if let Some(url) = a.url.as_deref() {
        out.extend_from_slice(b",\"url\":");
        json_out::str(out, url);
    }
    out.extend_from_slice(b",\"assets\":");
    match &a.assets {
        None => out.extend_from_slice(b"null"),
        Some(assets) => {
            out.extend_from_slice(b"{\"large_image\":");
            write_asset(out, assets.large_image.as_deref(), assets.large_text.as_deref(), a.application_id);
            out.extend_from_slice(b",\"small_image\":");
            write_asset(out, assets.small_image.as_deref(), assets.small_text.as_deref(), a.application_id);
            out.push(b'}');
        }
    }
    let ts = a.timestamps.as_ref();
    out.extend_from_slice(b",\"start_time\":");
    write_opt_time_pair(out, ts.and_then(|t| t.start));
    out.extend_from_slice(b",\"end_time\":");
    write_opt_time_pair(out, ts.and_then(|t| t.end));
    out.push(b'}');
}

fn push_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing these plain structs into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("user object serializes");
}

/// The pieces of the user object that come from the member alone — `metadata` and
/// `server_tag` — serialized. Most changes are presence changes, which leave the member as it
/// is, so the owner keeps these and rebuilds them only when the member changes
/// ([`build_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberJson {
    /// `{"metadata":{…}`: the object's opening and its first field.
    metadata: Box<[u8]>,
    /// The value of `server_tag`.
    server_tag: Box<[u8]>,
}

/// Serializes the member's pieces of the user object.
pub fn member_json(member: &Member) -> MemberJson {
    let user = &member.user;
    let mut out = Vec::with_capacity(640);
    out.extend_from_slice(b"{\"metadata\":");
    let bits = user.public_flags.unwrap_or(0);
    let joined = member.joined_at.as_deref().and_then(parse_iso_ms);
    push_json(
        &mut out,
        &Metadata {
            id: user.id.to_string(),
            username: &user.username,
            discriminator: &user.discriminator,
            global_name: user.global_name.as_deref(),
            avatar: user.avatar.as_deref(),
            avatar_url: user.avatar.as_deref().map(|h| avatar_url(user.id, h)),
            display_avatar_url: match user.avatar.as_deref() {
                Some(h) => avatar_url(user.id, h),
                None => default_avatar_url(user.id, &user.discriminator),
            },
            bot: user.bot,
            flags: Flags { human_readable: flag_names(bits), bitfield: bits },
            monitoring_since: match joined {
                Some(ms) => TimePair::from_ms(Some(ms)),
                None => TimePair { unix: Some(0), raw: None },
            },
            avatar_decoration_data: user.avatar_decoration_data.as_ref(),
            banner_decoration_data: user.banner_decoration_data.as_ref(),
            collectibles: user.collectibles.as_ref(),
            display_name_styles: user.display_name_styles.as_ref(),
            clan: user.clan.as_ref(),
            primary_guild: user.primary_guild.as_ref(),
        },
    );
    let tag = user.primary_guild.as_ref().filter(|g| g.identity_enabled == Some(true)).and_then(|g| {
        let guild = g.identity_guild_id?;
        Some(ServerTag {
            guild_id: guild.to_string(),
            name: g.tag.as_deref(),
            icon_url: g.badge.as_deref().map(|b| format!("{CDN}/guild-tag-badges/{guild}/{b}.png")),
        })
    });
    let mut server_tag = Vec::with_capacity(128);
    push_json(&mut server_tag, &tag);
    MemberJson { metadata: out.into_boxed_slice(), server_tag: server_tag.into_boxed_slice() }
}

/// Builds and serializes the user object.
pub fn build(input: &UserInputs<'_>) -> UserJson {
    build_with(input, &member_json(input.member))
}

/// Builds and serializes the user object around the member's pieces, already serialized
/// (`member_json(input.member)`).
pub fn build_with(input: &UserInputs<'_>, member_json: &MemberJson) -> UserJson {
    build_reusing(input, member_json, 0, None).0
}

/// Where the pieces that depend on one activity alone lie in an object's bytes: each entry of
/// `activities`, and the `spotify` block of `active_platforms`. The owner keeps it beside the
/// object, so that the next build copies the bytes of every activity that did not change
/// instead of writing them again (a Spotify track's activity stays the same for the whole
/// track while the status or another activity changes).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Byte range of each activity written, in the order of the activities it was built from
    /// (none when the user showed as offline, whose activities are not written). Inline for up
    /// to four activities: a rebuild then allocates for its bytes only.
    activities: SmallVec<[(u32, u32); 4]>,
    /// The Spotify block: its byte range, which of the activities it was written from, and
    /// where inside it the elapsed time is inserted (offset from its start, start unix ms).
    spotify: Option<Spotify>,
}

#[derive(Debug, Clone, Copy)]
struct Spotify {
    range: (usize, usize),
    activity: usize,
    splice: Option<(usize, i64)>,
}

/// An object built earlier, to copy unchanged activities from.
pub struct Previous<'a> {
    pub json: &'a UserJson,
    pub layout: &'a Layout,
    /// The activities `json` was built from, exactly as the build read them (after the privacy
    /// filter): a piece is copied only when its activity is equal to the one it came from.
    pub activities: &'a [Activity],
}

impl Previous<'_> {
    /// The bytes written for an activity equal to `a`, looked for at the same place first
    /// (most changes leave the other activities where they were), then anywhere.
    fn activity(&self, i: usize, a: &Activity) -> Option<&[u8]> {
        let ranges = &self.layout.activities;
        // `ranges` is empty when the activities were not written (offline).
        let j = if i < ranges.len() && self.activities.get(i) == Some(a) {
            i
        } else {
            (0..ranges.len().min(self.activities.len())).find(|&j| self.activities[j] == *a)?
        };
        let (from, to) = ranges[j];
        Some(&self.json.bytes[from as usize..to as usize])
    }

    /// The Spotify block written for an activity equal to `a`, with its splice.
    fn spotify(&self, a: &Activity) -> Option<(&[u8], Option<(usize, i64)>)> {
        let s = self.layout.spotify?;
        (self.activities.get(s.activity) == Some(a)).then(|| (&self.json.bytes[s.range.0..s.range.1], s.splice))
    }
}

thread_local! {
    /// The buffer of the last object this thread replaced that nothing else held, kept for
    /// the next build: an object is a few kilobytes, past the allocator's per-thread cache,
    /// so allocating and freeing one per change cost more than any other single step of it.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest buffer kept as [`SPARE`] (an object with a large inline storage map is rare).
const SPARE_MAX: usize = 64 * 1024;

/// An empty buffer of at least `capacity` bytes: the spare one when it is large enough.
fn buffer(capacity: usize) -> Vec<u8> {
    let spare = SPARE.take();
    if spare.capacity() >= capacity {
        spare
    } else {
        Vec::with_capacity(capacity)
    }
}

/// Gives an object that is no longer current its bytes back for the next build on this
/// thread, unless something else still holds them (a response being written, a frame).
pub(crate) fn recycle(json: UserJson) {
    if let Ok(bytes) = json.bytes.try_into_mut() {
        let mut buf = Vec::from(bytes);
        if buf.capacity() <= SPARE_MAX {
            buf.clear();
            SPARE.set(buf);
        }
    }
}

/// [`build_with`], into a buffer of at least `capacity` bytes, copying from `previous` the
/// pieces of activities that are unchanged. The owner passes the length of the object it
/// replaces (with some room) as `capacity`, since a presence change rarely moves it much, so
/// that the buffer is allocated once instead of grown (and copied) while it is written. The
/// bytes are the same as [`build_with`]'s (debug builds of the owner check every rebuild).
pub fn build_reusing(input: &UserInputs<'_>, member_json: &MemberJson, capacity: usize, previous: Option<&Previous<'_>>) -> (UserJson, Layout) {
    let mut layout = Layout::default();
    let presence = input.presence;
    let status: Status = presence.map(|p| p.status).unwrap_or(Status::Offline);
    let offline = status.is_offline();

    let mut out = buffer(capacity.max(member_json.metadata.len() + 1024));
    out.extend_from_slice(&member_json.metadata);

    out.extend_from_slice(b",\"active_platforms\":{");
    let cs = presence.map(|p| &p.client_status);
    for (i, (key, value)) in [
        ("desktop", cs.and_then(|c| c.desktop)),
        ("mobile", cs.and_then(|c| c.mobile)),
        ("web", cs.and_then(|c| c.web)),
        ("embedded", cs.and_then(|c| c.embedded)),
        ("vr", cs.and_then(|c| c.vr)),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        let shown = if offline { "offline" } else { value.unwrap_or(Status::Offline).visible() };
        for piece in ["\"", key, "\":\"", shown, "\""] {
            out.extend_from_slice(piece.as_bytes());
        }
    }
    out.extend_from_slice(b",\"spotify\":");
    let activities: &[Activity] = presence.map(|p| p.activities.as_slice()).unwrap_or(&[]);
    let mut splice = None;
    let spotify = activities.iter().position(is_spotify);
    let kept = spotify.and_then(|k| previous.and_then(|p| p.spotify(&activities[k])));
    match (spotify, kept) {
        (None, _) => out.extend_from_slice(b"null"),
        (Some(k), Some((bytes, kept_splice))) => {
            let from = out.len();
            out.extend_from_slice(bytes);
            splice = kept_splice.map(|(at, start)| (from + at, start));
            layout.spotify = Some(Spotify { range: (from, out.len()), activity: k, splice: kept_splice });
        }
        (Some(k), None) => {
            let a = &activities[k];
            let from = out.len();
            let ts = a.timestamps.as_ref();
            let (start, end) = (ts.and_then(|t| t.start), ts.and_then(|t| t.end));
            out.extend_from_slice(b"{\"track_id\":");
            json_out::opt_str(&mut out, a.sync_id.as_deref());
            out.extend_from_slice(b",\"song\":");
            json_out::opt_str(&mut out, a.details.as_deref());
            out.extend_from_slice(b",\"artist\":");
            match a.state.as_deref() {
                Some(s) if s.contains("; ") => {
                    out.push(b'[');
                    for (i, artist) in s.split("; ").enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        json_out::str(&mut out, artist);
                    }
                    out.push(b']');
                }
                other => json_out::opt_str(&mut out, other),
            }
            out.extend_from_slice(b",\"album\":");
            json_out::opt_str(&mut out, a.assets.as_ref().and_then(|x| x.large_text.as_deref()));
            out.extend_from_slice(b",\"album_cover\":");
            write_asset_url(&mut out, a.assets.as_ref().and_then(|x| x.large_image.as_deref()), a.application_id);
            out.extend_from_slice(b",\"start_time\":");
            write_time_pair(&mut out, start);
            out.extend_from_slice(b",\"end_time\":");
            write_time_pair(&mut out, end);
            out.extend_from_slice(b",\"time\":{\"start_human_readable\":\"");
            match start {
                // The elapsed time is inserted here at render time.
                Some(s) => splice = Some((out.len(), s)),
                None => out.extend_from_slice(b"00:00"),
            }
            let length = match (start, end) {
                (Some(s), Some(e)) => clock_str(e.saturating_sub(s).div_euclid(1000)),
                _ => clock_str(0),
            };
            out.extend_from_slice(b"\",\"end_human_readable\":\"");
            out.extend_from_slice(length.as_str().as_bytes());
            out.extend_from_slice(b"\"}}");
            let relative = splice.map(|(at, start)| (at - from, start));
            layout.spotify = Some(Spotify { range: (from, out.len()), activity: k, splice: relative });
        }
    }
    // Closes active_platforms.
    out.extend_from_slice(b"}");
    out.extend_from_slice(b",\"activities\":[");
    if !offline {
        for (i, a) in activities.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let from = out.len();
            match previous.and_then(|p| p.activity(i, a)) {
                Some(bytes) => out.extend_from_slice(bytes),
                None => write_activity(&mut out, a),
            }
            // Offsets as u32: an object is bounded by the gateway's frame size and the inline
            // storage limit, far below 4 GiB.
            layout.activities.push((from as u32, out.len() as u32));
        }
    }
    out.extend_from_slice(b"],\"storage\":");
    let storage = if input.storage_json.len() <= INLINE_STORAGE_MAX {
        out.extend_from_slice(input.storage_json);
        None
    } else {
        Some((out.len(), input.storage_json.clone()))
    };
    out.extend_from_slice(b",\"server_tag\":");
    out.extend_from_slice(&member_json.server_tag);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status.visible().as_bytes());
    out.extend_from_slice(b"\",\"last_seen_at\":");
    write_time_pair(&mut out, if offline { input.last_seen_ms } else { None });
    out.push(b'}');
    (UserJson { bytes: Bytes::from(out), splice, storage, gzip: RefCell::new(None), rendered: RefCell::new(None) }, layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::{ActivityEmoji, Assets, ClientStatus, PartialUser, PrimaryGuild, Timestamps, User};
    use crate::time_fmt::clock;
    use serde_json::{json, Value};

    fn member() -> Member {
        Member {
            user: User {
                id: Snowflake(1_300_000_000_000_000_001),
                username: "alice".into(),
                discriminator: "0".into(),
                global_name: Some("Alice <&>".into()),
                avatar: Some("a_0123456789abcdef0123456789abcdef".into()),
                bot: false,
                public_flags: Some(1 | 4 | (1 << 11)),
                primary_guild: Some(PrimaryGuild {
                    identity_guild_id: Some(Snowflake(1_200_000_000_000_000_000)),
                    identity_enabled: Some(true),
                    tag: Some("LNT".into()),
                    badge: Some("b1".into()),
                }),
                avatar_decoration_data: Some(crate::discord::Decoration {
                    asset: Some("a_deco".into()),
                    sku_id: Some(Snowflake(1_144_058_844_004_233_369)),
                    expires_at: None,
                }),
                collectibles: Some(crate::discord::Collectibles {
                    nameplate: Some(crate::discord::Nameplate {
                        sku_id: Some(Snowflake(1_349_486_948_942_745_691)),
                        asset: Some("nameplates/bonsai/".into()),
                        label: Some("Bonsai".into()),
                        palette: Some("bubble_gum".into()),
                        expires_at: None,
                    }),
                }),
                display_name_styles: Some(crate::discord::DisplayNameStyles { font_id: Some(11), effect_id: Some(2), colors: vec![16_738_740] }),
                ..User::default()
            },
            joined_at: Some("2021-05-03T00:00:00.000000+00:00".into()),
            ..Default::default()
        }
    }

    fn spotify() -> Activity {
        Activity {
            id: Some("spotify:1".into()),
            name: "Spotify".into(),
            kind: 2,
            created_at: Some(1_700_000_000_500),
            timestamps: Some(Timestamps { start: Some(1_700_000_000_000), end: Some(1_700_000_200_000) }),
            details: Some("Song".into()),
            state: Some("A; B".into()),
            sync_id: Some("track1".into()),
            assets: Some(Assets { large_image: Some("spotify:cover1".into()), large_text: Some("Album".into()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn full_object_with_spotify_elapsed_spliced() {
        let m = member();
        let presence = Presence {
            user: PartialUser { id: m.user.id, ..Default::default() },
            status: Status::Dnd,
            client_status: ClientStatus { desktop: Some(Status::Dnd), mobile: Some(Status::Idle), ..Default::default() },
            activities: vec![
                Activity {
                    id: Some("custom".into()),
                    name: "Custom Status".into(),
                    kind: 4,
                    created_at: Some(1_700_000_000_999),
                    state: Some("hi".into()),
                    emoji: Some(ActivityEmoji { name: "party".into(), id: Some(Snowflake(1_100_000_000_000_000_000)), animated: Some(true) }),
                    ..Default::default()
                },
                spotify(),
            ],
            ..Default::default()
        };
        let json = build(&UserInputs { member: &m, presence: Some(&presence), last_seen_ms: Some(5), storage_json: &Bytes::from_static(b"{}") });
        let v: Value = serde_json::from_slice(&json.render(1_700_000_065_400)).unwrap();
        assert_eq!(
            v,
            json!({
                "metadata": {
                    "id": "1300000000000000001", "username": "alice", "discriminator": "0", "global_name": "Alice <&>",
                    "avatar": "a_0123456789abcdef0123456789abcdef",
                    "avatar_url": "https://cdn.discordapp.com/avatars/1300000000000000001/a_0123456789abcdef0123456789abcdef.gif",
                    "display_avatar_url": "https://cdn.discordapp.com/avatars/1300000000000000001/a_0123456789abcdef0123456789abcdef.gif",
                    "bot": false,
                    "flags": { "human_readable": ["Staff", "Hypesquad"], "bitfield": 2053 },
                    "monitoring_since": { "unix": 1620000000, "raw": "2021-05-03T00:00:00.000Z" },
                    "avatar_decoration_data": { "asset": "a_deco", "sku_id": "1144058844004233369" },
                    "banner_decoration_data": null,
                    "collectibles": { "nameplate": { "sku_id": "1349486948942745691", "asset": "nameplates/bonsai/", "label": "Bonsai", "palette": "bubble_gum" } },
                    "display_name_styles": { "font_id": 11, "effect_id": 2, "colors": [16738740] },
                    "clan": null,
                    "primary_guild": { "identity_guild_id": "1200000000000000000", "identity_enabled": true, "tag": "LNT", "badge": "b1" }
                },
                "active_platforms": {
                    "desktop": "dnd", "mobile": "idle", "web": "offline", "embedded": "offline", "vr": "offline",
                    "spotify": {
                        "track_id": "track1", "song": "Song", "artist": ["A", "B"], "album": "Album",
                        "album_cover": "https://i.scdn.co/image/cover1",
                        "start_time": { "unix": 1700000000, "raw": "2023-11-14T22:13:20.000Z" },
                        "end_time": { "unix": 1700000200, "raw": "2023-11-14T22:16:40.000Z" },
                        "time": { "start_human_readable": "01:05", "end_human_readable": "03:20" }
                    }
                },
                "activities": [
                    { "id": "custom", "name": "Custom Status", "type": "CUSTOM", "state": "hi", "details": null,
                      "application_id": null, "created_at": 1700000000,
                      "emoji": { "name": "party", "id": "1100000000000000000", "animated": true,
                                 "image_url": "https://cdn.discordapp.com/emojis/1100000000000000000.gif" } },
                    { "id": "spotify:1", "name": "Spotify", "type": "LISTENING", "state": "A; B", "details": "Song",
                      "application_id": null, "created_at": 1700000000,
                      "assets": { "large_image": { "hash": "spotify:cover1", "image_url": "https://i.scdn.co/image/cover1", "text": "Album" },
                                  "small_image": { "hash": null, "image_url": null, "text": null } },
                      "start_time": { "unix": 1700000000, "raw": "2023-11-14T22:13:20.000Z" },
                      "end_time": { "unix": 1700000200, "raw": "2023-11-14T22:16:40.000Z" } }
                ],
                "storage": {},
                "server_tag": { "guild_id": "1200000000000000000", "name": "LNT",
                                "icon_url": "https://cdn.discordapp.com/guild-tag-badges/1200000000000000000/b1.png" },
                "status": "dnd",
                "last_seen_at": { "unix": null, "raw": null }
            })
        );
        // Only the elapsed time moves with the clock.
        let later: Value = serde_json::from_slice(&json.render(1_700_003_700_000)).unwrap();
        assert_eq!(later["active_platforms"]["spotify"]["time"]["start_human_readable"], "1:01:40");
        // Within one second of the track the same buffer is handed out; the next second is
        // rendered afresh, and going back renders that second again, never a stale one.
        let (a, b) = (json.render(1_700_000_065_000), json.render(1_700_000_065_999));
        assert_eq!(a.as_ptr(), b.as_ptr());
        let next = json.render(1_700_000_066_000);
        let mut fresh = Vec::new();
        json.render_into(1_700_000_066_000, &mut fresh);
        assert_eq!((next.as_ref(), next.as_ptr() == a.as_ptr()), (fresh.as_slice(), false));
        let again = json.render(1_700_000_065_400);
        assert_eq!(again, a);
        let v: Value = serde_json::from_slice(&next).unwrap();
        assert_eq!(v["active_platforms"]["spotify"]["time"]["start_human_readable"], "01:06");
    }

    #[test]
    fn offline_without_presence_and_defaults() {
        let mut m = member();
        m.user.avatar = None;
        m.user.global_name = None;
        m.user.public_flags = None;
        m.user.primary_guild = None;
        m.user.avatar_decoration_data = None;
        m.user.collectibles = None;
        m.user.display_name_styles = None;
        m.joined_at = None;
        let json = build(&UserInputs { member: &m, presence: None, last_seen_ms: Some(1_620_000_000_123), storage_json: &Bytes::from_static(b"{\"k\":\"v\"}") });
        let v: Value = serde_json::from_slice(&json.render(0)).unwrap();
        assert_eq!(v["metadata"]["avatar_url"], Value::Null);
        // (id >> 22) % 6 for migrated usernames.
        let n = (1_300_000_000_000_000_001u64 >> 22) % 6;
        assert_eq!(v["metadata"]["display_avatar_url"], format!("https://cdn.discordapp.com/embed/avatars/{n}.png"));
        assert_eq!(v["metadata"]["flags"], json!({ "human_readable": [], "bitfield": 0 }));
        assert_eq!(v["metadata"]["monitoring_since"], json!({ "unix": 0, "raw": null }));
        assert_eq!(v["active_platforms"], json!({ "desktop": "offline", "mobile": "offline", "web": "offline", "embedded": "offline", "vr": "offline", "spotify": null }));
        for absent in ["avatar_decoration_data", "banner_decoration_data", "collectibles", "display_name_styles", "clan", "primary_guild"] {
            assert_eq!(v["metadata"][absent], Value::Null, "{absent}");
        }
        assert_eq!(v["activities"], json!([]));
        assert_eq!(v["storage"], json!({ "k": "v" }));
        assert_eq!(v["server_tag"], Value::Null);
        assert_eq!(v["status"], "offline");
        assert_eq!(v["last_seen_at"], json!({ "unix": 1620000000, "raw": "2021-05-03T00:00:00.123Z" }));
    }

    #[test]
    fn a_recycled_buffer_is_reused_only_when_nothing_else_holds_it() {
        let m = member();
        let storage = |s: &'static [u8]| Bytes::from_static(s);
        let (a, b) = (storage(b"{\"k\":\"a\"}"), storage(b"{\"k\":\"b\"}"));
        let object = |storage: &Bytes| build(&UserInputs { member: &m, presence: None, last_seen_ms: None, storage_json: storage });
        // Held by a response: its bytes stay as they were while the next object is built.
        let first = object(&a);
        let held = first.render(0);
        let before = held.to_vec();
        recycle(first);
        let second = object(&b);
        assert_eq!(held.to_vec(), before);
        assert_ne!(second.render(0).as_ptr(), held.as_ptr());
        // Held by nothing: the next build writes into the same buffer.
        let at = second.bytes.as_ptr();
        recycle(second);
        let third = object(&a);
        assert_eq!(third.bytes.as_ptr(), at);
        assert_eq!(third.render(0), held, "the same inputs make the same bytes");
    }

    #[test]
    fn a_large_storage_map_is_a_piece_spliced_at_render_time() {
        let m = member();
        let presence = Presence { user: PartialUser { id: m.user.id, ..Default::default() }, status: Status::Online, activities: vec![spotify()], ..Default::default() };
        let big = Bytes::from(format!(r#"{{"k":"{}"}}"#, "x".repeat(INLINE_STORAGE_MAX)));
        let input = UserInputs { member: &m, presence: Some(&presence), last_seen_ms: None, storage_json: &big };
        let json = build(&input);
        assert!(json.bytes.len() < 4096, "the object's own bytes leave the map out");
        let rendered = json.render(1_700_000_065_400);
        let v: Value = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(v["storage"]["k"].as_str().unwrap().len(), INLINE_STORAGE_MAX);
        assert_eq!(v["active_platforms"]["spotify"]["time"]["start_human_readable"], "01:05");
        let mut into = b"[".to_vec();
        json.render_into(1_700_000_065_400, &mut into);
        assert_eq!(&into[1..], &rendered[..]);
        // Rebuilt around the same map it is the same object; a new map is a change.
        assert_eq!(build(&input), json);
        let copy = Bytes::from(big.to_vec());
        assert_ne!(build(&UserInputs { storage_json: &copy, ..input }), json);
        // Without the clock, the map alone is spliced.
        let offline = build(&UserInputs { presence: None, ..input });
        let v: Value = serde_json::from_slice(&offline.render(0)).unwrap();
        assert_eq!((v["status"].as_str(), v["storage"]["k"].as_str().map(str::len)), (Some("offline"), Some(INLINE_STORAGE_MAX)));
    }

    #[test]
    fn extreme_spotify_timestamps_saturate_instead_of_overflowing() {
        let m = member();
        let longest = clock(i64::MAX.div_euclid(1000));
        for (start, end, now, elapsed, length) in [
            (i64::MIN, i64::MAX, 1_700_000_000_000, longest.clone(), longest.clone()),
            (i64::MIN, i64::MAX, i64::MAX, longest.clone(), longest.clone()),
            (i64::MAX, i64::MIN, i64::MIN, "00:00".to_owned(), "00:00".to_owned()),
            (i64::MIN + 1, 0, i64::MIN, "00:00".to_owned(), longest.clone()),
        ] {
            let mut a = spotify();
            a.timestamps = Some(Timestamps { start: Some(start), end: Some(end) });
            let presence = Presence { user: PartialUser { id: m.user.id, ..Default::default() }, status: Status::Online, activities: vec![a], ..Default::default() };
            let json = build(&UserInputs { member: &m, presence: Some(&presence), last_seen_ms: None, storage_json: &Bytes::from_static(b"{}") });
            let v: Value = serde_json::from_slice(&json.render(now)).unwrap();
            assert_eq!(v["active_platforms"]["spotify"]["time"], json!({ "start_human_readable": elapsed, "end_human_readable": length }), "{start} {end} {now}");
        }
    }

    #[test]
    fn asset_urls() {
        let app = Some(Snowflake(1_000_000_000_000_000_000));
        assert_eq!(asset_url("mp:external/abc/https/x.png", None).unwrap(), "https://media.discordapp.net/external/abc/https/x.png");
        assert_eq!(asset_url("youtube:vid", None).unwrap(), "https://i.ytimg.com/vi/vid/hqdefault_live.jpg");
        assert_eq!(asset_url("twitch:name", None).unwrap(), "https://static-cdn.jtvnw.net/previews-ttv/live_user_name.png");
        assert_eq!(asset_url("evil:http://attacker", None), None);
        assert_eq!(asset_url("hash", app).unwrap(), "https://cdn.discordapp.com/app-assets/1000000000000000000/hash.png");
        assert_eq!(asset_url("hash", None), None);
        assert_eq!(default_avatar_url(Snowflake(1), "1234"), "https://cdn.discordapp.com/embed/avatars/4.png");
    }
}
