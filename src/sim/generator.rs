//! The synthetic guild: deterministic members and presences from a seed, and the random presence
//! changes ("churn") the simulator applies while running.
//!
//! Everything derives from the seed except activity timestamps, which are offsets from a `now`
//! the caller passes in (Spotify tracks and games must look current to be realistic).

use crate::discord::DISCORD_EPOCH_MS;
use crate::discord::{
    activity_type, Activity, ActivityEmoji, Assets, ClientStatus, Collectibles, Decoration, DisplayNameStyles, Member,
    Nameplate, PartialUser, Party,
    Presence, PrimaryGuild, Snowflake, Status, Timestamps, User,
};
use compact_str::format_compact;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// Role ids of the generated guild are `guild_id + n` for these names (n = index + 1).
pub(crate) const ROLE_NAMES: [&str; 4] = ["Moderator", "Regular", "Artist", "Gamer"];

const ADJECTIVES: [&str; 24] = [
    "quiet", "rapid", "lucky", "sleepy", "cosmic", "amber", "frozen", "lunar", "neon", "velvet",
    "wild", "brave", "misty", "crimson", "golden", "silent", "tiny", "electric", "mellow",
    "stormy", "hollow", "witty", "sunny", "arctic",
];
const NOUNS: [&str; 24] = [
    "fox", "otter", "pixel", "comet", "maple", "falcon", "ember", "river", "panda", "raven",
    "lantern", "cactus", "badger", "nebula", "walrus", "koi", "sparrow", "dune", "moth", "tiger",
    "quartz", "fern", "yeti", "orca",
];
const GLOBAL_NAMES: [&str; 16] = [
    "Alex", "Sam ✨", "Mika", "Jordan", "Noor", "Kai", "Léa", "Ren", "Ava 🌙", "Theo", "Yuki",
    "Priya", "Max", "Zoë", "Ines", "Oli",
];
const SONGS: [(&str, &str, &str); 10] = [
    ("Midnight City", "M83", "Hurry Up, We're Dreaming"),
    ("Digital Love", "Daft Punk", "Discovery"),
    ("Heat Waves", "Glass Animals", "Dreamland"),
    ("Redbone", "Childish Gambino", "Awaken, My Love!"),
    ("Dreams", "Fleetwood Mac", "Rumours"),
    ("Pink + White", "Frank Ocean", "Blonde"),
    ("Breathe Deeper", "Tame Impala", "The Slow Rush"),
    ("Nights", "Frank Ocean", "Blonde"),
    ("Feel Good Inc.", "Gorillaz; De La Soul", "Demon Days"),
    (
        "Get Lucky",
        "Daft Punk; Pharrell Williams; Nile Rodgers",
        "Random Access Memories",
    ),
];
/// (name, application id, details, state)
const GAMES: [(&str, u64, &str, &str); 6] = [
    (
        "Minecraft",
        356875570916753438,
        "Survival",
        "Building a base",
    ),
    ("Valorant", 700136079562375258, "Competitive", "In Queue"),
    (
        "Stardew Valley",
        1014181373066932304,
        "Year 2 - Spring",
        "Farming",
    ),
    (
        "Factorio",
        1072583404924817509,
        "Freeplay",
        "Launching rockets",
    ),
    ("Celeste", 1066079917117415474, "Chapter 7", "The Summit"),
    ("Hades", 1105541488574152825, "Escaping", "Tartarus"),
];
const CUSTOM_STATES: [&str; 8] = [
    "touching grass",
    "brb coffee",
    "debugging prod",
    "on vacation 🌴",
    "do not disturb pls",
    "learning rust",
    "streaming later",
    "🎧",
];

/// Discord user flag bits, plus a few high bits Discord does not document.
const FLAG_BITS: [u64; 10] = [
    1 << 0,
    1 << 1,
    1 << 2,
    1 << 3,
    1 << 6,
    1 << 7,
    1 << 8,
    1 << 17,
    1 << 22,
    1 << 18,
];
const UNKNOWN_FLAG_BITS: [u64; 3] = [1 << 33, 1 << 40, 1 << 45];

