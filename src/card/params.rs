//! The card's query parameters, validated with the contract's messages.
//!
//! Every parameter is checked on every `GET /api/v1/users/:id`, card or not (the contract
//! validates `?theme=blue` on a JSON request too). A repeated key is checked in every
//! occurrence and the last one wins.

use crate::card::text::char_count;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Theme {
    Dark,
    Light,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Svg => "image/svg+xml; charset=utf-8",
            Format::Png => "image/png",
        }
    }
}

pub const DEFAULT_NO_ACTIVITY_TITLE: &str = "No Activity";
pub const DEFAULT_NO_ACTIVITY_MESSAGE: &str = "User is not currently doing anything.";
/// Largest accepted `maxActivities`: the card grows by one tile per activity.
pub const MAX_ACTIVITIES: usize = 8;
/// Largest accepted `borderRadius`, in rem.
pub const MAX_BORDER_RADIUS: f32 = 10.0;

/// How the card is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct CardParams {
    pub theme: Theme,
    /// rem (16 px); 0 gives square corners.
    pub border_radius: f32,
    pub hide_global_name: bool,
    pub hide_status: bool,
    pub hide_badges: bool,
    pub hide_activity: bool,
    pub hide_last_seen: bool,
    pub hide_server_tag: bool,
    pub no_activity_title: String,
    pub no_activity_message: String,
    /// How many activities the card shows, in presence order (1 = the first only, as before).
    pub max_activities: usize,
}

impl Default for CardParams {
    fn default() -> Self {
        CardParams {
            theme: Theme::Dark,
            border_radius: 2.0,
            hide_global_name: false,
            hide_status: false,
            hide_badges: false,
            hide_activity: false,
            hide_last_seen: false,
            hide_server_tag: false,
            no_activity_title: DEFAULT_NO_ACTIVITY_TITLE.to_owned(),
            no_activity_message: DEFAULT_NO_ACTIVITY_MESSAGE.to_owned(),
            max_activities: 1,
        }
    }
}

impl CardParams {
    /// A stable, unambiguous text form (Debug quotes and escapes the strings), for cache keys
    /// and ETags.
    pub fn canonical(&self) -> String {
        format!("{self:?}")
    }
}

/// What a `GET /api/v1/users/:id` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum UserQuery {
    Json,
    Card(Format, CardParams),
}

/// A parameter that fails validation, with the contract's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

fn invalid(message: impl Into<String>) -> InvalidQuery {
    InvalidQuery(message.into())
}

fn flag(name: &str, value: &str) -> Result<bool, InvalidQuery> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        v if v.parse::<f64>().is_ok() => Err(invalid(format!("{name} must be either 0 or 1."))),
        _ => Err(invalid(format!("{name} must be a number."))),
    }
}

