//! What a card shows, taken from the owner shard's view of one user.
//!
//! Image URLs are the public ones (`https://cdn.discordapp.com/...`), resolved with the user
//! object's helpers; whether and where they are fetched is decided by [`super::images`].

use crate::discord::{activity_type, Activity, Status, Text};
use crate::presence::flags::flag_names;
use crate::presence::user_object::{asset_url, default_avatar_url, emoji_url, is_spotify, CDN};
use crate::discord::Member;
use crate::presence::UserView;

#[derive(Debug, Clone, PartialEq)]
pub struct CardData {
    pub id: String,
    pub username: String,
    pub global_name: Option<String>,
    /// `online`, `idle`, `dnd` or `offline` (the overall status).
    pub status: &'static str,
    pub flags: Vec<&'static str>,
    pub server_tag: Option<ServerTag>,
    pub avatar_url: String,
    /// Unix ms of going offline, only while offline.
    pub last_seen_ms: Option<i64>,
    pub custom_status: Option<CustomStatus>,
    /// The activities that are not a custom status, in presence order (the card shows as many
    /// as `maxActivities` asks for).
    pub activities: Vec<ActivityData>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerTag {
    pub tag: String,
    pub icon_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomStatus {
    pub text: Option<String>,
    /// A unicode emoji, drawn as text.
    pub emoji_text: Option<String>,
    /// A custom emoji's image.
    pub emoji_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityData {
    pub kind: u8,
    pub spotify: bool,
    pub name: String,
    pub details: Option<String>,
    pub state: Option<String>,
    pub large_image: Option<String>,
    pub large_text: Option<String>,
    pub small_image: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// A stream's URL (Twitch or YouTube), for the "LIVE ON …" header.
    pub url: Option<String>,
}

impl ActivityData {
    /// The platform a stream is on, from its URL or preview asset.
    pub fn platform(&self) -> Option<&'static str> {
        let u = self.url.as_deref().unwrap_or("").to_ascii_lowercase();
        let img = self.large_image.as_deref().unwrap_or("");
        if u.contains("twitch.tv") || img.contains("jtvnw.net") {
            Some("TWITCH")
        } else if u.contains("youtube.com") || u.contains("youtu.be") || img.contains("ytimg.com") {
            Some("YOUTUBE")
        } else {
            None
        }
    }
}

impl CardData {
    /// Whether the card's content depends on the clock (an elapsed time or "last seen").
    pub fn shows_clock(&self, hide_activity: bool, hide_last_seen: bool, max_activities: usize) -> bool {
        let activity = !hide_activity && self.activities.iter().take(max_activities).any(|a| a.start_ms.is_some());
        let last_seen = !hide_last_seen && self.last_seen_ms.is_some();
        activity || last_seen
    }
}

/// The avatar as a static 128 px PNG (animated avatars show their first frame).
fn avatar(member: &Member) -> String {
    let user = &member.user;
    match user.avatar.as_deref() {
        Some(hash) => format!("{CDN}/avatars/{}/{hash}.png?size=128", user.id),
        None => default_avatar_url(user.id, &user.discriminator),
    }
}

fn non_empty<S: AsRef<str>>(s: &Option<S>) -> Option<String> {
    s.as_ref().map(AsRef::as_ref).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn activity(a: &Activity) -> ActivityData {
    let assets = a.assets.as_ref();
    let image = |hash: Option<&Text>| hash.and_then(|h| asset_url(h, a.application_id));
    let ts = a.timestamps.as_ref();
    ActivityData {
        kind: a.kind,
        spotify: is_spotify(a),
        name: a.name.to_string(),
        details: non_empty(&a.details),
        state: non_empty(&a.state),
        large_image: image(assets.and_then(|x| x.large_image.as_ref())),
        large_text: assets.and_then(|x| non_empty(&x.large_text)),
        small_image: image(assets.and_then(|x| x.small_image.as_ref())),
        start_ms: ts.and_then(|t| t.start),
        end_ms: ts.and_then(|t| t.end),
        url: non_empty(&a.url),
    }
}

/// What the card of the user in `view` shows.
pub fn from_view(view: &UserView<'_>) -> CardData {
    let user = &view.member.user;
    let presence = view.presence;
    let status = presence.map(|p| p.status).unwrap_or(Status::Offline);
    let offline = status.is_offline();
    let activities: &[Activity] = match presence {
        Some(p) if !offline => &p.activities,
        _ => &[],
    };
    let custom_status = activities.iter().find(|a| a.kind == activity_type::CUSTOM).and_then(|a| {
        let emoji = a.emoji.as_ref();
        let c = CustomStatus {
            text: non_empty(&a.state),
            emoji_text: emoji.filter(|e| e.id.is_none() && !e.name.is_empty()).map(|e| e.name.to_string()),
            emoji_url: emoji.and_then(|e| e.id).map(|id| format!("{}?size=48", emoji_url(id, false))),
        };
        (c.text.is_some() || c.emoji_text.is_some() || c.emoji_url.is_some()).then_some(c)
    });
    let server_tag = user.primary_guild.as_ref().filter(|g| g.identity_enabled == Some(true)).and_then(|g| {
        let guild = g.identity_guild_id?;
        let tag = non_empty(&g.tag)?;
        Some(ServerTag { tag, icon_url: g.badge.as_deref().map(|b| format!("{CDN}/guild-tag-badges/{guild}/{b}.png?size=32")) })
    });
    CardData {
        id: user.id.to_string(),
        username: user.username.clone(),
        global_name: non_empty(&user.global_name),
        status: status.visible(),
        flags: flag_names(user.public_flags.unwrap_or(0)),
        server_tag,
        avatar_url: avatar(view.member),
        last_seen_ms: if offline { view.last_seen_ms } else { None },
        custom_status,
        activities: activities.iter().filter(|a| a.kind != activity_type::CUSTOM).map(activity).collect(),
    }
}
