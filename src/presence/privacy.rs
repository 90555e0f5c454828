//! A member's privacy settings and the filter they put on what readers see.
//!
//! [`PrivacySettings`] says what a member hides: Spotify, activities (all, by type or by
//! application), platforms, last seen, the key-value map in public objects, or everything
//! (paused). The owner shard applies it once per change, before anything is encoded: the
//! presence every encoder reads is [`PrivacySettings::filter`]'s output, so no route sees what
//! the member hides. The default hides nothing and filters nothing (no copy is made).
//!
//! Settings are stored as their JSON ([`PrivacySettings::to_json`]); [`PrivacyPatch`] is a
//! change to them, as the REST route and the bot send it.

use crate::discord::{activity_type, Activity, ClientStatus, Presence, Snowflake};
use crate::presence::user_object::is_spotify;
use serde::{Deserialize, Serialize};

/// Longest part of an error message taken from the body.
const MAX_MESSAGE_CHARS: usize = 300;

/// Most application ids one member may hide.
pub const MAX_HIDDEN_APPLICATIONS: usize = 50;

/// Activity types by the names the settings use, in Discord's order.
pub const ACTIVITY_TYPES: [(&str, u8); 6] = [
    ("playing", activity_type::PLAYING),
    ("streaming", activity_type::STREAMING),
    ("listening", activity_type::LISTENING),
    ("watching", activity_type::WATCHING),
    ("custom", activity_type::CUSTOM),
    ("competing", activity_type::COMPETING),
];

/// The name of an activity type in the settings (`None` for a type Discord may add later).
pub fn activity_type_name(kind: u8) -> Option<&'static str> {
    ACTIVITY_TYPES.iter().find(|(_, k)| *k == kind).map(|(n, _)| *n)
}

/// The activity type named `name` (lowercase, as the settings write it).
pub fn activity_type_of(name: &str) -> Option<u8> {
    ACTIVITY_TYPES.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// One member's settings. Every field off (the default) shows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacySettings {
    pub hide_spotify: bool,
    pub hide_activities: bool,
    /// Activity types hidden, one bit per Discord type number.
    pub hidden_types: u8,
    /// Applications whose activities are hidden, sorted, without duplicates.
    pub hidden_applications: Vec<Snowflake>,
    pub hide_platforms: bool,
    pub hide_last_seen: bool,
    pub hide_kv: bool,
    pub paused: bool,
}

/// A change asked of a member's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyChange {
    /// The settings become the defaults with the patch applied (REST `PUT`).
    Replace(PrivacyPatch),
    /// The patch is applied to the current settings (REST `PATCH`, the bot).
    Patch(PrivacyPatch),
}

/// Why a privacy request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    /// The token is not the user's (or the user has none).
    #[error("unauthorized")]
    Unauthorized,
    /// The bot was asked by someone who is not a member of the guild.
    #[error("not a member")]
    NotMember,
    /// The change is not valid (the message says why).
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Cluster mode: the cluster's store cannot be reached, so nothing can be written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The settings as JSON (what is stored, and what the REST route answers).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Json {
    hide_spotify: bool,
    hide_activities: bool,
    hidden_activity_types: Vec<String>,
    hidden_applications: Vec<String>,
    hide_platforms: bool,
    hide_last_seen: bool,
    hide_kv: bool,
    paused: bool,
}

/// A change to some settings; fields left out stay as they are (`null` is not a value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyPatch {
    #[serde(default, deserialize_with = "present")]
    pub hide_spotify: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub hide_activities: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub hidden_activity_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub hidden_applications: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub hide_platforms: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub hide_last_seen: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub hide_kv: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub paused: Option<bool>,
}

/// A field that is there holds a value of its type (a missing one is `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl PrivacyPatch {
    /// Reads a patch from a JSON body, with a message fit for a 400 when it is not one.
    pub fn from_json(body: &[u8]) -> Result<PrivacyPatch, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| "Request body must be valid JSON.".to_string())?;
        if !value.is_object() {
            return Err("Request body must be a JSON object.".into());
        }
        serde_json::from_value(value).map_err(|e| {
            // serde's message names the field and what was expected; what it quotes of the
            // input is cut short.
            let text = e.to_string();
            let what = text.split(" at line").next().unwrap_or(&text);
            let short: String = what.chars().take(MAX_MESSAGE_CHARS).collect();
            let cut = if short.len() < what.len() { "…" } else { "" };
            format!("Invalid privacy settings: {short}{cut}.")
        })
    }
}

impl PrivacySettings {
    /// Whether these are the defaults (nothing hidden).
    pub fn is_default(&self) -> bool {
        *self == PrivacySettings::default()
    }

    /// Whether activities of type `kind` are hidden.
    pub fn hides_type(&self, kind: u8) -> bool {
        kind < 8 && self.hidden_types & (1 << kind) != 0
    }