/// 2016-01-01 and 2025-01-01 in unix ms: the range of generated account creation times.
const ACCOUNTS_FROM_MS: u64 = 1_451_606_400_000;
const ACCOUNTS_TO_MS: u64 = 1_735_689_600_000;

/// A snowflake minted at `ms` with random worker/sequence bits.
pub(crate) fn snowflake_at(rng: &mut impl Rng, ms: u64) -> Snowflake {
    Snowflake(((ms - DISCORD_EPOCH_MS) << 22) | rng.random_range(0..(1u64 << 22)))
}

/// A snowflake minted at a random time between 2016 and 2025.
fn old_snowflake(rng: &mut impl Rng) -> Snowflake {
    let ms = rng.random_range(ACCOUNTS_FROM_MS..ACCOUNTS_TO_MS);
    snowflake_at(rng, ms)
}

/// A 32-hex image hash.
pub(crate) fn hex_hash(rng: &mut impl Rng) -> String {
    format!("{:032x}", rng.random::<u128>())
}

/// Discord's member timestamp shape: `2021-05-03T00:00:00.123000+00:00`.
pub(crate) fn discord_iso(ms: i64) -> String {
    let iso = crate::time_fmt::iso_ms(ms);
    format!("{}000+00:00", iso.trim_end_matches('Z'))
}

/// The generated guild's members and presences (offline members have `None`), in generation
/// order. Deterministic for a given `(members, seed, guild_id)` apart from activity timestamps.
pub fn generate_guild(
    members: usize,
    seed: u64,
    guild_id: Snowflake,
) -> Vec<(Member, Option<Presence>)> {
    generate_guild_at(members, seed, guild_id, crate::time_fmt::now_ms())
}

/// [`generate_guild`] with an explicit clock, fully deterministic.
pub fn generate_guild_at(
    members: usize,
    seed: u64,
    guild_id: Snowflake,
    now_ms: i64,
) -> Vec<(Member, Option<Presence>)> {
    let mut rng = StdRng::seed_from_u64(seed ^ guild_id.0);
    let guild_created = guild_id.timestamp_ms();
    let mut out = Vec::with_capacity(members);
    for i in 0..members {
        let user = generate_user(&mut rng, i, guild_id);
        // Members join after both the guild and the account exist.
        let earliest = guild_created.max(user.id.timestamp_ms());
        let latest = (now_ms as u64).max(earliest + 1);
        let joined = rng.random_range(earliest..latest) as i64;
        let roles = (1..=ROLE_NAMES.len() as u64)
            .filter(|_| rng.random_bool(0.25))
            .map(|n| Snowflake(guild_id.0 + n))
            .collect();
        let member = Member {
            nick: rng
                .random_bool(0.1)
                .then(|| format!("{} (nick)", user.username)),
            avatar: rng.random_bool(0.03).then(|| hex_hash(&mut rng)),
            roles,
            joined_at: Some(discord_iso(joined)),
            premium_since: rng
                .random_bool(0.05)
                .then(|| discord_iso(joined + 86_400_000)),
            user,
            ..Member::default()
        };
        let presence = if rng.random_bool(0.6) {
            Some(generate_presence(&mut rng, &member.user, now_ms))
        } else {
            None
        };
        out.push((member, presence));
    }
    out
}

