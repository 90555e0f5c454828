//! The card as SVG: plain elements only (no `foreignObject`, no scripts, no styles, no external
//! references), every image an inline data URI, every user string cleaned, measured, shortened
//! with an ellipsis where it would not fit, and escaped.

use crate::card::badges;
use crate::card::model::{ActivityData, CardData};
use crate::card::params::{CardParams, Theme};
use crate::card::text::{escape, fit, width, wrap, FONT_FAMILY};
use crate::discord::activity_type;
use crate::time_fmt::clock;
use std::fmt::Write as _;

pub const WIDTH: f32 = 600.0;
const PAD: f32 = 24.0;
const AVATAR: f32 = 80.0;
const NAME_X: f32 = PAD + AVATAR + 20.0;
const RIGHT: f32 = WIDTH - PAD;
/// Height without the activity section; with it, the card grows by one tile per activity.
const HEIGHT_SHORT: f32 = 136.0;
const TILE_Y: f32 = 144.0;
const TILE_H: f32 = 104.0;
const TILE_GAP: f32 = 12.0;
/// Below the last tile.
const BOTTOM: f32 = 24.0;
/// A stream preview is 16:9, as tall as the square art.
const PREVIEW_W: f32 = 142.0;

/// The card's height with `tiles` activity tiles (0: the activity section is hidden).
pub fn height_for(tiles: usize) -> f32 {
    if tiles == 0 {
        HEIGHT_SHORT
    } else {
        TILE_Y + tiles as f32 * TILE_H + (tiles - 1) as f32 * TILE_GAP + BOTTOM
    }
}

pub struct Palette {
    pub background: &'static str,
    pub background_secondary: &'static str,
    pub server_tag_background: &'static str,
    pub primary: &'static str,
    pub secondary: &'static str,
}

/// The deployed card's colours (contract §2.6).
pub fn palette(theme: Theme) -> Palette {
    match theme {
        Theme::Dark => Palette {
            background: "#17171c",
            background_secondary: "#1e1e24",
            server_tag_background: "#2c2c33",
            primary: "#ffffff",
            secondary: "#999999",
        },
        Theme::Light => Palette {
            background: "#e6e6e6",
            background_secondary: "#dcdcdc",
            server_tag_background: "#d5d5d5",
            primary: "#242a31",
            secondary: "#6c757d",
        },
    }
}

pub fn status_colour(status: &str) -> &'static str {
    match status {
        "online" => "#43b581",
        "idle" => "#faa61a",
        "dnd" => "#f04747",
        _ => "#747f8d",
    }
}

/// The embedded images, as data URIs; `None` draws the placeholder.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub avatar: Option<String>,
    pub emoji: Option<String>,
    pub tag_icon: Option<String>,
    /// One per activity shown, in order.
    pub activities: Vec<ActivityImages>,
}

#[derive(Debug, Clone, Default)]
pub struct ActivityImages {
    pub large: Option<String>,
    pub small: Option<String>,
}

struct W {
    out: String,
    /// Prefix of element ids, unique per user, so that several cards inlined in one page do not
    /// share clip paths.
    ids: String,
}

