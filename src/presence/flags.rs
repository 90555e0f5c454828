//! Public user flags: bit → the name Lantern reports (discord-api-types' `UserFlags` names).

/// Known public-flag bits in the order they are reported. Bits not listed are skipped.
pub const USER_FLAGS: &[(u64, &str)] = &[
    (1 << 0, "Staff"),
    (1 << 1, "Partner"),
    (1 << 2, "Hypesquad"),
    (1 << 3, "BugHunterLevel1"),
    (1 << 4, "MFASMS"),
    (1 << 5, "PremiumPromoDismissed"),
    (1 << 6, "HypeSquadOnlineHouse1"),
    (1 << 7, "HypeSquadOnlineHouse2"),
    (1 << 8, "HypeSquadOnlineHouse3"),
    (1 << 9, "PremiumEarlySupporter"),
    (1 << 10, "TeamPseudoUser"),
    (1 << 13, "HasUnreadUrgentMessages"),
    (1 << 14, "BugHunterLevel2"),
    (1 << 16, "VerifiedBot"),
    (1 << 17, "VerifiedDeveloper"),
    (1 << 18, "CertifiedModerator"),
    (1 << 19, "BotHTTPInteractions"),
    (1 << 20, "Spammer"),
    (1 << 21, "DisablePremium"),
    (1 << 22, "ActiveDeveloper"),
    (1 << 44, "Quarantined"),
    (1 << 50, "Collaborator"),
    (1 << 51, "RestrictedCollaborator"),
];

/// Names of the set, known bits of `bits`, in table order.
pub fn flag_names(bits: u64) -> Vec<&'static str> {
    USER_FLAGS.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| *name).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_in_order_unknown_skipped() {
        assert_eq!(super::flag_names(0), Vec::<&str>::new());
        assert_eq!(super::flag_names(1 | 64 | (1 << 22) | (1 << 11) | (1 << 44)), ["Staff", "HypeSquadOnlineHouse1", "ActiveDeveloper", "Quarantined"]);
    }
}
