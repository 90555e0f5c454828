//! Discord's wire types, as the gateway sends them and as the simulator produces them.
//!
//! These are the project's own serde types rather than twilight-model's: twilight drops fields
//! the user object needs (an activity's `sync_id`, unknown public-flag bits, non-hex image
//! hashes), and a single unknown value would fail a whole event. Everything here is lenient on
//! input (missing fields default, numbers may arrive as strings) and faithful on output, so the
//! simulator can serialize the same types the ingest path decodes.

pub mod events;
pub mod gateway_status;
mod snowflake;

pub use snowflake::{Snowflake, DISCORD_EPOCH_MS};

use serde::{Deserialize, Deserializer, Serialize};

/// A Discord user (`user` object), including the fields twilight-model drops.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Snowflake,
    #[serde(default)]
    pub username: String,
    #[serde(default = "default_discriminator")]
    pub discriminator: String,
    #[serde(default)]
    pub global_name: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub bot: bool,
    #[serde(default, deserialize_with = "lenient_u64_opt", skip_serializing_if = "Option::is_none")]
    pub public_flags: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_guild: Option<PrimaryGuild>,
    // Discord sends these as `null` when the user has none, and so do Lanyard's
    // `discord_user` objects built from this type.
    /// The older name of `primary_guild`, which Discord still sends beside it.
    #[serde(default)]
    pub clan: Option<PrimaryGuild>,
    #[serde(default)]
    pub avatar_decoration_data: Option<Decoration>,
    #[serde(default)]
    pub banner_decoration_data: Option<Decoration>,
    #[serde(default)]
    pub collectibles: Option<Collectibles>,
    #[serde(default)]
    pub display_name_styles: Option<DisplayNameStyles>,
}

/// An avatar or banner decoration (`avatar_decoration_data`, `banner_decoration_data`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decoration {
    #[serde(default)]
    pub asset: Option<String>,
    #[serde(default)]
    pub sku_id: Option<Snowflake>,
    /// Unix seconds, when the decoration is lent for a while.
    #[serde(default, deserialize_with = "lenient_i64_opt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The user's collectibles; Discord sends a nameplate only, so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Collectibles {
    #[serde(default)]
    pub nameplate: Option<Nameplate>,
}

/// The nameplate drawn behind the user's name in member lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nameplate {
    #[serde(default)]
    pub sku_id: Option<Snowflake>,
    #[serde(default)]
    pub asset: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub palette: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64_opt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// How the display name is drawn (font, effect and colours as RGB integers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DisplayNameStyles {
    #[serde(default)]
    pub font_id: Option<u64>,
    #[serde(default)]
    pub effect_id: Option<u64>,
    #[serde(default)]
    pub colors: Vec<u64>,
}

fn default_discriminator() -> String {
    "0".to_owned()
}

/// The user's server tag ("primary guild" identity).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrimaryGuild {
    #[serde(default)]
    pub identity_guild_id: Option<Snowflake>,
    #[serde(default)]
    pub identity_enabled: Option<bool>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub badge: Option<String>,
}

/// A partial user as it appears in PRESENCE_UPDATE: only `id` is guaranteed; any other field
/// present is a change to apply to the cached user. The nested objects, rarely present, are
/// boxed: every presence is moved several times on its way to its shard, and unboxed they
/// made it 592 bytes instead of 224.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialUser {
    pub id: Snowflake,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discriminator: Option<String>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub global_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub avatar: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<bool>,
    #[serde(default, deserialize_with = "lenient_u64_opt", skip_serializing_if = "Option::is_none")]
    pub public_flags: Option<u64>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub primary_guild: Option<Option<Box<PrimaryGuild>>>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub clan: Option<Option<Box<PrimaryGuild>>>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub avatar_decoration_data: Option<Option<Box<Decoration>>>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub banner_decoration_data: Option<Option<Box<Decoration>>>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub collectibles: Option<Option<Box<Collectibles>>>,
    #[serde(default, deserialize_with = "present_opt", skip_serializing_if = "Option::is_none")]
    pub display_name_styles: Option<Option<Box<DisplayNameStyles>>>,
}