impl W {
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// A one-line text, already fitted.
    #[allow(clippy::too_many_arguments)]
    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, fill: &str, anchor: &str, content: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}"{} fill="{fill}"{}>{}</text>"#,
            if bold { r#" font-weight="700""# } else { "" },
            if anchor == "start" { String::new() } else { format!(r#" text-anchor="{anchor}""#) },
            escape(content)
        );
    }

    /// An image clipped to a rounded rectangle (`r` = half the size gives a circle).
    fn image(&mut self, id: &str, href: &str, x: f32, y: f32, size: f32, r: f32) {
        self.image_wh(id, href, x, y, size, size, r);
    }

    #[allow(clippy::too_many_arguments)]
    fn image_wh(&mut self, id: &str, href: &str, x: f32, y: f32, wd: f32, ht: f32, r: f32) {
        let _ = write!(
            self.out,
            r#"<clipPath id="{p}{id}"><rect x="{x}" y="{y}" width="{wd}" height="{ht}" rx="{r}"/></clipPath><image x="{x}" y="{y}" width="{wd}" height="{ht}" preserveAspectRatio="xMidYMid slice" clip-path="url(#{p}{id})" href="{}"/>"#,
            escape(href),
            p = self.ids
        );
    }

    /// The placeholder for an image that is absent or could not be fetched: a tile with a
    /// picture glyph.
    fn placeholder(&mut self, x: f32, y: f32, size: f32, r: f32, fill: &str, glyph: &str) {
        self.placeholder_wh(x, y, size, size, r, fill, glyph);
    }

    #[allow(clippy::too_many_arguments)]
    fn placeholder_wh(&mut self, x: f32, y: f32, wd: f32, ht: f32, r: f32, fill: &str, glyph: &str) {
        let s = ht / 24.0;
        let gx = x + (wd - ht) / 2.0;
        let _ = write!(
            self.out,
            r#"<rect x="{x}" y="{y}" width="{wd}" height="{ht}" rx="{r}" fill="{fill}"/><g transform="translate({gx} {y}) scale({s:.3})" fill="{glyph}" opacity="0.55"><path d="M6 7h12a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H6a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1Zm1 8h10l-3.2-4.2-2.4 3-1.6-1.9Z"/><circle cx="9" cy="10" r="1.3"/></g>"#
        );
    }
}

/// "5 minutes ago", "about 2 hours ago", … (date-fns `formatDistance` buckets, contract §2.6).
pub fn distance_ago(ms: i64) -> String {
    let secs = (ms.max(0) as f64) / 1000.0;
    let minutes = (secs / 60.0).round() as i64;
    let hours = secs / 3600.0;
    let days = secs / 86400.0;
    let d = if minutes == 0 {
        "less than a minute".to_owned()
    } else if minutes == 1 {
        "1 minute".to_owned()
    } else if minutes < 45 {
        format!("{minutes} minutes")
    } else if minutes < 90 {
        "about 1 hour".to_owned()
    } else if hours < 24.0 {
        format!("about {} hours", hours.round() as i64)
    } else if hours < 42.0 {
        "1 day".to_owned()
    } else if days < 30.0 {
        format!("{} days", days.round() as i64)
    } else {
        let months = (days / 30.44).round() as i64;
        if days < 60.0 {
            format!("about {} months", months.max(1))
        } else if months < 12 {
            format!("{months} months")
        } else {
            let total_months = (days / 30.44).floor() as i64;
            let (years, rem) = (total_months / 12, total_months % 12);
            if rem < 3 {
                format!("about {years} year{}", if years == 1 { "" } else { "s" })
            } else if rem < 9 {
                format!("over {years} year{}", if years == 1 { "" } else { "s" })
            } else {
                format!("almost {} years", years + 1)
            }
        }
    };
    format!("{d} ago")
}

/// The tile's header: what kind of activity it is.
fn header(a: &ActivityData) -> String {
    match a.kind {
        _ if a.spotify => "LISTENING TO SPOTIFY".into(),
        activity_type::PLAYING => "PLAYING".into(),
        activity_type::STREAMING => match a.platform() {
            Some(p) => format!("LIVE ON {p}"),
            None => "STREAMING".into(),
        },
        activity_type::LISTENING => format!("LISTENING TO {}", crate::card::text::clean(&a.name).to_uppercase()),
        activity_type::WATCHING => "WATCHING".into(),
        activity_type::COMPETING => "COMPETING IN".into(),
        _ => "ACTIVITY".into(),
    }
}

