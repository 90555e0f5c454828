//! Text for the card: the embedded font, width measurement, XML escaping and ellipsis.
//!
//! Widths are measured with the same DejaVu Sans faces resvg draws the PNG with, so text is
//! shortened exactly where it would overflow there. Browsers that lack DejaVu fall back to
//! Verdana or a system sans-serif, which are narrower, so the shortened text fits there too.

use std::sync::LazyLock;

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/LICENSE`).
pub static REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub static BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// The font stack written into the SVG: the embedded face first, then look-alikes.
pub const FONT_FAMILY: &str = "'DejaVu Sans', Verdana, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";

struct Metrics {
    units_per_em: f32,
    /// Advance of each char below U+0800 (the common scripts), in font units; 0 = not in the font.
    ascii: Vec<u16>,
    face: ttf_parser::Face<'static>,
}

impl Metrics {
    fn new(data: &'static [u8]) -> Metrics {
        let face = ttf_parser::Face::parse(data, 0).expect("the embedded font parses");
        let ascii = (0u32..0x800)
            .map(|c| char::from_u32(c).map(|ch| advance(&face, ch)).unwrap_or(0))
            .collect();
        Metrics { units_per_em: face.units_per_em() as f32, ascii, face }
    }

    fn advance(&self, c: char) -> Option<f32> {
        let units = if (c as u32) < 0x800 { self.ascii[c as usize] } else { advance(&self.face, c) };
        (units > 0).then_some(units as f32 / self.units_per_em)
    }
}

fn advance(face: &ttf_parser::Face<'_>, c: char) -> u16 {
    face.glyph_index(c).and_then(|g| face.glyph_hor_advance(g)).unwrap_or(0)
}

static REGULAR: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(REGULAR_TTF));
static BOLD: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(BOLD_TTF));

/// Characters that take no room of their own (joiners, variation selectors, combining marks).
fn zero_width(c: char) -> bool {
    matches!(c as u32, 0x200B..=0x200F | 0xFE00..=0xFE0F | 0x0300..=0x036F | 0x20D0..=0x20FF | 0xE0020..=0xE007F)
}

/// Emoji the font lacks are drawn from the emoji font, whose advance is 1.25 em.
fn emoji(c: char) -> bool {
    matches!(c as u32, 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF)
}

/// Width in pixels of `text` at `size` px. Characters missing from the font count as one em
/// (most CJK), or 1.25 em for emoji, as wide as the fallbacks draw them.
pub fn width(text: &str, size: f32, bold: bool) -> f32 {
    let m: &Metrics = if bold { &BOLD } else { &REGULAR };
    text.chars()
        .map(|c| if zero_width(c) || c == '\u{200D}' { 0.0 } else { m.advance(c).unwrap_or(if emoji(c) { 1.25 } else { 1.0 }) })
        .sum::<f32>()
        * size
}

/// `text` as it may appear in the card: XML-invalid and control characters removed, line breaks
/// and tabs turned into spaces, runs of spaces collapsed, trimmed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}' => ' ',
            // Not allowed in XML 1.0, or bidi controls that could reorder the rest of the card.
            c if (c as u32) < 0x20 || matches!(c as u32, 0x7F..=0x9F | 0xFFFE | 0xFFFF | 0x202A..=0x202E | 0x2066..=0x2069) => continue,
            c => c,
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// Cleans `text` and shortens it with "…" so that it is at most `max` px wide.
pub fn fit(text: &str, size: f32, bold: bool, max: f32) -> String {
    let text = clean(text);
    if width(&text, size, bold) <= max {
        return text;
    }
    let budget = max - width("…", size, bold);
    let mut used = 0.0;
    let mut out = String::new();
    for c in text.chars() {
        let w = width(c.encode_utf8(&mut [0; 4]), size, bold);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(c);
    }
    let kept = out.trim_end().len();
    out.truncate(kept);
    out.push('…');
    out
}

/// Word-wraps `text` into at most `lines` lines of at most `max` px; the last one ends in "…"
/// when text is left over.
pub fn wrap(text: &str, size: f32, bold: bool, max: f32, lines: usize) -> Vec<String> {
    let text = clean(text);
    let mut out: Vec<String> = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() && out.len() < lines {
        if out.len() + 1 == lines || width(rest, size, bold) <= max {
            out.push(fit(rest, size, bold, max));
            break;
        }
        // The longest prefix ending at a space that fits; a single long word is cut.
        let mut cut = None;
        for (i, c) in rest.char_indices() {
            if c == ' ' {
                if width(&rest[..i], size, bold) > max {
                    break;
                }
                cut = Some(i);
            }
        }
        match cut {
            Some(i) => {
                out.push(rest[..i].to_owned());
                rest = rest[i + 1..].trim_start();
            }
            None => {
                let line = fit(rest, size, bold, max);
                let taken = line.trim_end_matches('…').len();
                out.push(line);
                rest = rest[taken..].trim_start();
                if out.len() < lines {
                    // The word went on: continue it on the next line without the ellipsis.
                    if let Some(l) = out.last_mut() {
                        l.pop();
                    }
                }
            }
        }
    }
    out
}

/// Escapes text for an XML text node or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Characters counted the way the contract counts them (validator.js `isLength`): one per
/// code point, variation selectors not counted.
pub fn char_count(text: &str) -> usize {
    text.chars().filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_fits() {
        assert!(width("WWWW", 16.0, false) > width("iiii", 16.0, false));
        assert!(width("abc", 16.0, true) > width("abc", 16.0, false));
        let long = "a very long name that cannot possibly fit in the space available";
        let f = fit(long, 16.0, false, 100.0);
        assert!(f.ends_with('…'), "{f}");
        assert!(width(&f, 16.0, false) <= 100.0);
        assert_eq!(fit("short", 16.0, false, 100.0), "short");
    }

    #[test]
    fn cleans_and_escapes() {
        assert_eq!(clean("  a\n\tb\u{0}\u{1b}c  \u{202e}d "), "a bc d");
        assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(char_count("❤\u{FE0F}ab"), 3);
    }

    #[test]
    fn wraps_with_ellipsis_on_the_last_line() {
        let lines = wrap("one two three four five six seven eight nine ten", 13.0, false, 80.0, 2);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with('…'));
        assert!(lines.iter().all(|l| width(l, 13.0, false) <= 80.0));
        assert_eq!(wrap("fits", 13.0, false, 80.0, 2), vec!["fits".to_string()]);
    }
}