impl PartialUser {
    /// Applies the fields this partial carries to a full user. Returns whether anything changed.
    pub fn apply_to(&self, user: &mut User) -> bool {
        /// Assigns `new` when it differs (compared before cloning; nothing is cloned when equal).
        fn set<T: PartialEq + Clone>(field: &mut T, new: &T) -> bool {
            if field == new {
                return false;
            }
            field.clone_from(new);
            true
        }
        /// As `set`, for a field the partial keeps boxed.
        fn set_boxed<T: PartialEq + Clone>(field: &mut Option<T>, new: &Option<Box<T>>) -> bool {
            if field.as_ref() == new.as_deref() {
                return false;
            }
            *field = new.as_deref().cloned();
            true
        }
        let mut changed = false;
        if let Some(v) = &self.username {
            changed |= set(&mut user.username, v);
        }
        if let Some(v) = &self.discriminator {
            changed |= set(&mut user.discriminator, v);
        }
        if let Some(v) = &self.global_name {
            changed |= set(&mut user.global_name, v);
        }
        if let Some(v) = &self.avatar {
            changed |= set(&mut user.avatar, v);
        }
        if let Some(v) = self.bot {
            changed |= set(&mut user.bot, &v);
        }
        if let Some(v) = self.public_flags {
            changed |= set(&mut user.public_flags, &Some(v));
        }
        if let Some(v) = &self.primary_guild {
            changed |= set_boxed(&mut user.primary_guild, v);
        }
        if let Some(v) = &self.clan {
            changed |= set_boxed(&mut user.clan, v);
        }
        if let Some(v) = &self.avatar_decoration_data {
            changed |= set_boxed(&mut user.avatar_decoration_data, v);
        }
        if let Some(v) = &self.banner_decoration_data {
            changed |= set_boxed(&mut user.banner_decoration_data, v);
        }
        if let Some(v) = &self.collectibles {
            changed |= set_boxed(&mut user.collectibles, v);
        }
        if let Some(v) = &self.display_name_styles {
            changed |= set_boxed(&mut user.display_name_styles, v);
        }
        changed
    }
}

impl From<&User> for PartialUser {
    fn from(u: &User) -> Self {
        PartialUser {
            id: u.id,
            username: Some(u.username.clone()),
            discriminator: Some(u.discriminator.clone()),
            global_name: Some(u.global_name.clone()),
            avatar: Some(u.avatar.clone()),
            bot: Some(u.bot),
            public_flags: u.public_flags,
            primary_guild: Some(u.primary_guild.clone().map(Box::new)),
            clan: Some(u.clan.clone().map(Box::new)),
            avatar_decoration_data: Some(u.avatar_decoration_data.clone().map(Box::new)),
            banner_decoration_data: Some(u.banner_decoration_data.clone().map(Box::new)),
            collectibles: Some(u.collectibles.clone().map(Box::new)),
            display_name_styles: Some(u.display_name_styles.clone().map(Box::new)),
        }
    }
}

/// A guild member (`guild member` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user: User,
    #[serde(default)]
    pub nick: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub roles: Vec<Snowflake>,
    /// ISO-8601 time the member joined the guild (`monitoring_since`).
    #[serde(default)]
    pub joined_at: Option<String>,
    #[serde(default)]
    pub premium_since: Option<String>,
    #[serde(default)]
    pub deaf: bool,
    #[serde(default)]
    pub mute: bool,
    #[serde(default)]
    pub flags: u64,
    #[serde(default)]
    pub pending: bool,
    #[serde(default)]
    pub communication_disabled_until: Option<String>,
}

/// Online status as Discord sends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Idle,
    Dnd,
    #[default]
    Offline,
    Invisible,
    /// Anything Discord may add later; treated as offline.
    #[serde(other)]
    Unknown,
}

impl Status {
    /// The status Lantern reports: invisible and unknown values show as offline.
    pub fn visible(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Dnd => "dnd",
            Status::Offline | Status::Invisible | Status::Unknown => "offline",
        }
    }

    pub fn is_offline(self) -> bool {
        self.visible() == "offline"
    }
}

/// Per-platform status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vr: Option<Status>,
}

/// A member's presence (`presence update` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub user: PartialUser,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<Snowflake>,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub activities: Vec<Activity>,
    #[serde(default)]
    pub client_status: ClientStatus,
}

/// An activity's strings, except its button labels: most of them (names, ids, artists, emoji
/// names) are under 25 bytes and kept inline, so decoding an activity allocates only for its
/// long strings.
pub type Text = compact_str::CompactString;

/// Activity types as Discord numbers them.
pub mod activity_type {
    pub const PLAYING: u8 = 0;
    pub const STREAMING: u8 = 1;
    pub const LISTENING: u8 = 2;
    pub const WATCHING: u8 = 3;
    pub const CUSTOM: u8 = 4;
    pub const COMPETING: u8 = 5;
}