/// Renders the card at `now_ms` (the clock the elapsed times and "last seen" are computed at).
pub fn render(data: &CardData, p: &CardParams, img: &Images, now_ms: i64) -> String {
    let c = palette(p.theme);
    let show_activity = !p.hide_activity;
    let shown: Vec<&ActivityData> = data.activities.iter().take(p.max_activities.max(1)).collect();
    let height = if show_activity { height_for(shown.len().max(1)) } else { HEIGHT_SHORT };
    let radius = (p.border_radius * 16.0).min(height / 2.0);
    let mut w = W { out: String::with_capacity(8 * 1024), ids: format!("c{}-", data.id) };
    let display = if p.hide_global_name { None } else { data.global_name.as_deref() };
    let label = format!("@{}", data.username);
    let _ = write!(
        w.out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}"><title>{}</title>"#,
        escape(&crate::card::text::clean(&format!("{label} on Discord"))),
        escape(&crate::card::text::clean(&format!("{}{label}: {}", display.map(|d| format!("{d} ")).unwrap_or_default(), data.status)))
    );
    let _ = write!(w.out, r#"<g font-family="{}">"#, escape(FONT_FAMILY));
    let _ = write!(w.out, r#"<rect width="{WIDTH}" height="{height}" rx="{radius}" fill="{}"/>"#, c.background);

    // Avatar and status dot.
    match &img.avatar {
        Some(href) => w.image("av", href, PAD, PAD, AVATAR, AVATAR / 2.0),
        None => w.placeholder(PAD, PAD, AVATAR, AVATAR / 2.0, c.background_secondary, c.secondary),
    }
    if !p.hide_status {
        let (cx, cy) = (PAD + AVATAR - 11.0, PAD + AVATAR - 11.0);
        let colour = status_colour(data.status);
        let _ = write!(w.out, r#"<circle cx="{cx}" cy="{cy}" r="14" fill="{}"/><circle cx="{cx}" cy="{cy}" r="9" fill="{colour}"/>"#, c.background);
        match data.status {
            "idle" => {
                let _ = write!(w.out, r#"<circle cx="{}" cy="{}" r="5.5" fill="{}"/>"#, cx - 4.0, cy - 4.0, c.background);
            }
            "dnd" => {
                let _ = write!(w.out, r#"<rect x="{}" y="{}" width="11" height="3.6" rx="1.8" fill="{}"/>"#, cx - 5.5, cy - 1.8, c.background);
            }
            "offline" => {
                let _ = write!(w.out, r#"<circle cx="{cx}" cy="{cy}" r="4.2" fill="{}"/>"#, c.background);
            }
            _ => {}
        }
    }

    // "Last seen …" at the top right.
    let mut line1_right = RIGHT;
    if !p.hide_last_seen {
        if let Some(seen) = data.last_seen_ms {
            let t = format!("Last seen {}", distance_ago(now_ms.saturating_sub(seen)));
            w.text(RIGHT, 44.0, 12.0, false, c.secondary, "end", &t);
            line1_right = RIGHT - width(&t, 12.0, false) - 16.0;
        }
    }

    // Names, server tag, badges.
    let badges: Vec<&str> = if p.hide_badges { Vec::new() } else { badges::ordered(&data.flags) };
    let tag = if p.hide_server_tag { None } else { data.server_tag.as_ref() };
    let custom = if p.hide_status { None } else { data.custom_status.as_ref() };
    match display {
        Some(name) => {
            // Line 1: @username and badges; line 2: global name and the tag.
            let y1 = if custom.is_some() { 46.0 } else { 54.0 };
            let room = line1_right - NAME_X - badges_width(badges.len());
            let user = fit(&label, 14.0, false, room.max(60.0));
            w.text(NAME_X, y1, 14.0, false, c.secondary, "start", &user);
            let bx = NAME_X + width(&user, 14.0, false) + 8.0;
            draw_badges(&mut w, &badges, bx, y1 - 14.0, line1_right);
            let y2 = y1 + 28.0;
            let tag_w = tag.map(|t| tag_width(&t.tag)).unwrap_or(0.0);
            let name = fit(name, 22.0, true, (RIGHT - NAME_X - tag_w).max(60.0));
            w.text(NAME_X, y2, 22.0, true, c.primary, "start", &name);
            if let Some(t) = tag {
                draw_tag(&mut w, &c, img, &t.tag, NAME_X + width(&name, 22.0, true) + 10.0, y2 - 17.0);
            }
            if let Some(cs) = custom {
                draw_custom(&mut w, &c, img, cs, y2 + 24.0);
            }
        }
        None => {
            // One line: @username, the tag, then badges.
            let y = if custom.is_some() { 60.0 } else { 72.0 };
            let tag_w = tag.map(|t| tag_width(&t.tag)).unwrap_or(0.0);
            let room = line1_right - NAME_X - tag_w - badges_width(badges.len().min(3));
            let user = fit(&label, 22.0, true, room.max(80.0));
            w.text(NAME_X, y, 22.0, true, c.primary, "start", &user);
            let mut x = NAME_X + width(&user, 22.0, true) + 10.0;
            if let Some(t) = tag {
                draw_tag(&mut w, &c, img, &t.tag, x, y - 17.0);
                x += tag_w;
            }
            draw_badges(&mut w, &badges, x, y - 15.0, line1_right);
            if let Some(cs) = custom {
                draw_custom(&mut w, &c, img, cs, y + 26.0);
            }
        }
    }

    if show_activity {
        let _ = write!(w.out, r#"<rect x="{PAD}" y="{}" width="{}" height="1" fill="{}"/>"#, TILE_Y - 16.0, WIDTH - 2.0 * PAD, c.background_secondary);
        let tile = |w: &mut W, y: f32| {
            let _ = write!(w.out, r#"<rect x="{PAD}" y="{y}" width="{}" height="{TILE_H}" rx="16" fill="{}"/>"#, WIDTH - 2.0 * PAD, c.background_secondary);
        };
        if shown.is_empty() {
            tile(&mut w, TILE_Y);
            let cx = WIDTH / 2.0;
            let title = fit(&p.no_activity_title, 16.0, true, WIDTH - 4.0 * PAD);
            let lines = wrap(&p.no_activity_message, 13.0, false, WIDTH - 4.0 * PAD, 2);
            let top = if lines.len() > 1 { TILE_Y + 42.0 } else { TILE_Y + 48.0 };
            w.text(cx, top, 16.0, true, c.primary, "middle", &title);
            for (i, l) in lines.iter().enumerate() {
                w.text(cx, top + 22.0 + 18.0 * i as f32, 13.0, false, c.secondary, "middle", l);
            }
        }
        let none = ActivityImages::default();
        for (i, a) in shown.iter().enumerate() {
            let y = TILE_Y + i as f32 * (TILE_H + TILE_GAP);
            tile(&mut w, y);
            draw_activity(&mut w, &c, img.activities.get(i).unwrap_or(&none), a, now_ms, y, i);
        }
        let more = data.activities.len() - shown.len();
        if more > 0 {
            let t = format!("+{more} more {}", if more == 1 { "activity" } else { "activities" });
            w.text(PAD, height - 8.0, 10.0, false, c.secondary, "start", &t);
        }
    }
    w.text(RIGHT, height - 8.0, 10.0, false, c.secondary, "end", "lantern.rest");
    w.raw("</g></svg>");
    w.out
}

const BADGE: f32 = 18.0;
const BADGE_GAP: f32 = 4.0;

fn badges_width(n: usize) -> f32 {
    if n == 0 {
        0.0
    } else {
        8.0 + n as f32 * (BADGE + BADGE_GAP)
    }
}

/// Draws as many badges as fit before `right`; the rest become "+N".
fn draw_badges(w: &mut W, badges: &[&str], x: f32, y: f32, right: f32) {
    let mut bx = x;
    for (i, name) in badges.iter().enumerate() {
        let left = badges.len() - i;
        let needs_more = left > 1 && bx + 2.0 * (BADGE + BADGE_GAP) + 16.0 > right;
        if needs_more || bx + BADGE > right {
            let _ = write!(
                w.out,
                r##"<text x="{bx:.1}" y="{:.1}" font-size="12" font-weight="700" fill="#80848e">+{left}</text>"##,
                y + 13.5
            );
            return;
        }
        let (colour, glyph) = badges::badge(name);
        let _ = write!(
            w.out,
            r#"<g transform="translate({bx:.1} {y:.1})"><title>{}</title><circle cx="9" cy="9" r="9" fill="{colour}"/>{glyph}</g>"#,
            escape(&badges::label(name))
        );
        bx += BADGE + BADGE_GAP;
    }
}

fn tag_width(tag: &str) -> f32 {
    let t = fit(tag, 12.0, true, 80.0);
    4.0 + 16.0 + 5.0 + width(&t, 12.0, true) + 8.0 + 6.0
}

fn draw_tag(w: &mut W, c: &Palette, img: &Images, tag: &str, x: f32, y: f32) {
    let t = fit(tag, 12.0, true, 80.0);
    let wd = tag_width(tag) - 6.0;
    let _ = write!(w.out, r#"<rect x="{x:.1}" y="{y:.1}" width="{wd:.1}" height="22" rx="5.6" fill="{}"/>"#, c.server_tag_background);
    match &img.tag_icon {
        Some(href) => w.image("tag", href, x + 4.0, y + 3.0, 16.0, 8.0),
        None => {
            let _ = write!(w.out, r#"<circle cx="{:.1}" cy="{:.1}" r="6" fill="{}"/>"#, x + 12.0, y + 11.0, c.secondary);
        }
    }
    w.text(x + 25.0, y + 15.5, 12.0, true, c.primary, "start", &t);
}

fn draw_custom(w: &mut W, c: &Palette, img: &Images, cs: &crate::card::model::CustomStatus, y: f32) {
    let mut x = NAME_X;
    if cs.emoji_url.is_some() {
        match &img.emoji {
            Some(href) => w.image("emoji", href, x, y - 13.0, 16.0, 3.0),
            None => w.placeholder(x, y - 13.0, 16.0, 3.0, c.background_secondary, c.secondary),
        }
        x += 22.0;
    } else if let Some(e) = &cs.emoji_text {
        let e = fit(e, 14.0, false, 40.0);
        w.text(x, y, 14.0, false, c.primary, "start", &e);
        x += width(&e, 14.0, false) + 6.0;
    }
    if let Some(t) = &cs.text {
        let t = fit(t, 14.0, false, RIGHT - x);
        w.text(x, y, 14.0, false, c.primary, "start", &t);
    }
}

/// One activity's tile, whose top is at `top`; `i` keeps its clip paths apart from the others'.
fn draw_activity(w: &mut W, c: &Palette, img: &ActivityImages, a: &ActivityData, now_ms: i64, top: f32, i: usize) {
    let stream = a.kind == activity_type::STREAMING;
    let (ix, iy, size) = (PAD + 12.0, top + 12.0, 80.0);
    let art_w = if stream { PREVIEW_W } else { size };
    match &img.large {
        Some(href) => w.image_wh(&format!("large{i}"), href, ix, iy, art_w, size, 12.0),
        None => w.placeholder_wh(ix, iy, art_w, size, 12.0, c.background, c.secondary),
    }
    if stream {
        // The red "LIVE" pill on the preview.
        let _ = write!(w.out, r##"<rect x="{}" y="{}" width="34" height="16" rx="4" fill="#e91916"/>"##, ix + 6.0, iy + 6.0);
        let _ = write!(w.out, r##"<text x="{:.1}" y="{:.1}" font-size="10" font-weight="700" fill="#ffffff" text-anchor="middle">LIVE</text>"##, ix + 23.0, iy + 17.5);
    } else if a.small_image.is_some() {
        let (cx, cy) = (ix + size - 6.0, iy + size - 6.0);
        let _ = write!(w.out, r#"<circle cx="{cx}" cy="{cy}" r="15" fill="{}"/>"#, c.background_secondary);
        match &img.small {
            Some(href) => w.image(&format!("small{i}"), href, cx - 12.0, cy - 12.0, 24.0, 12.0),
            None => w.placeholder(cx - 12.0, cy - 12.0, 24.0, 12.0, c.background, c.secondary),
        }
    }
    let tx = ix + art_w + 16.0;
    let right = RIGHT - 14.0;
    let room = right - tx;
    // Activity timestamps are the user's to set (any i64): saturate rather than overflow.
    let elapsed = a.start_ms.map(|s| now_ms.saturating_sub(s).div_euclid(1000).max(0));
    let bar = match (a.start_ms, a.end_ms) {
        (Some(s), Some(e)) if e > s => Some((s, e)),
        _ => None,
    };
    // Header: the kind, and the elapsed time at the right when there is no progress bar.
    let mut header_room = room;
    if let (Some(secs), None) = (elapsed, bar) {
        let t = format!("{} elapsed", clock(secs));
        w.text(right, top + 26.0, 12.0, false, c.secondary, "end", &t);
        header_room -= width(&t, 12.0, false) + 12.0;
    }
    let head = fit(&header(a), 11.0, true, header_room);
    w.text(tx, top + 26.0, 11.0, true, c.secondary, "start", &head);
    let (title, sub1, sub2) = match a.kind {
        // What is playing, by whom, from which album (Spotify and other listening apps alike).
        activity_type::LISTENING => {
            let artist = a.state.as_deref().map(|s| format!("by {}", s.replace("; ", ", ")));
            let album = a.large_text.as_deref().map(|s| format!("on {s}"));
            (a.details.clone().unwrap_or_else(|| a.name.clone()), artist, album)
        }
        // The stream's title, then the game, then the platform's name.
        activity_type::STREAMING => match &a.details {
            Some(d) => (d.clone(), a.state.as_ref().map(|s| format!("playing {s}")), Some(a.name.clone())),
            None => (a.name.clone(), a.state.as_ref().map(|s| format!("playing {s}")), None),
        },
        _ => (a.name.clone(), a.details.clone(), a.state.clone()),
    };
    w.text(tx, top + 48.0, 16.0, true, c.primary, "start", &fit(&title, 16.0, true, room));
    match bar {
        None => {
            if let Some(s) = &sub1 {
                w.text(tx, top + 68.0, 13.0, false, c.secondary, "start", &fit(s, 13.0, false, room));
            }
            if let Some(s) = &sub2 {
                let y = if sub1.is_some() { top + 86.0 } else { top + 68.0 };
                w.text(tx, y, 13.0, false, c.secondary, "start", &fit(s, 13.0, false, room));
            }
        }
        Some((start, end)) => {
            let line = match (&sub1, &sub2) {
                (Some(a), Some(b)) => format!("{a} · {b}"),
                (Some(a), None) | (None, Some(a)) => a.clone(),
                (None, None) => String::new(),
            };
            if !line.is_empty() {
                w.text(tx, top + 67.0, 13.0, false, c.secondary, "start", &fit(&line, 13.0, false, room));
            }
            let total = end.saturating_sub(start).div_euclid(1000);
            let done = elapsed.unwrap_or(0).min(total);
            let frac = if total > 0 { done as f32 / total as f32 } else { 0.0 };
            let accent = if a.spotify { "#1db954" } else { "#5865f2" };
            let by = top + 76.0;
            let _ = write!(
                w.out,
                r#"<rect x="{tx}" y="{by}" width="{room}" height="4" rx="2" fill="{}"/><rect x="{tx}" y="{by}" width="{:.1}" height="4" rx="2" fill="{accent}"/>"#,
                c.background,
                (room * frac).max(4.0)
            );
            w.text(tx, top + 94.0, 11.0, false, c.secondary, "start", &clock(done));
            w.text(right, top + 94.0, 11.0, false, c.secondary, "end", &clock(total));
        }
    }
}

/// The card for a user who is not monitored (answered with 404).
pub fn not_monitored(id: &str, theme: Theme, invite: &str) -> String {
    let c = palette(theme);
    let h = HEIGHT_SHORT;
    let mut w = W { out: String::with_capacity(2048), ids: String::from("nm-") };
    let _ = write!(
        w.out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" role="img" aria-label="User not monitored"><title>User not monitored</title><g font-family="{}"><rect width="{WIDTH}" height="{h}" rx="24" fill="{}"/>"#,
        escape(FONT_FAMILY),
        c.background
    );
    let _ = write!(w.out, r##"<circle cx="{}" cy="{}" r="32" fill="#f04747"/>"##, PAD + 40.0, h / 2.0);
    let _ = write!(
        w.out,
        r##"<rect x="{}" y="{}" width="6" height="30" rx="3" fill="#fff"/><circle cx="{}" cy="{}" r="3.6" fill="#fff"/>"##,
        PAD + 37.0,
        h / 2.0 - 22.0,
        PAD + 40.0,
        h / 2.0 + 16.0
    );
    w.text(NAME_X, 56.0, 20.0, true, c.primary, "start", "User not monitored");
    w.text(NAME_X, 80.0, 13.0, false, c.secondary, "start", &fit(&format!("User {id} is not in Lantern's Discord server."), 13.0, false, RIGHT - NAME_X));
    w.text(NAME_X, 100.0, 13.0, false, c.secondary, "start", &fit(&format!("Join {invite} to show your card."), 13.0, false, RIGHT - NAME_X));
    w.text(RIGHT, h - 8.0, 10.0, false, c.secondary, "end", "lantern.rest");
    w.raw("</g></svg>");
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        let m = 60_000;
        assert_eq!(distance_ago(10_000), "less than a minute ago");
        assert_eq!(distance_ago(m), "1 minute ago");
        assert_eq!(distance_ago(5 * m), "5 minutes ago");
        assert_eq!(distance_ago(50 * m), "about 1 hour ago");
        assert_eq!(distance_ago(5 * 60 * m), "about 5 hours ago");
        assert_eq!(distance_ago(30 * 60 * m), "1 day ago");
        assert_eq!(distance_ago(10 * 24 * 60 * m), "10 days ago");
        assert_eq!(distance_ago(400 * 24 * 60 * m), "about 1 year ago");
        assert_eq!(distance_ago(3 * 365 * 24 * 60 * m + 200 * 24 * 60 * m), "over 3 years ago");
    }

    fn activity(start: Option<i64>, end: Option<i64>) -> ActivityData {
        ActivityData {
            kind: activity_type::PLAYING,
            spotify: false,
            name: "Game".into(),
            details: None,
            state: None,
            large_image: None,
            large_text: None,
            small_image: None,
            start_ms: start,
            end_ms: end,
            url: None,
        }
    }

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::to_owned).collect()
    }

    #[test]
    fn extreme_timestamps_saturate_instead_of_overflowing() {
        let longest = clock(i64::MAX.div_euclid(1000));
        let base = CardData {
            id: "1".into(),
            username: "u".into(),
            global_name: None,
            status: "online",
            flags: vec![],
            server_tag: None,
            avatar_url: String::new(),
            last_seen_ms: None,
            custom_status: None,
            activities: vec![],
        };
        let p = CardParams::default();
        // Elapsed since the start of time, at the end of time.
        let card = CardData { activities: vec![activity(Some(i64::MIN), None)], ..base.clone() };
        assert!(texts(&render(&card, &p, &Images::default(), i64::MAX)).contains(&format!("{longest} elapsed")));
        // A bar from the start of time to its end: both ends at the longest duration.
        let card = CardData { activities: vec![activity(Some(i64::MIN), Some(i64::MAX))], ..base.clone() };
        let t = texts(&render(&card, &p, &Images::default(), 0));
        assert_eq!(t.iter().filter(|l| **l == longest).count(), 2, "{t:?}");
        // Starting in the future: nothing elapsed.
        let card = CardData { activities: vec![activity(Some(i64::MAX), None)], ..base.clone() };
        assert!(texts(&render(&card, &p, &Images::default(), i64::MIN)).contains(&"00:00 elapsed".to_owned()));
        // Last seen at the start of time, or in the future.
        let card = CardData { status: "offline", last_seen_ms: Some(i64::MIN), ..base.clone() };
        assert!(texts(&render(&card, &p, &Images::default(), i64::MAX)).iter().any(|l| l.starts_with("Last seen almost ") || l.starts_with("Last seen about ") || l.starts_with("Last seen over ")));
        let card = CardData { status: "offline", last_seen_ms: Some(i64::MAX), ..base };
        assert!(texts(&render(&card, &p, &Images::default(), i64::MIN)).contains(&"Last seen less than a minute ago".to_owned()));
    }
}
