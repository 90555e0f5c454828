//! The profile card: parameters, user data and images rendered to SVG, which must be
//! well-formed XML that references nothing outside itself; image URLs resolve only onto the
//! configured hosts.

use super::gateway::{check_user_json, ArbMember, ArbPresence, Time, BASE_GUILD};
use super::http::QueryInput;
use arbitrary::Arbitrary;
use lantern::card::images::resolve;
use lantern::card::params::{self, CardParams, Theme, UserQuery};
use lantern::card::{model, svg};
use lantern::presence::state::Applied;
use lantern::presence::ShardState;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Arbitrary)]
pub struct CardCase {
    pub member: ArbMember,
    pub presence: Option<ArbPresence>,
    pub last_seen: Option<Time>,
    pub params: ParamsInput,
    pub images: ArbImages,
    /// The clock the card is drawn at, and the one the presence arrived at.
    pub now: Time,
    pub arrived: Time,
    /// The id shown by the "not monitored" card.
    pub other_id: String,
    pub url: String,
}

#[derive(Debug, Arbitrary)]
pub enum ParamsInput {
    Query(QueryInput),
    Direct { light: bool, radius: u8, hide: u8, title: Option<String>, message: Option<String>, activities: u8 },
}

impl ParamsInput {
    fn params(&self) -> CardParams {
        match self {
            ParamsInput::Query(q) => match params::parse(Some(&q.text())) {
                Ok(UserQuery::Card(_, p)) => p,
                _ => CardParams::default(),
            },
            ParamsInput::Direct { light, radius, hide, title, message, activities } => {
                let bit = |i: u8| hide & (1 << i) != 0;
                let d = CardParams::default();
                CardParams {
                    theme: if *light { Theme::Light } else { Theme::Dark },
                    border_radius: (*radius % 101) as f32 / 10.0,
                    hide_global_name: bit(0),
                    hide_status: bit(1),
                    hide_badges: bit(2),
                    hide_activity: bit(3),
                    hide_last_seen: bit(4),
                    hide_server_tag: bit(5),
                    no_activity_title: title.clone().unwrap_or(d.no_activity_title),
                    no_activity_message: message.clone().unwrap_or(d.no_activity_message),
                    max_activities: 1 + (*activities as usize % params::MAX_ACTIVITIES),
                }
            }
        }
    }
}

/// An image as the fetcher embeds it: a data URI of a sniffed type.
#[derive(Debug, Arbitrary)]
pub enum DataUri {
    Image(u8, Vec<u8>),
    /// Base64 payloads never hold these, but the writer must escape whatever it is given.
    Hostile(String),
}