    /// The hidden types' names, in Discord's order.
    pub fn hidden_type_names(&self) -> Vec<&'static str> {
        ACTIVITY_TYPES.iter().filter(|(_, k)| self.hides_type(*k)).map(|(n, _)| *n).collect()
    }

    /// Whether an activity is hidden by these settings.
    pub fn hides(&self, a: &Activity) -> bool {
        self.hide_activities
            || self.hides_type(a.kind)
            || (self.hide_spotify && (is_spotify(a) || a.id.as_deref() == Some("spotify:1")))
            || a.application_id.is_some_and(|app| self.hidden_applications.binary_search(&app).is_ok())
    }

    /// Whether the presence readers see differs from the one received (else it is shown as is).
    fn filters_presence(&self) -> bool {
        self.hide_activities || self.hidden_types != 0 || self.hide_spotify || !self.hidden_applications.is_empty() || self.hide_platforms
    }

    /// The presence readers see; `None` when it is the one received, unchanged.
    pub fn filter(&self, presence: Option<&Presence>) -> Option<Option<Presence>> {
        if !self.filters_presence() {
            return None;
        }
        let p = presence?;
        Some(Some(Presence {
            user: p.user.clone(),
            guild_id: p.guild_id,
            status: p.status,
            activities: p.activities.iter().filter(|a| !self.hides(a)).cloned().collect(),
            // No platform: the object shows the overall status alone.
            client_status: if self.hide_platforms { ClientStatus::default() } else { p.client_status.clone() },
        }))
    }

    /// Applies a patch; the error names the first field that is not valid.
    pub fn apply(&mut self, patch: &PrivacyPatch) -> Result<(), String> {
        let mut next = self.clone();
        let set = |field: &mut bool, v: Option<bool>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut next.hide_spotify, patch.hide_spotify);
        set(&mut next.hide_activities, patch.hide_activities);
        set(&mut next.hide_platforms, patch.hide_platforms);
        set(&mut next.hide_last_seen, patch.hide_last_seen);
        set(&mut next.hide_kv, patch.hide_kv);
        set(&mut next.paused, patch.paused);
        if let Some(types) = &patch.hidden_activity_types {
            next.hidden_types = 0;
            for name in types {
                let kind = activity_type_of(name).ok_or_else(|| {
                    format!(
                        "Invalid privacy settings: unknown activity type `{}` (one of {}).",
                        name.chars().take(32).collect::<String>(),
                        ACTIVITY_TYPES.map(|(n, _)| n).join(", ")
                    )
                })?;
                next.hidden_types |= 1 << kind;
            }
        }
        if let Some(apps) = &patch.hidden_applications {
            if apps.len() > MAX_HIDDEN_APPLICATIONS {
                return Err(format!("Invalid privacy settings: at most {MAX_HIDDEN_APPLICATIONS} hidden applications."));
            }
            let mut ids = Vec::with_capacity(apps.len());
            for raw in apps {
                ids.push(Snowflake::parse_strict(raw).ok_or_else(|| {
                    format!("Invalid privacy settings: application id `{}` must be a snowflake.", raw.chars().take(32).collect::<String>())
                })?);
            }
            ids.sort_unstable();
            ids.dedup();
            next.hidden_applications = ids;
        }
        *self = next;
        Ok(())
    }

    /// The settings as a complete JSON object, fields in a fixed order.
    pub fn to_json(&self) -> String {
        let json = Json {
            hide_spotify: self.hide_spotify,
            hide_activities: self.hide_activities,
            hidden_activity_types: self.hidden_type_names().into_iter().map(String::from).collect(),
            hidden_applications: self.hidden_applications.iter().map(|id| id.to_string()).collect(),
            hide_platforms: self.hide_platforms,
            hide_last_seen: self.hide_last_seen,
            hide_kv: self.hide_kv,
            paused: self.paused,
        };
        // Plain fields: serializing cannot fail.
        serde_json::to_string(&json).expect("privacy settings serialize")
    }

    /// Reads `user`'s stored settings (a shard file's row, the cluster's document). Settings
    /// that cannot be read hide everything rather than nothing: the member counts as paused.
    pub fn from_stored(user: crate::discord::Snowflake, text: &str) -> PrivacySettings {
        PrivacySettings::from_json(text).unwrap_or_else(|e| {
            tracing::error!(user = %user, error = %e, "unreadable privacy settings; the member is treated as paused");
            PrivacySettings { paused: true, ..PrivacySettings::default() }
        })
    }

    /// Reads settings stored by [`PrivacySettings::to_json`].
    pub fn from_json(text: &str) -> Result<PrivacySettings, String> {
        let json: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut out = PrivacySettings::default();
        out.apply(&PrivacyPatch {
            hide_spotify: Some(json.hide_spotify),
            hide_activities: Some(json.hide_activities),
            hidden_activity_types: Some(json.hidden_activity_types),
            hidden_applications: Some(json.hidden_applications),
            hide_platforms: Some(json.hide_platforms),
            hide_last_seen: Some(json.hide_last_seen),
            hide_kv: Some(json.hide_kv),
            paused: Some(json.paused),
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::Status;

    fn activity(kind: u8, name: &str, app: Option<u64>) -> Activity {
        Activity { kind, name: name.into(), application_id: app.map(Snowflake), ..Activity::default() }
    }

    #[test]
    fn the_default_filters_nothing_and_copies_nothing() {
        let p = Presence { status: Status::Online, activities: vec![activity(0, "Chess", None)], ..Presence::default() };
        assert_eq!(PrivacySettings::default().filter(Some(&p)), None);
        assert!(PrivacySettings::default().is_default());
    }

    #[test]
    fn each_setting_hides_what_it_names() {
        let spotify = Activity { id: Some("spotify:1".into()), ..activity(2, "Spotify", None) };
        let p = Presence {
            status: Status::Dnd,
            activities: vec![activity(0, "Chess", Some(1_100_000_000_000_000_005)), spotify.clone(), activity(4, "Custom Status", None), activity(2, "Radio", None)],
            client_status: ClientStatus { desktop: Some(Status::Dnd), ..ClientStatus::default() },
            ..Presence::default()
        };
        let names = |s: &PrivacySettings| -> Vec<String> { s.filter(Some(&p)).unwrap().unwrap().activities.iter().map(|a| a.name.to_string()).collect() };
        let with = |patch: PrivacyPatch| {
            let mut s = PrivacySettings::default();
            s.apply(&patch).unwrap();
            s
        };
        assert_eq!(names(&with(PrivacyPatch { hide_spotify: Some(true), ..Default::default() })), ["Chess", "Custom Status", "Radio"]);
        assert_eq!(names(&with(PrivacyPatch { hidden_activity_types: Some(vec!["listening".into()]), ..Default::default() })), ["Chess", "Custom Status"]);
        assert_eq!(names(&with(PrivacyPatch { hidden_applications: Some(vec!["1100000000000000005".into()]), ..Default::default() })), ["Spotify", "Custom Status", "Radio"]);
        assert_eq!(names(&with(PrivacyPatch { hide_activities: Some(true), ..Default::default() })), Vec::<String>::new());
        let hidden = with(PrivacyPatch { hide_platforms: Some(true), ..Default::default() }).filter(Some(&p)).unwrap().unwrap();
        assert_eq!((hidden.client_status, hidden.status, hidden.activities.len()), (ClientStatus::default(), Status::Dnd, 4));
    }

    #[test]
    fn json_round_trip_and_patch_errors() {
        let mut s = PrivacySettings::default();
        s.apply(&PrivacyPatch {
            hidden_activity_types: Some(vec!["competing".into(), "playing".into()]),
            hidden_applications: Some(vec!["1100000000000000002".into(), "1100000000000000001".into(), "1100000000000000002".into()]),
            paused: Some(true),
            ..Default::default()
        })
        .unwrap();
        let json = s.to_json();
        assert_eq!(
            json,
            r#"{"hide_spotify":false,"hide_activities":false,"hidden_activity_types":["playing","competing"],"hidden_applications":["1100000000000000001","1100000000000000002"],"hide_platforms":false,"hide_last_seen":false,"hide_kv":false,"paused":true}"#
        );
        assert_eq!(PrivacySettings::from_json(&json).unwrap(), s);
        assert!(s.apply(&PrivacyPatch { hidden_activity_types: Some(vec!["dancing".into()]), ..Default::default() }).unwrap_err().contains("dancing"));
        assert!(s.apply(&PrivacyPatch { hidden_activity_types: Some(vec!["PLAYING".into()]), ..Default::default() }).is_err(), "names are lowercase");
        assert!(s.apply(&PrivacyPatch { hidden_applications: Some(vec!["012".into()]), ..Default::default() }).is_err());
        assert!(PrivacyPatch::from_json(br#"{"hide_everything":true}"#).unwrap_err().contains("hide_everything"));
        assert!(PrivacyPatch::from_json(b"[]").is_err());
        assert!(PrivacyPatch::from_json(br#"{"paused":null}"#).is_err(), "null is not a value");
        let long = format!(r#"{{"{}":true}}"#, "x".repeat(10_000));
        assert!(PrivacyPatch::from_json(long.as_bytes()).unwrap_err().chars().count() < 400, "what is quoted of the body is cut short");
        assert_eq!(PrivacyPatch::from_json(b"{}").unwrap(), PrivacyPatch::default());
        assert!(PrivacySettings::from_json(&json).unwrap().paused, "a failed patch changes nothing");
    }
}