fn generate_user(rng: &mut StdRng, index: usize, guild_id: Snowflake) -> User {
    let id = old_snowflake(rng);
    // The index suffix keeps usernames unique, as Discord's are.
    let username = format!(
        "{}_{}{}",
        ADJECTIVES.choose(rng).unwrap(),
        NOUNS.choose(rng).unwrap(),
        index
    );
    let bot = rng.random_bool(0.02);
    let avatar = match rng.random_range(0..10) {
        0 | 1 => None,
        2 => Some(format!("a_{}", hex_hash(rng))),
        _ => Some(hex_hash(rng)),
    };
    let mut flags = 0u64;
    for bit in FLAG_BITS {
        if rng.random_bool(0.08) {
            flags |= bit;
        }
    }
    if rng.random_bool(0.02) {
        flags |= *UNKNOWN_FLAG_BITS.choose(rng).unwrap();
    }
    if bot {
        flags |= 1 << 16; // VERIFIED_BOT
    }
    let primary_guild = rng.random_bool(0.08).then(|| PrimaryGuild {
        identity_guild_id: Some(guild_id),
        identity_enabled: Some(true),
        tag: Some(
            ["LMP", "RUST", "GG", "ZZZ"]
                .choose(rng)
                .unwrap()
                .to_string(),
        ),
        badge: Some(hex_hash(rng)),
    });
    // Decorations, nameplates and name styles follow from the id rather than from `rng`, so the
    // rest of every seed's world stays as it was before they existed.
    let pick = |salt: u64, one_in: u64| (id.0 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) % one_in == 0;
    let avatar_decoration_data = pick(1, 5).then(|| Decoration {
        asset: Some(format!("a_{:032x}", (id.0 as u128).wrapping_mul(0x1f1f_1f1f))),
        sku_id: Some(Snowflake(1_144_058_844_004_233_369)),
        expires_at: None,
    });
    let banner_decoration_data = pick(2, 9).then(|| Decoration {
        asset: Some(format!("{:032x}", (id.0 as u128).wrapping_mul(0x2e2e_2e2e))),
        sku_id: Some(Snowflake(1_293_373_563_494_518_836)),
        expires_at: None,
    });
    let collectibles = pick(3, 6).then(|| Collectibles {
        nameplate: Some(Nameplate {
            sku_id: Some(Snowflake(1_349_486_948_942_745_691)),
            asset: Some("nameplates/nameplates_v3/bonsai/".into()),
            label: Some("COLLECTIBLES_NAMEPLATES_BONSAI_A11Y".into()),
            palette: Some("bubble_gum".into()),
            expires_at: None,
        }),
    });
    let display_name_styles = pick(4, 7).then(|| DisplayNameStyles { font_id: Some(11), effect_id: Some(2), colors: vec![16_738_740, 3_447_003] });
    User {
        id,
        username,
        discriminator: if bot {
            format!("{:04}", rng.random_range(1..10000))
        } else {
            "0".into()
        },
        global_name: (!bot && rng.random_bool(0.7))
            .then(|| GLOBAL_NAMES.choose(rng).unwrap().to_string()),
        avatar,
        bot,
        public_flags: Some(flags),
        clan: primary_guild.clone(),
        primary_guild,
        avatar_decoration_data,
        banner_decoration_data,
        collectibles,
        display_name_styles,
    }
}

/// A random online/idle/dnd presence for `user`.
pub(crate) fn generate_presence(rng: &mut impl Rng, user: &User, now_ms: i64) -> Presence {
    let status = *[
        Status::Online,
        Status::Online,
        Status::Online,
        Status::Idle,
        Status::Dnd,
    ]
    .choose(rng)
    .unwrap();
    let mut client_status = ClientStatus::default();
    match rng.random_range(0..6) {
        0 | 1 => client_status.desktop = Some(status),
        2 => client_status.mobile = Some(status),
        3 => client_status.web = Some(status),
        4 => {
            client_status.desktop = Some(status);
            client_status.mobile = Some(status);
        }
        _ => {
            client_status.desktop = Some(status);
            client_status.web = Some(Status::Idle);
        }
    }
    let mut activities = Vec::new();
    if rng.random_bool(0.3) {
        activities.push(custom_status(rng, now_ms));
    }
    if !user.bot {
        match rng.random_range(0..10) {
            0..=2 => activities.push(spotify(rng, user.id, now_ms)),
            3..=5 => activities.push(game(rng, now_ms)),
            6 => activities.push(streaming(rng, now_ms)),
            7 => activities.push(watching_or_competing(rng, now_ms)),
            _ => {}
        }
    } else if rng.random_bool(0.5) {
        activities.push(Activity {
            name: "/help".into(),
            kind: activity_type::PLAYING,
            created_at: Some(now_ms),
            ..Activity::default()
        });
    }
    Presence {
        user: PartialUser {
            id: user.id,
            ..PartialUser::default()
        },
        guild_id: None,
        status,
        activities,
        client_status,
    }
}

