//! `/privacy …`: a member reads and changes their own privacy settings through the bot.
//!
//! `/privacy show`, `/privacy set setting:<name> value:<value>`, `/privacy pause` and
//! `/privacy resume`. Every command acts on the member who ran it (the interaction's user) and
//! nobody else; the change is made on the member's owner shard, answered once durable, and
//! every reader sees it at once. Both options of `set` autocomplete.

use crate::presence::privacy::{PrivacyChange, PrivacyError, PrivacyPatch, PrivacySettings, ACTIVITY_TYPES, MAX_HIDDEN_APPLICATIONS};

/// The settings `/privacy set` changes, with what each hides (for the autocomplete).
pub const SETTINGS: [(&str, &str); 7] = [
    ("hide_spotify", "Spotify"),
    ("hide_activities", "every activity"),
    ("hidden_activity_types", "activities of these types"),
    ("hidden_applications", "activities of these applications"),
    ("hide_platforms", "desktop / mobile / web (one status instead)"),
    ("hide_last_seen", "last seen"),
    ("hide_kv", "your key-value storage in public objects"),
];

pub const PAUSED: &str = "Lantern has paused showing you: every route, socket and card now answers as if you were not monitored. Run `/privacy resume` to be shown again.";
pub const RESUMED: &str = "Lantern shows you again, with your privacy settings.";
pub const ALREADY_PAUSED: &str = "You are already paused. Run `/privacy resume` to be shown again.";
pub const NOT_PAUSED: &str = "You are not paused.";
pub const FAILED: &str = "Something went wrong while saving your privacy settings. Please try again later.";

fn on_off(hidden: bool) -> &'static str {
    if hidden {
        "hidden"
    } else {
        "shown"
    }
}

fn list(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    }
}

/// The settings as the bot shows them.
pub fn describe(s: &PrivacySettings) -> String {
    format!(
        "Your privacy settings:\n\
         - Spotify (`hide_spotify`): {}\n\
         - Activities (`hide_activities`): {}\n\
         - Hidden activity types (`hidden_activity_types`): {}\n\
         - Hidden applications (`hidden_applications`): {}\n\
         - Platforms (`hide_platforms`): {}\n\
         - Last seen (`hide_last_seen`): {}\n\
         - Key-value storage in public objects (`hide_kv`): {}\n\
         - Paused: {}",
        on_off(s.hide_spotify),
        on_off(s.hide_activities),
        list(s.hidden_type_names().into_iter().map(String::from).collect()),
        list(s.hidden_applications.iter().map(|id| id.to_string()).collect()),
        on_off(s.hide_platforms),
        on_off(s.hide_last_seen),
        on_off(s.hide_kv),
        if s.paused { "yes (run `/privacy resume`)" } else { "no" },
    )
}

/// A boolean as typed: on/off, true/false, yes/no, hide/show.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "hide" | "hidden" | "1" => Some(true),
        "off" | "false" | "no" | "show" | "shown" | "0" => Some(false),
        _ => None,
    }
}