const MIMES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl DataUri {
    fn uri(&self) -> String {
        match self {
            DataUri::Image(m, b) => format!("data:{};base64,{}", MIMES[*m as usize % 4], base64(b)),
            DataUri::Hostile(s) => format!("data:image/png;base64,{s}"),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct ArbImages {
    pub avatar: Option<DataUri>,
    pub large: Option<DataUri>,
    pub small: Option<DataUri>,
    pub emoji: Option<DataUri>,
    pub tag_icon: Option<DataUri>,
}

impl ArbImages {
    pub fn images(&self) -> svg::Images {
        let u = |d: &Option<DataUri>| d.as_ref().map(DataUri::uri);
        // The same art for every activity shown (the writer treats each alike).
        let activities = vec![svg::ActivityImages { large: u(&self.large), small: u(&self.small) }; params::MAX_ACTIVITIES];
        svg::Images { avatar: u(&self.avatar), emoji: u(&self.emoji), tag_icon: u(&self.tag_icon), activities }
    }
}

/// The default image hosts, and the same hosts remapped to local bases (as in tests).
fn host_sets() -> [Vec<(String, String)>; 2] {
    let hosts = lantern::config::CARD_IMAGE_HOSTS;
    [
        hosts.iter().map(|h| (h.to_string(), format!("https://{h}"))).collect(),
        hosts.iter().enumerate().map(|(i, h)| (h.to_string(), format!("http://127.0.0.1:{}/cdn{i}", 9000 + i))).collect(),
    ]
}

pub fn check(case: &CardCase) {
    let member = case.member.member();
    let id = member.user.id;
    let presence = case.presence.as_ref().map(|p| {
        let mut p = p.presence(Some(BASE_GUILD));
        p.user.id = id;
        p
    });
    let last_seen = case.last_seen.map(|t| HashMap::from([(id, t.0)])).unwrap_or_default();
    let mut state = ShardState::with_last_seen(last_seen);
    state.upsert_listed(member, presence, 1, case.arrived.0, &mut Applied::default());
    let user = state.get(id).expect("listed");
    check_user_json(&user.json, id, case.now.0);
    let data = model::from_view(&user.view());
    let p = case.params.params();
    let imgs = case.images.images();
    check_svg(&svg::render(&data, &p, &imgs, case.now.0), &imgs);
    check_svg(&svg::not_monitored(&case.other_id, p.theme, lantern::http::status::DISCORD_INVITE), &svg::Images::default());
    let mut urls = vec![
        Some(data.avatar_url.as_str()),
        data.custom_status.as_ref().and_then(|c| c.emoji_url.as_deref()),
        data.server_tag.as_ref().and_then(|t| t.icon_url.as_deref()),
        Some(case.url.as_str()),
    ];
    for a in &data.activities {
        urls.push(a.large_image.as_deref());
        urls.push(a.small_image.as_deref());
    }
    for hosts in host_sets() {
        for url in urls.iter().flatten() {
            check_resolve(url, &hosts);
        }
    }
}

/// `images::resolve`: only `https://` URLs on an allowlisted host (exactly, no user info or
/// port) map, and they map onto that host's base and nowhere else.
pub fn check_resolve(url: &str, hosts: &[(String, String)]) {
    let Some(mapped) = resolve(url, hosts) else { return };
    let uri: http::Uri = url.parse().expect("a resolved URL parses");
    assert_eq!(uri.scheme_str(), Some("https"), "{url}");
    let authority = uri.authority().expect("authority").as_str();
    let (_, base) = hosts.iter().find(|(h, _)| h == authority).unwrap_or_else(|| panic!("{url} resolved off the allowlist"));
    let path = uri.path_and_query().expect("path").as_str();
    assert_eq!(mapped, format!("{base}{path}"));
    assert!(path.split(['/', '?']).all(|s| s != ".." && s != "."), "{url}");
    let m: http::Uri = mapped.parse().expect("mapped URL parses");
    let b: http::Uri = base.parse().unwrap();
    assert_eq!((m.scheme(), m.authority()), (b.scheme(), b.authority()), "{url} → {mapped}");
}

/// Elements that could run code, load something or restyle the page.
const FORBIDDEN: &[&str] = &[
    "script", "foreignObject", "style", "iframe", "object", "embed", "a", "use", "animate", "set", "animateMotion", "animateTransform",
    "link", "meta", "audio", "video", "feImage", "handler", "listener",
];

/// The SVG parses as XML and holds nothing active or external: images are the given data URIs
/// (escaping round-trips), `url(…)` and `#` references point at ids in the document, ids are
/// unique, no event handlers.
pub fn check_svg(svg: &str, imgs: &svg::Images) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed XML ({e}): {svg}"));
    let root = doc.root_element();
    assert_eq!((root.tag_name().name(), root.tag_name().namespace()), ("svg", Some("http://www.w3.org/2000/svg")));
    let given: Vec<String> =
        [&imgs.avatar, &imgs.emoji, &imgs.tag_icon]
            .into_iter()
            .chain(imgs.activities.iter().flat_map(|a| [&a.large, &a.small]))
            .flatten()
            .map(|s| as_attribute(s))
            .collect();
    let mut ids = HashSet::new();
    let mut refs = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        assert!(!FORBIDDEN.contains(&name), "<{name}> in the card");
        if name == "image" {
            assert!(node.attributes().any(|a| a.name() == "href"), "an image without href");
        }
        for attr in node.attributes() {
            let (n, v) = (attr.name(), attr.value());
            assert!(!n.to_ascii_lowercase().starts_with("on"), "event handler {n}");
            match n {
                "href" => {
                    if let Some(r) = v.strip_prefix('#') {
                        refs.push(r.to_owned());
                    } else {
                        assert!(MIMES.iter().any(|m| v.starts_with(&format!("data:{m};base64,"))), "external reference {v:.80}");
                        assert!(given.iter().any(|g| g == v), "an image that was not given: {v:.80}");
                    }
                }
                "id" => assert!(ids.insert(v.to_owned()), "duplicate id {v}"),
                _ => {}
            }
            if n == "aria-label" {
                // Plain text for assistive technology (the username is in it): nothing refers.
                continue;
            }
            let mut rest = v;
            while let Some(i) = rest.find("url(") {
                let after = &rest[i + 4..];
                let r = after.strip_prefix('#').unwrap_or_else(|| panic!("external url() in {n}={v}"));
                let end = r.find(')').expect("url( is closed");
                refs.push(r[..end].to_owned());
                rest = &r[end..];
            }
        }
    }
    for r in refs {
        assert!(ids.contains(&r), "reference to a missing id #{r}");
    }
}

/// What an XML parser reads back from an attribute written with `text::escape`: characters XML
/// cannot hold are dropped, line ends normalised, and tabs and line breaks read as spaces.
fn as_attribute(s: &str) -> String {
    let s: String = s.chars().filter(|c| !((*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')) && !matches!(c, '\u{FFFE}' | '\u{FFFF}')).collect();
    s.replace("\r\n", "\n").replace('\r', "\n").replace(['\t', '\n'], " ")
}