/// One activity of a presence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Text>,
    #[serde(default)]
    pub name: Text,
    #[serde(rename = "type", default)]
    pub kind: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Text>,
    /// Unix milliseconds.
    #[serde(default, deserialize_with = "lenient_i64_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<Timestamps>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<Snowflake>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<ActivityEmoji>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Assets>,
    /// Spotify's track id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<Party>,
    /// Button labels (the gateway sends labels only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Text>,
}

/// Activity start and end, unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timestamps {
    #[serde(default, deserialize_with = "lenient_i64_opt", skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64_opt", skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityEmoji {
    #[serde(default)]
    pub name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Snowflake>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animated: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_image: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_text: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_image: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_text: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Party {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[u64; 2]>,
}

/// Accepts a number, a numeric string or null. A float is truncated, an integer beyond the i64
/// range saturates, a string that is not a number reads as none.
///
/// Written as a visitor rather than an untagged enum, which would buffer every value into
/// serde's generic `Content` first and try each variant in turn: several of these are read
/// per activity.
fn lenient_i64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_option(Lenient(|n| match n {
        Num::Unsigned(v) => i64::try_from(v).unwrap_or(v as f64 as i64),
        Num::Signed(v) => v,
        Num::Float(v) => v as i64,
    }, |s: &str| s.parse().ok()))
}

/// Like [`lenient_i64_opt`], for bit fields: the whole u64 range is kept (bit 63 included), and
/// a negative number is read as its two's-complement bits.
fn lenient_u64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_option(Lenient(|n| match n {
        Num::Unsigned(v) => v,
        Num::Signed(v) => v as u64,
        Num::Float(v) => v as i64 as u64,
    }, |s: &str| s.parse::<u64>().ok().or_else(|| s.parse::<i64>().ok().map(|v| v as u64))))
}

/// A JSON number as the deserializer reports it.
#[derive(Clone, Copy)]
enum Num {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// Visits an optional number or numeric string: numbers through the first function, strings
/// through the second.
struct Lenient<N, S>(N, S);

impl<'de, T, N: Fn(Num) -> T, S: Fn(&str) -> Option<T>> serde::de::Visitor<'de> for Lenient<N, S> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number, a numeric string or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<T>, E> {
        Ok(Some((self.0)(Num::Unsigned(v))))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<T>, E> {
        Ok(Some((self.0)(Num::Signed(v))))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<T>, E> {
        Ok(Some((self.0)(Num::Float(v))))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<T>, E> {
        Ok((self.1)(v))
    }
}

/// Distinguishes "absent" (outer None, via `default`) from "null" (Some(None)).
fn present_opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_times_read_numbers_strings_and_null() {
        for (raw, at) in [
            (r#"{"start":1700000000000}"#, Some(1_700_000_000_000)),
            (r#"{"start":-5}"#, Some(-5)),
            (r#"{"start":12.9}"#, Some(12)),
            (r#"{"start":"42"}"#, Some(42)),
            (r#"{"start":"x"}"#, None),
            (r#"{"start":null}"#, None),
            (r#"{"start":18446744073709551615}"#, Some(i64::MAX)),
            (r#"{}"#, None),
        ] {
            let t: Timestamps = serde_json::from_str(raw).unwrap();
            assert_eq!(t.start, at, "{raw}");
            let mut bytes = raw.as_bytes().to_vec();
            let t: Timestamps = simd_json::serde::from_slice(&mut bytes).unwrap();
            assert_eq!(t.start, at, "{raw} (simd-json)");
        }
        assert!(serde_json::from_str::<Timestamps>(r#"{"start":true}"#).is_err());
    }

    #[test]
    fn public_flags_keep_every_bit() {
        for (raw, flags) in [
            (r#"{"id":"1","public_flags":18446744073709551615}"#, Some(u64::MAX)),
            (r#"{"id":"1","public_flags":"9223372036854775808"}"#, Some(1 << 63)),
            (r#"{"id":"1","public_flags":-1}"#, Some(u64::MAX)),
            (r#"{"id":"1","public_flags":64}"#, Some(64)),
            (r#"{"id":"1","public_flags":null}"#, None),
        ] {
            let user: User = serde_json::from_str(raw).unwrap();
            assert_eq!(user.public_flags, flags, "{raw}");
            let mut bytes = raw.as_bytes().to_vec();
            let user: User = simd_json::serde::from_slice(&mut bytes).unwrap();
            assert_eq!(user.public_flags, flags, "{raw} (simd-json)");
        }
    }
}
