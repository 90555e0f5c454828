//! Lanyard's presence object (the `data` of `GET /v1/users/:id` and of its socket events).
//!
//! Field by field as Lanyard builds it: `discord_user` is the Discord user object with every
//! snowflake a string; `discord_status` is the visible status (invisible shows as offline);
//! `active_on_discord_<platform>` is whether `client_status` names that platform;
//! `spotify` is derived from the activity whose id is `spotify:1` (`null` without one);
//! `activities` are Discord's activity objects as sent (snowflakes as strings); `kv` is the
//! user's key-value map, `{}` when empty. A member without a presence is offline with no
//! activities.

use crate::discord::{Activity, Presence};
use crate::presence::UserView;
use bytes::Bytes;
use serde::Serialize;

/// Lanyard's Spotify block.
#[derive(Serialize)]
struct Spotify<'a> {
    track_id: Option<&'a str>,
    timestamps: Option<&'a crate::discord::Timestamps>,
    song: Option<&'a str>,
    artist: Option<&'a str>,
    album_art_url: Option<String>,
    album: Option<&'a str>,
}

/// The activity Lanyard reads Spotify from.
fn spotify_activity(presence: Option<&Presence>) -> Option<&Activity> {
    presence?.activities.iter().find(|a| a.id.as_deref() == Some("spotify:1"))
}

fn spotify(a: &Activity) -> Spotify<'_> {
    let assets = a.assets.as_ref();
    Spotify {
        track_id: a.sync_id.as_deref(),
        timestamps: a.timestamps.as_ref(),
        song: a.details.as_deref(),
        artist: a.state.as_deref(),
        // `spotify:ab67…` → the image's id on Spotify's CDN.
        album_art_url: assets
            .and_then(|s| s.large_image.as_deref())
            .map(|image| format!("https://i.scdn.co/image/{}", image.split_once(':').map_or(image, |(_, id)| id))),
        album: assets.and_then(|s| s.large_text.as_deref()),
    }
}

/// The presence as JSON. `kv_json` is the user's map as a JSON object (spliced in as is).
pub fn encode(view: &UserView<'_>, kv_json: &[u8]) -> Bytes {
    #[derive(Serialize)]
    struct Head<'a> {
        discord_user: &'a crate::discord::User,
        discord_status: &'static str,
        active_on_discord_web: bool,
        active_on_discord_desktop: bool,
        active_on_discord_mobile: bool,
        active_on_discord_embedded: bool,
        active_on_discord_vr: bool,
        listening_to_spotify: bool,
        spotify: Option<Spotify<'a>>,
        activities: &'a [Activity],
    }
    let presence = view.presence;
    let platforms = presence.map(|p| &p.client_status);
    let spotify_activity = spotify_activity(presence);
    let head = Head {
        discord_user: &view.member.user,
        discord_status: presence.map_or("offline", |p| p.status.visible()),
        active_on_discord_web: platforms.is_some_and(|c| c.web.is_some()),
        active_on_discord_desktop: platforms.is_some_and(|c| c.desktop.is_some()),
        active_on_discord_mobile: platforms.is_some_and(|c| c.mobile.is_some()),
        active_on_discord_embedded: platforms.is_some_and(|c| c.embedded.is_some()),
        active_on_discord_vr: platforms.is_some_and(|c| c.vr.is_some()),
        listening_to_spotify: spotify_activity.is_some(),
        spotify: spotify_activity.map(spotify),
        activities: presence.map_or(&[], |p| &p.activities),
    };
    let mut out = Vec::with_capacity(512 + kv_json.len());
    // Serializing these types cannot fail: every map key is a string.
    serde_json::to_writer(&mut out, &head).expect("presence serializes");
    out.pop(); // the closing brace: `kv` follows
    out.extend_from_slice(b",\"kv\":");
    out.extend_from_slice(if kv_json.is_empty() { b"{}" } else { kv_json });
    out.push(b'}');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::{Assets, ClientStatus, Member, Snowflake, Status, Timestamps, User};

    fn member() -> Member {
        Member {
            user: User {
                id: Snowflake(94490510688792576),
                username: "phin".into(),
                discriminator: "0".into(),
                global_name: Some("Phineas".into()),
                avatar: Some("a_7484f82375f47a487f41650f36d30318".into()),
                public_flags: Some(131584),
                ..User::default()
            },
            ..Member::default()
        }
    }

    #[test]
    fn a_member_without_presence_is_offline_with_no_activities_and_keeps_kv() {
        let m = member();
        let view = UserView { member: &m, presence: None, last_seen_ms: None, version: 1 };
        let json: serde_json::Value = serde_json::from_slice(&encode(&view, br#"{"a":"1"}"#)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "discord_user": {"id":"94490510688792576","username":"phin","discriminator":"0","global_name":"Phineas",
                    "avatar":"a_7484f82375f47a487f41650f36d30318","bot":false,"public_flags":131584,
                    "clan":null,"avatar_decoration_data":null,"banner_decoration_data":null,"collectibles":null,"display_name_styles":null},
                "discord_status":"offline","active_on_discord_web":false,"active_on_discord_desktop":false,
                "active_on_discord_mobile":false,"active_on_discord_embedded":false,"active_on_discord_vr":false,
                "listening_to_spotify":false,"spotify":null,"activities":[],"kv":{"a":"1"}
            })
        );
    }

    #[test]
    fn spotify_comes_from_the_spotify_1_activity() {
        let m = member();
        let song = Activity {
            id: Some("spotify:1".into()),
            name: "Spotify".into(),
            kind: 2,
            sync_id: Some("4cOdK2wGLETKBW3PvgPWqT".into()),
            details: Some("Never Gonna Give You Up".into()),
            state: Some("Rick Astley".into()),
            timestamps: Some(Timestamps { start: Some(1000), end: Some(214000) }),
            assets: Some(Assets { large_image: Some("spotify:ab67616d0000b273".into()), large_text: Some("Whenever You Need Somebody".into()), ..Assets::default() }),
            ..Activity::default()
        };
        let presence = Presence {
            status: Status::Invisible,
            activities: vec![song],
            client_status: ClientStatus { desktop: Some(Status::Online), vr: Some(Status::Online), ..ClientStatus::default() },
            ..Presence::default()
        };
        let view = UserView { member: &m, presence: Some(&presence), last_seen_ms: None, version: 2 };
        let json: serde_json::Value = serde_json::from_slice(&encode(&view, b"{}")).unwrap();
        assert_eq!(json["discord_status"], "offline", "invisible shows as offline");
        assert_eq!((json["active_on_discord_desktop"].as_bool(), json["active_on_discord_vr"].as_bool(), json["active_on_discord_web"].as_bool()), (Some(true), Some(true), Some(false)));
        assert_eq!(json["listening_to_spotify"], true);
        assert_eq!(
            json["spotify"],
            serde_json::json!({"track_id":"4cOdK2wGLETKBW3PvgPWqT","timestamps":{"start":1000,"end":214000},
                "song":"Never Gonna Give You Up","artist":"Rick Astley",
                "album_art_url":"https://i.scdn.co/image/ab67616d0000b273","album":"Whenever You Need Somebody"})
        );
        assert_eq!(json["activities"][0]["sync_id"], "4cOdK2wGLETKBW3PvgPWqT");
        assert_eq!(json["kv"], serde_json::json!({}));
    }
}
