//! Writing JSON by hand for the parts of the user object rebuilt on every presence change.
//!
//! serde_json escapes each struct key and each string byte by byte through a lookup table;
//! here keys are literal bytes and a string is checked for anything to escape in one pass that
//! the compiler vectorises, then copied whole. The output is byte for byte what serde_json
//! writes (the tests compare both over every byte value).

/// Appends `s` as a JSON string.
pub fn str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    contents(out, s.as_bytes());
    out.push(b'"');
}

/// Appends the concatenation of `parts` as one JSON string, without concatenating them first
/// (an asset's image URL is a fixed prefix and the asset's own text).
pub fn pieces(out: &mut Vec<u8>, parts: &[&str]) {
    out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
    out.push(b'"');
    for part in parts {
        contents(out, part.as_bytes());
    }
    out.push(b'"');
}

/// A JSON string's contents: `bytes`, escaped where they must be.
#[inline(always)]
fn contents(out: &mut Vec<u8>, bytes: &[u8]) {
    // No early exit, so that the check runs over whole vectors of bytes.
    let needs_escape = bytes.iter().fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if needs_escape {
        escape_into(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
}

/// `s`, or `null`.
pub fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// An integer.
pub fn int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An integer, or `null`.
pub fn opt_int(out: &mut Vec<u8>, n: Option<i64>) {
    match n {
        Some(n) => int(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// An unsigned integer as a JSON string (how Discord's snowflakes are written), or `null`.
pub fn opt_id(out: &mut Vec<u8>, id: Option<u64>) {
    match id {
        Some(id) => {
            out.push(b'"');
            out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// `true` or `false`.
pub fn bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// serde_json's escapes: the two-character forms where JSON has one, `\u00XX` (lowercase hex)
/// for the other control characters; everything else as it is.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for b in 0u8..=0x7f {
            let s = format!("a{}b", b as char);
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "byte {b:#04x}");
        }
        for s in ["", "plain", "ünïcødé 🎵", "\"quoted\" \\ back", "tab\there\nnew\u{1f}\u{7f}", "\u{0}\u{0}", "end\\"] {
            assert_eq!(ours(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn pieces_are_written_as_their_concatenation() {
        let parts = ["https://x/", "a\"b", "", "\n\u{1}", ".png"];
        let mut out = Vec::new();
        pieces(&mut out, &parts);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&parts.concat()).unwrap());
    }

    #[test]
    fn numbers_and_literals() {
        let mut out = Vec::new();
        opt_int(&mut out, Some(-42));
        out.push(b',');
        opt_int(&mut out, None);
        out.push(b',');
        opt_id(&mut out, Some(u64::MAX));
        out.push(b',');
        opt_id(&mut out, None);
        out.push(b',');
        bool(&mut out, true);
        out.push(b',');
        opt_str(&mut out, None);
        assert_eq!(String::from_utf8(out).unwrap(), r#"-42,null,"18446744073709551615",null,true,null"#);
    }
}