fn custom_status(rng: &mut impl Rng, now_ms: i64) -> Activity {
    let emoji = match rng.random_range(0..3) {
        0 => None,
        1 => Some(ActivityEmoji {
            name: (*["🔥", "☕", "🌙", "🎮"].choose(rng).unwrap()).into(),
            id: None,
            animated: None,
        }),
        _ => Some(ActivityEmoji {
            name: "blobwave".into(),
            id: Some(old_snowflake(rng)),
            animated: Some(rng.random_bool(0.5)),
        }),
    };
    Activity {
        id: Some("custom".into()),
        name: "Custom Status".into(),
        kind: activity_type::CUSTOM,
        created_at: Some(now_ms - rng.random_range(0..3_600_000)),
        state: Some((*CUSTOM_STATES.choose(rng).unwrap()).into()),
        emoji,
        ..Activity::default()
    }
}

/// A Spotify activity for a track that is currently playing.
pub(crate) fn spotify(rng: &mut impl Rng, user: Snowflake, now_ms: i64) -> Activity {
    let (song, artist, album) = *SONGS.choose(rng).unwrap();
    let length = rng.random_range(120_000..360_000);
    let start = now_ms - rng.random_range(0..length);
    let track: String = (0..22)
        .map(|_| {
            *b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                .choose(rng)
                .unwrap() as char
        })
        .collect();
    Activity {
        id: Some("spotify:1".into()),
        name: "Spotify".into(),
        kind: activity_type::LISTENING,
        created_at: Some(start),
        timestamps: Some(Timestamps {
            start: Some(start),
            end: Some(start + length),
        }),
        details: Some(song.into()),
        state: Some(artist.into()),
        assets: Some(Assets {
            large_image: Some(format_compact!(
                "spotify:ab67616d0000b273{:024x}",
                rng.random::<u128>() >> 32
            )),
            large_text: Some(album.into()),
            ..Assets::default()
        }),
        sync_id: Some(track.into()),
        session_id: Some(format_compact!("{:032x}", rng.random::<u128>())),
        party: Some(Party {
            id: Some(format_compact!("spotify:{user}")),
            size: None,
        }),
        flags: Some(48),
        ..Activity::default()
    }
}

/// A game with rich presence.
pub(crate) fn game(rng: &mut impl Rng, now_ms: i64) -> Activity {
    let (name, app, details, state) = *GAMES.choose(rng).unwrap();
    let start = now_ms - rng.random_range(60_000..7_200_000);
    let large_image = if rng.random_bool(0.5) {
        hex_hash(rng)
    } else {
        format!(
            "mp:external/{:x}/https/cdn.example.com/{}.png",
            rng.random::<u64>(),
            name.to_lowercase().replace(' ', "-")
        )
    };
    Activity {
        name: name.into(),
        kind: activity_type::PLAYING,
        created_at: Some(start),
        timestamps: Some(Timestamps {
            start: Some(start),
            end: None,
        }),
        application_id: Some(Snowflake(app)),
        details: Some(details.into()),
        state: Some(state.into()),
        assets: Some(Assets {
            large_image: Some(large_image.into()),
            large_text: Some(name.into()),
            small_image: rng.random_bool(0.5).then(|| hex_hash(rng).into()),
            small_text: Some("Level 42".into()),
        }),
        party: rng.random_bool(0.3).then(|| Party {
            id: Some(format_compact!("{:x}", rng.random::<u64>())),
            size: Some([2, 4]),
        }),
        buttons: if rng.random_bool(0.2) {
            vec!["Join".into()]
        } else {
            Vec::new()
        },
        platform: rng.random_bool(0.5).then(|| "desktop".into()),
        ..Activity::default()
    }
}

