//! Badge glyphs: one small drawing per public flag, plain SVG shapes on an 18 px disc.
//!
//! Every flag Lantern names has one (the deployed card crashed on flags without an image);
//! a flag added later that has no drawing yet gets the generic one, and unknown bits never
//! reach here (they have no name).

/// (disc colour, glyph drawn in white on a 0..18 box).
pub fn badge(name: &str) -> (&'static str, &'static str) {
    const SHIELD: &str = r##"<path d="M9 3.5 13.5 5.3V9c0 2.7-2 4.6-4.5 5.5C6.5 13.6 4.5 11.7 4.5 9V5.3Z" fill="#fff"/>"##;
    const DIAMOND: &str = r##"<path d="M9 3.8 14.2 9 9 14.2 3.8 9Z" fill="#fff"/>"##;
    const CHECK: &str = r##"<path d="M5.2 9.4 7.8 12 12.9 6.4" fill="none" stroke="#fff" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/>"##;
    const CODE: &str = r##"<path d="M7 5.8 3.9 9 7 12.2M11 5.8 14.1 9 11 12.2" fill="none" stroke="#fff" stroke-width="1.7" stroke-linecap="round" stroke-linejoin="round"/>"##;
    const STAR: &str = r##"<path d="M9 3.6 10.6 7.1 14.3 7.4 11.5 9.9 12.3 13.6 9 11.7 5.7 13.6 6.5 9.9 3.7 7.4 7.4 7.1Z" fill="#fff"/>"##;
    const HEART: &str = r##"<path d="M9 13.8C6.2 11.8 4.3 10 4.3 7.7 4.3 6.2 5.4 5 6.8 5 7.8 5 8.5 5.6 9 6.4 9.5 5.6 10.2 5 11.2 5 12.6 5 13.7 6.2 13.7 7.7 13.7 10 11.8 11.8 9 13.8Z" fill="#fff"/>"##;
    const BUG: &str = r##"<ellipse cx="9" cy="10" rx="3" ry="3.8" fill="#fff"/><circle cx="9" cy="5.6" r="1.8" fill="#fff"/><path d="M4.5 8h2M11.5 8h2M4.5 11.5h2M11.5 11.5h2" stroke="#fff" stroke-width="1.3" stroke-linecap="round"/>"##;
    const BOLT: &str = r##"<path d="M10.2 3.5 5.5 10H8.6L7.8 14.5 12.5 8H9.4Z" fill="#fff"/>"##;
    const PEOPLE: &str = r##"<circle cx="6.8" cy="7" r="2" fill="#fff"/><circle cx="11.4" cy="7" r="2" fill="#fff"/><path d="M3.6 13c0-2 1.4-3.3 3.2-3.3S10 11 10 13ZM8.2 13c0-2 1.4-3.3 3.2-3.3s3.2 1.3 3.2 3.3Z" fill="#fff"/>"##;
    const FLAME: &str = r##"<path d="M9 3.5C9.6 5.8 12.8 7.2 12.8 10.3 12.8 12.6 11.1 14.4 9 14.4S5.2 12.6 5.2 10.3C5.2 8.6 6.2 7.6 7 6.9 7 8.4 7.8 9.2 8.6 9.4 8.3 7.3 8.5 5.3 9 3.5Z" fill="#fff"/>"##;
    const TRIANGLE: &str = r##"<path d="M9 4 14.2 13.2H3.8Z" fill="#fff"/>"##;
    const BANG: &str = r##"<rect x="8" y="4" width="2" height="6.5" rx="1" fill="#fff"/><circle cx="9" cy="13" r="1.2" fill="#fff"/>"##;
    const KEY: &str = r##"<circle cx="7" cy="9" r="2.6" fill="none" stroke="#fff" stroke-width="1.6"/><path d="M9.6 9H14M12.5 9V11" stroke="#fff" stroke-width="1.6" stroke-linecap="round"/>"##;
    const HAMMER: &str = r##"<path d="M6.5 5.5 10.5 4 12 7.5 8 9Z" fill="#fff"/><path d="M9.2 8.4 12.6 14" stroke="#fff" stroke-width="1.8" stroke-linecap="round"/>"##;
    const DOT: &str = r##"<circle cx="9" cy="9" r="3" fill="#fff"/>"##;
    match name {
        "Staff" => ("#5865f2", SHIELD),
        "Partner" => ("#3e70dd", STAR),
        "Hypesquad" => ("#f8a532", FLAME),
        "BugHunterLevel1" => ("#3ba55c", BUG),
        "BugHunterLevel2" => ("#e6a020", BUG),
        "MFASMS" => ("#80848e", KEY),
        "PremiumPromoDismissed" => ("#80848e", DOT),
        "HypeSquadOnlineHouse1" => ("#9c84ef", SHIELD),
        "HypeSquadOnlineHouse2" => ("#f47b67", TRIANGLE),
        "HypeSquadOnlineHouse3" => ("#45ddc0", DIAMOND),
        "PremiumEarlySupporter" => ("#d65ad1", HEART),
        "TeamPseudoUser" => ("#949cf7", PEOPLE),
        "HasUnreadUrgentMessages" => ("#f0b232", BANG),
        "VerifiedBot" => ("#5865f2", CHECK),
        "VerifiedDeveloper" => ("#3e70dd", CODE),
        "CertifiedModerator" => ("#4e5d94", HAMMER),
        "BotHTTPInteractions" => ("#5865f2", BOLT),
        "Spammer" => ("#da373c", BANG),
        "DisablePremium" => ("#80848e", DOT),
        "ActiveDeveloper" => ("#23a55a", CODE),
        "Quarantined" => ("#da373c", BANG),
        "Collaborator" => ("#00a8fc", PEOPLE),
        "RestrictedCollaborator" => ("#80848e", PEOPLE),
        _ => ("#80848e", DOT),
    }
}