/// Parses and validates the query of `GET /api/v1/users/:id`.
pub fn parse(query: Option<&str>) -> Result<UserQuery, InvalidQuery> {
    let mut p = CardParams::default();
    let mut svg = false;
    let mut format: Option<Format> = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = value.as_ref();
        match key.as_ref() {
            "svg" => svg = flag("svg", v)?,
            "format" => {
                format = match v.to_ascii_lowercase().as_str() {
                    "svg" => Some(Format::Svg),
                    "png" => Some(Format::Png),
                    "json" => None,
                    _ => return Err(invalid("format must be either \"svg\", \"png\" or \"json\".")),
                }
            }
            "theme" => {
                p.theme = match v {
                    "dark" => Theme::Dark,
                    "light" => Theme::Light,
                    _ => return Err(invalid("Theme must be either \"light\" or \"dark\".")),
                }
            }
            "borderRadius" => {
                let r: f32 = v.trim().parse().ok().filter(|r: &f32| r.is_finite()).ok_or_else(|| invalid("borderRadius must be a number."))?;
                if !(0.0..=MAX_BORDER_RADIUS).contains(&r) {
                    return Err(invalid(format!("borderRadius must be between 0 and {MAX_BORDER_RADIUS}.")));
                }
                p.border_radius = r;
            }
            "hideGlobalName" => p.hide_global_name = flag("hideGlobalName", v)?,
            "hideStatus" => p.hide_status = flag("hideStatus", v)?,
            "hideBadges" => p.hide_badges = flag("hideBadges", v)?,
            "hideActivity" => p.hide_activity = flag("hideActivity", v)?,
            "hideLastSeen" => p.hide_last_seen = flag("hideLastSeen", v)?,
            "hideServerTag" => p.hide_server_tag = flag("hideServerTag", v)?,
            "noActivityTitle" => {
                if !(1..=64).contains(&char_count(v)) {
                    return Err(invalid("noActivityTitle must be 1-64 characters long."));
                }
                p.no_activity_title = v.to_owned();
            }
            "maxActivities" => {
                let n: usize = v.trim().parse().map_err(|_| invalid("maxActivities must be a number."))?;
                if !(1..=MAX_ACTIVITIES).contains(&n) {
                    return Err(invalid(format!("maxActivities must be between 1 and {MAX_ACTIVITIES}.")));
                }
                p.max_activities = n;
            }
            "noActivityMessage" => {
                if !(1..=256).contains(&char_count(v)) {
                    return Err(invalid("noActivityMessage must be 1-256 characters long."));
                }
                p.no_activity_message = v.to_owned();
            }
            _ => {}
        }
    }
    Ok(match (format, svg) {
        (Some(f), _) => UserQuery::Card(f, p),
        (None, true) => UserQuery::Card(Format::Svg, p),
        (None, false) => UserQuery::Json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        parse(Some(q)).unwrap_err().0
    }

    #[test]
    fn parses_and_validates() {
        assert_eq!(parse(None).unwrap(), UserQuery::Json);
        assert_eq!(parse(Some("svg=0")).unwrap(), UserQuery::Json);
        let UserQuery::Card(Format::Svg, p) = parse(Some("svg=1&theme=light&borderRadius=0&hideBadges=1&noActivityTitle=1%20thing")).unwrap() else {
            panic!()
        };
        assert_eq!((p.theme, p.border_radius, p.hide_badges, p.no_activity_title.as_str()), (Theme::Light, 0.0, true, "1 thing"));
        assert!(matches!(parse(Some("format=png")).unwrap(), UserQuery::Card(Format::Png, _)));
        assert!(matches!(parse(Some("svg=true")).unwrap(), UserQuery::Card(Format::Svg, _)));
        assert_eq!(err("theme=blue"), "Theme must be either \"light\" or \"dark\".");
        assert_eq!(err("svg=2"), "svg must be either 0 or 1.");
        assert_eq!(err("svg="), "svg must be a number.");
        assert_eq!(err("hideStatus=yes"), "hideStatus must be a number.");
        assert_eq!(err("hideLastSeen=5"), "hideLastSeen must be either 0 or 1.");
        assert_eq!(err("borderRadius=abc"), "borderRadius must be a number.");
        assert_eq!(err("borderRadius=-1"), "borderRadius must be between 0 and 10.");
        assert_eq!(err("noActivityTitle="), "noActivityTitle must be 1-64 characters long.");
        assert_eq!(err(&format!("noActivityMessage={}", "x".repeat(257))), "noActivityMessage must be 1-256 characters long.");
        assert_eq!(err("maxActivities=0"), "maxActivities must be between 1 and 8.");
        assert_eq!(err("maxActivities=9"), "maxActivities must be between 1 and 8.");
        assert_eq!(err("maxActivities=two"), "maxActivities must be a number.");
        let UserQuery::Card(_, p) = parse(Some("svg=1&maxActivities=3")).unwrap() else { panic!() };
        assert_eq!(p.max_activities, 3);
        assert_eq!(err("format=gif"), "format must be either \"svg\", \"png\" or \"json\".");
        // Every occurrence is validated.
        assert_eq!(err("theme=dark&theme=x"), "Theme must be either \"light\" or \"dark\".");
    }
}
