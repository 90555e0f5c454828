//! The avatar a user's quicklink (`/<id>.<ext>`) serves: which file on Discord's CDN.
//!
//! As Lanyard does: the user's avatar at 1024 px in the requested format, except that an avatar
//! that is not animated has no GIF (it is served as JPEG); a user without an avatar gets
//! Discord's default avatar for them, a PNG.

use crate::discord::User;
use crate::presence::user_object::default_avatar_url;

/// The CDN URL for `user`'s avatar as `ext` (`png`, `gif`, `webp` or `jpg`).
pub fn quicklink_url(user: &User, ext: &str) -> String {
    match user.avatar.as_deref() {
        Some(hash) => {
            let ext = if ext == "gif" && !hash.starts_with("a_") { "jpg" } else { ext };
            format!("https://cdn.discordapp.com/avatars/{}/{hash}.{ext}?size=1024", user.id)
        }
        None => default_avatar_url(user.id, &user.discriminator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::Snowflake;

    #[test]
    fn gif_only_for_animated_avatars_and_the_default_avatar_without_one() {
        let mut user = User { id: Snowflake(94490510688792576), avatar: Some("abc".into()), ..User::default() };
        assert_eq!(quicklink_url(&user, "gif"), "https://cdn.discordapp.com/avatars/94490510688792576/abc.jpg?size=1024");
        assert_eq!(quicklink_url(&user, "webp"), "https://cdn.discordapp.com/avatars/94490510688792576/abc.webp?size=1024");
        user.avatar = Some("a_abc".into());
        assert_eq!(quicklink_url(&user, "gif"), "https://cdn.discordapp.com/avatars/94490510688792576/a_abc.gif?size=1024");
        user.avatar = None;
        assert_eq!(quicklink_url(&user, "png"), format!("https://cdn.discordapp.com/embed/avatars/{}.png", (94490510688792576u64 >> 22) % 6));
    }
}
