//! Storage tokens: generation, encryption at rest, and constant-time checks.
//!
//! A token is `base64("<user id>:<32 hex chars>")` (16 random bytes), as Lantern makes them. It
//! is stored encrypted with AES-256-GCM under `KV_TOKEN_ENCRYPTION_SECRET` (64 hex characters =
//! 32 bytes) with a fresh random 16-byte IV and no AAD, Lantern's parameters, so that
//! `/storage get token` can show it again. The sealed form is `iv(16) ‖ ciphertext ‖ tag(16)`.

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use rand::RngCore as _;
use std::fmt;
use subtle::ConstantTimeEq as _;

use crate::discord::Snowflake;

/// AES-256-GCM with Lantern's 16-byte IV.
type Cipher = AesGcm<Aes256, U16>;

const IV_LEN: usize = 16;
const TAG_LEN: usize = 16;

pub use crate::config::{generate_secret, parse_secret, SecretError, SECRET_ENV};
use crate::config::hex_lower as hex;

/// A plaintext token held in memory. Never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new random token for `user`.
    pub fn generate(user: Snowflake) -> Token {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        Token(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", hex(&raw))))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time independent of where they differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

/// The user a token names (`<user id>` in its base64 text), or `None` for anything that is not
/// a token's shape. Naming a user proves nothing: the owner shard still compares the token.
pub fn token_owner(given: &[u8]) -> Option<Snowflake> {
    let text = base64::engine::general_purpose::STANDARD.decode(given).ok()?;
    let (id, rest) = std::str::from_utf8(&text).ok()?.split_once(':')?;
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Snowflake::parse_strict(id)
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Encrypts and decrypts tokens under the configured key.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Cipher,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the stored token cannot be decrypted (wrong KV_TOKEN_ENCRYPTION_SECRET or a damaged record)")]
    Open,
    #[error("token encryption failed")]
    Seal,
}

impl TokenCipher {
    pub fn from_hex(secret: &str) -> Result<TokenCipher, SecretError> {
        let key = parse_secret(secret)?;
        Ok(TokenCipher { cipher: Cipher::new(&key.into()) })
    }

    /// `iv ‖ ciphertext ‖ tag` with a fresh random IV.
    pub fn seal(&self, token: &Token) -> Result<Vec<u8>, SealError> {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        let nonce: Nonce<U16> = iv.into();
        let ct = self.cipher.encrypt(&nonce, token.0.as_bytes()).map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(IV_LEN + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Token, SealError> {
        if sealed.len() < IV_LEN + TAG_LEN {
            return Err(SealError::Open);
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&sealed[..IV_LEN]);
        let nonce: Nonce<U16> = iv.into();
        let pt = self.cipher.decrypt(&nonce, &sealed[IV_LEN..]).map_err(|_| SealError::Open)?;
        String::from_utf8(pt).map(Token).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_64_hex_characters() {
        assert!(parse_secret(&"ab".repeat(32)).is_ok());
        assert_eq!(parse_secret("abc"), Err(SecretError::Length(3)));
        assert_eq!(parse_secret(&"zz".repeat(32)), Err(SecretError::NotHex));
        assert_eq!(generate_secret().len(), 64);
        assert!(parse_secret(&generate_secret()).is_ok());
    }

    #[test]
    fn tokens_embed_the_user_and_round_trip_encrypted() {
        let user = Snowflake(1_300_000_000_000_000_001);
        let token = Token::generate(user);
        let raw = base64::engine::general_purpose::STANDARD.decode(token.expose()).unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (id, rand) = raw.split_once(':').unwrap();
        assert_eq!(id, user.to_string());
        assert_eq!(rand.len(), 32);
        assert_ne!(Token::generate(user), token);
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");

        let cipher = TokenCipher::from_hex(&generate_secret()).unwrap();
        let sealed = cipher.seal(&token).unwrap();
        assert_eq!(sealed.len(), 16 + token.expose().len() + 16);
        assert_eq!(cipher.open(&sealed).unwrap(), token);
        assert_ne!(cipher.seal(&token).unwrap(), sealed, "fresh IV each time");
        let other = TokenCipher::from_hex(&generate_secret()).unwrap();
        assert_eq!(other.open(&sealed), Err(SealError::Open));
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert_eq!(cipher.open(&damaged), Err(SealError::Open));

        assert!(token.matches(token.expose().as_bytes()));
        assert!(!token.matches(b"nope"));
        assert!(!token.matches(&token.expose().as_bytes()[1..]));
        assert_eq!(token_owner(token.expose().as_bytes()), Some(user));
        assert_eq!(token_owner(b"not base64!"), None);
        let short = base64::engine::general_purpose::STANDARD.encode(format!("{user}:abc"));
        assert_eq!(token_owner(short.as_bytes()), None);
    }
}