fn streaming(rng: &mut impl Rng, now_ms: i64) -> Activity {
    let (name, ..) = *GAMES.choose(rng).unwrap();
    Activity {
        name: "Twitch".into(),
        kind: activity_type::STREAMING,
        url: Some(format_compact!(
            "https://www.twitch.tv/{}",
            NOUNS.choose(rng).unwrap()
        )),
        created_at: Some(now_ms - rng.random_range(0..3_600_000)),
        details: Some(format_compact!("{name} speedrun")),
        state: Some(name.into()),
        assets: Some(Assets {
            large_image: Some(format_compact!("twitch:{}", NOUNS.choose(rng).unwrap())),
            ..Assets::default()
        }),
        ..Activity::default()
    }
}

fn watching_or_competing(rng: &mut impl Rng, now_ms: i64) -> Activity {
    let (name, kind) = if rng.random_bool(0.5) {
        ("YouTube", activity_type::WATCHING)
    } else {
        ("Arena Championship", activity_type::COMPETING)
    };
    Activity {
        name: name.into(),
        kind,
        created_at: Some(now_ms - rng.random_range(0..3_600_000)),
        ..Activity::default()
    }
}

/// One churn step for a member: returns the member's new presence (status `Offline` means
/// they went offline).
pub(crate) fn churn(
    rng: &mut impl Rng,
    user: &User,
    current: Option<&Presence>,
    now_ms: i64,
) -> Presence {
    let Some(current) = current else {
        return generate_presence(rng, user, now_ms);
    };
    let mut next = current.clone();
    match rng.random_range(0..5) {
        0 => {
            return Presence {
                user: PartialUser {
                    id: user.id,
                    ..PartialUser::default()
                },
                status: Status::Offline,
                ..Presence::default()
            }
        }
        1 => {
            let status = *[Status::Online, Status::Idle, Status::Dnd]
                .choose(rng)
                .unwrap();
            next.status = status;
            for s in [
                &mut next.client_status.desktop,
                &mut next.client_status.mobile,
                &mut next.client_status.web,
            ] {
                if s.is_some() {
                    *s = Some(status);
                }
            }
        }
        2 if !user.bot => {
            next.activities
                .retain(|a| a.kind != activity_type::LISTENING);
            next.activities.push(spotify(rng, user.id, now_ms));
        }
        3 if !user.bot => {
            next.activities.retain(|a| a.kind != activity_type::PLAYING);
            next.activities.push(game(rng, now_ms));
        }
        _ => next = generate_presence(rng, user, now_ms),
    }
    next
}

/// A stream of `events` PRESENCE_UPDATE payloads for the generated guild `members`, as the
/// running simulator would send them: churn steps of random members (status changes, new
/// Spotify tracks and games, fresh presences, going offline) and, one in ten, the member's
/// current presence sent again unchanged (the gateway repeats presences whose changes the
/// server does not show). Each carries `guild_id`; offline ones have no activities.
/// Deterministic for a given seed and clock.
pub fn presence_corpus(
    members: &[(Member, Option<Presence>)],
    events: usize,
    seed: u64,
    guild_id: Snowflake,
    now_ms: i64,
) -> Vec<Presence> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut current: Vec<Option<Presence>> = members.iter().map(|(_, p)| p.clone()).collect();
    let mut out = Vec::with_capacity(events);
    if members.is_empty() {
        return out;
    }
    for _ in 0..events {
        let i = rng.random_range(0..members.len());
        let user = &members[i].0.user;
        let mut next = match &current[i] {
            Some(p) if rng.random_bool(0.1) => p.clone(),
            cur => churn(&mut rng, user, cur.as_ref(), now_ms),
        };
        if next.status.is_offline() {
            next.status = Status::Offline;
            next.activities.clear();
            current[i] = None;
        } else {
            current[i] = Some(next.clone());
        }
        next.guild_id = Some(guild_id);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_plausible() {
        let g = Snowflake(1378135304107458560);
        let a = generate_guild_at(300, 7, g, 1_750_000_000_000);
        let b = generate_guild_at(300, 7, g, 1_750_000_000_000);
        assert_eq!(a, b);
        let online = a.iter().filter(|(_, p)| p.is_some()).count();
        assert!((120..=240).contains(&online), "{online}");
        for (m, _) in &a {
            let len = m.user.id.to_string().len();
            assert!((17..=19).contains(&len));
        }
    }
}