/// Flags in the order the card shows them: the badges people earn first, account-state flags
/// last (those are the first to fold into "+N" when space runs out).
pub fn ordered<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    const FIRST: [&str; 16] = [
        "Staff",
        "Partner",
        "CertifiedModerator",
        "Hypesquad",
        "HypeSquadOnlineHouse1",
        "HypeSquadOnlineHouse2",
        "HypeSquadOnlineHouse3",
        "BugHunterLevel2",
        "BugHunterLevel1",
        "ActiveDeveloper",
        "VerifiedDeveloper",
        "PremiumEarlySupporter",
        "VerifiedBot",
        "BotHTTPInteractions",
        "Collaborator",
        "RestrictedCollaborator",
    ];
    let rank = |f: &str| FIRST.iter().position(|x| *x == f).unwrap_or(FIRST.len());
    let mut out = flags.to_vec();
    out.sort_by_key(|f| rank(f));
    out
}

/// A readable label for a flag name (`BugHunterLevel1` → `Bug Hunter Level 1`).
pub fn label(name: &str) -> String {
    match name {
        "HypeSquadOnlineHouse1" => return "HypeSquad Bravery".into(),
        "HypeSquadOnlineHouse2" => return "HypeSquad Brilliance".into(),
        "HypeSquadOnlineHouse3" => return "HypeSquad Balance".into(),
        "Hypesquad" => return "HypeSquad Events".into(),
        "PremiumEarlySupporter" => return "Early Supporter".into(),
        "MFASMS" => return "SMS 2FA".into(),
        "BotHTTPInteractions" => return "HTTP Interactions".into(),
        _ => {}
    }
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if let Some(p) = prev {
            if (c.is_uppercase() && p.is_lowercase()) || (c.is_ascii_digit() && !p.is_ascii_digit()) {
                out.push(' ');
            }
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_named_flag_has_a_badge_and_label() {
        for (_, name) in crate::presence::flags::USER_FLAGS {
            let (colour, glyph) = super::badge(name);
            assert!(colour.starts_with('#') && glyph.starts_with('<'));
            assert!(!super::label(name).is_empty());
        }
        assert_eq!(super::label("BugHunterLevel1"), "Bug Hunter Level 1");
        assert_eq!(super::label("ActiveDeveloper"), "Active Developer");
    }
}