/// A comma-separated list (`none` or nothing: empty).
fn parse_list(value: &str) -> Vec<String> {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    v.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// The patch `/privacy set setting value` asks for, or the message saying what is wrong.
pub fn patch_for(setting: &str, value: &str) -> Result<PrivacyPatch, String> {
    let boolean = || parse_bool(value).ok_or_else(|| format!("`{setting}` takes `on` or `off`."));
    let mut patch = PrivacyPatch::default();
    match setting {
        "hide_spotify" => patch.hide_spotify = Some(boolean()?),
        "hide_activities" => patch.hide_activities = Some(boolean()?),
        "hide_platforms" => patch.hide_platforms = Some(boolean()?),
        "hide_last_seen" => patch.hide_last_seen = Some(boolean()?),
        "hide_kv" => patch.hide_kv = Some(boolean()?),
        "hidden_activity_types" => patch.hidden_activity_types = Some(parse_list(&value.to_ascii_lowercase())),
        "hidden_applications" => patch.hidden_applications = Some(parse_list(value)),
        _ => return Err(format!("Unknown setting. Pick one of {}.", SETTINGS.map(|(n, _)| format!("`{n}`")).join(", "))),
    }
    Ok(patch)
}

/// The reply to a change that failed.
pub fn failure(e: PrivacyError) -> String {
    match e {
        PrivacyError::Invalid(m) => m,
        PrivacyError::NotMember => crate::bot::interactions::NO_USER.into(),
        PrivacyError::Unauthorized => FAILED.into(),
        PrivacyError::Internal(reason) => {
            tracing::error!(%reason, "privacy change from the bot failed");
            FAILED.into()
        }
        PrivacyError::Unavailable(reason) => {
            tracing::warn!(%reason, "privacy change from the bot refused: the cluster's store is unavailable");
            crate::bot::interactions::UNAVAILABLE.into()
        }
    }
}

/// Autocomplete choices (name, value) for `/privacy set`: the focused option is `focused`,
/// with `typed` in it; `setting` is what the setting option holds (for the value's choices).
pub fn suggest(focused: &str, typed: &str, setting: Option<&str>) -> Vec<(String, String)> {
    let typed_lower = typed.trim().to_ascii_lowercase();
    match focused {
        "setting" => SETTINGS
            .iter()
            .filter(|(name, about)| name.contains(&typed_lower) || about.to_ascii_lowercase().contains(&typed_lower))
            .map(|(name, about)| (format!("{name}: hides {about}"), name.to_string()))
            .collect(),
        "value" => match setting {
            Some("hidden_activity_types") => {
                // Completes the last item of a comma-separated list.
                let (done, last) = match typed_lower.rsplit_once(',') {
                    Some((done, last)) => (format!("{},", done.trim_end()), last.trim().to_owned()),
                    None => (String::new(), typed_lower.clone()),
                };
                let mut out: Vec<(String, String)> = ACTIVITY_TYPES
                    .iter()
                    .filter(|(name, _)| name.starts_with(&last) && !done.split(',').any(|d| d.trim() == *name))
                    .map(|(name, _)| {
                        let v = format!("{done}{name}");
                        (v.clone(), v)
                    })
                    .collect();
                if done.is_empty() {
                    out.push(("none (show every type)".into(), "none".into()));
                }
                out
            }
            Some("hidden_applications") => {
                let mut out = Vec::new();
                if !typed.trim().is_empty() {
                    out.push((typed.trim().chars().take(100).collect(), typed.trim().chars().take(100).collect()));
                }
                out.push((format!("none (show every application; at most {MAX_HIDDEN_APPLICATIONS}, comma-separated ids)"), "none".into()));
                out
            }
            _ => [("on (hide)", "on"), ("off (show)", "off")]
                .iter()
                .filter(|(_, v)| v.starts_with(&typed_lower) || typed_lower.is_empty())
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        },
        _ => Vec::new(),
    }
}

/// The change a subcommand asks for (`None` for `show`).
pub fn change_for(sub: &str, setting: Option<&str>, value: Option<&str>) -> Result<Option<PrivacyChange>, String> {
    Ok(match sub {
        "show" => None,
        "pause" => Some(PrivacyChange::Patch(PrivacyPatch { paused: Some(true), ..PrivacyPatch::default() })),
        "resume" => Some(PrivacyChange::Patch(PrivacyPatch { paused: Some(false), ..PrivacyPatch::default() })),
        "set" => {
            let (Some(setting), Some(value)) = (setting, value) else { return Err("Both a setting and a value are required.".into()) };
            Some(PrivacyChange::Patch(patch_for(setting, value)?))
        }
        _ => return Err("Unknown command.".into()),
    })
}

/// The reply once a change (or a read) went through; `before_paused` is whether the member
/// was paused before it (read for `pause` and `resume`).
pub fn answer(sub: &str, before_paused: Option<bool>, now: &PrivacySettings) -> String {
    match (sub, before_paused) {
        ("pause", Some(true)) => ALREADY_PAUSED.into(),
        ("pause", _) => PAUSED.into(),
        ("resume", Some(false)) => NOT_PAUSED.into(),
        ("resume", _) => RESUMED.into(),
        ("set", _) => format!("Your privacy settings have been updated.\n{}", describe(now)),
        _ => describe(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_and_suggestions() {
        assert_eq!(patch_for("hide_spotify", "On").unwrap().hide_spotify, Some(true));
        assert_eq!(patch_for("hide_kv", "show").unwrap().hide_kv, Some(false));
        assert!(patch_for("hide_kv", "maybe").unwrap_err().contains("`on` or `off`"));
        assert_eq!(patch_for("hidden_activity_types", "Playing, custom").unwrap().hidden_activity_types, Some(vec!["playing".into(), "custom".into()]));
        assert_eq!(patch_for("hidden_applications", "none").unwrap().hidden_applications, Some(vec![]));
        assert!(patch_for("paused", "on").is_err(), "pausing has its own commands");
        assert_eq!(suggest("setting", "spot", None), vec![("hide_spotify: hides Spotify".to_string(), "hide_spotify".to_string())]);
        assert_eq!(suggest("setting", "", None).len(), SETTINGS.len());
        assert_eq!(suggest("value", "o", Some("hide_kv")).len(), 2);
        assert_eq!(suggest("value", "of", Some("hide_kv")), vec![("off (show)".to_string(), "off".to_string())]);
        let types: Vec<String> = suggest("value", "playing, c", Some("hidden_activity_types")).into_iter().map(|(_, v)| v).collect();
        assert_eq!(types, ["playing,custom", "playing,competing"]);
    }
}
