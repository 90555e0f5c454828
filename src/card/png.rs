//! PNG output: the same SVG rasterised by resvg with the embedded fonts and one colour emoji
//! font (`card.emoji_font`, Noto Color Emoji by default), so the pixels do not depend on the
//! other fonts installed on the host. Text falls back to the emoji font for the characters
//! DejaVu lacks, so emoji are drawn in colour rather than as missing-glyph boxes.
//! CPU-bound: callers run it off the executor (the emoji font is read there, on first use).

use crate::card::text::{BOLD_TTF, REGULAR_TTF};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, OnceLock};

static EMOJI_FONT: OnceLock<PathBuf> = OnceLock::new();

/// Names the emoji font file; the first call wins (every shard passes the same config).
pub fn set_emoji_font(path: &std::path::Path) {
    let _ = EMOJI_FONT.set(path.to_owned());
}

/// Output pixels per SVG unit (2 = sharp on high-density screens).
pub const SCALE: f32 = 2.0;

static OPTIONS: LazyLock<resvg::usvg::Options<'static>> = LazyLock::new(|| {
    let emoji = EMOJI_FONT.get().cloned().unwrap_or_else(|| crate::config::DEFAULT_EMOJI_FONT.into());
    options(Some(&emoji))
});

/// The rendering options: the embedded faces, and the emoji font at `emoji` when it loads.
fn options(emoji: Option<&std::path::Path>) -> resvg::usvg::Options<'static> {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_font_data(REGULAR_TTF.to_vec());
    db.load_font_data(BOLD_TTF.to_vec());
    if let Some(path) = emoji {
        match std::fs::read(path) {
            Ok(data) => db.load_font_data(data),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "no emoji font: emoji in PNG cards show as boxes"),
        }
    }
    let mut opt = resvg::usvg::Options {
        font_family: "DejaVu Sans".to_owned(),
        fontdb: Arc::new(db),
        ..Default::default()
    };
    // Data URIs only: an href naming a file or anything else is ignored, never read.
    opt.image_href_resolver = resvg::usvg::ImageHrefResolver {
        resolve_data: resvg::usvg::ImageHrefResolver::default_data_resolver(),
        resolve_string: Box::new(|_, _| None),
    };
    opt
}

#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("the SVG does not parse: {0}")]
    Parse(String),
    #[error("cannot allocate the image")]
    Size,
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Rasterises `svg` at [`SCALE`] and encodes it as PNG.
pub fn render(svg: &str) -> Result<Vec<u8>, PngError> {
    render_with(svg, &OPTIONS)
}

fn render_with(svg: &str, options: &resvg::usvg::Options<'_>) -> Result<Vec<u8>, PngError> {
    let tree = resvg::usvg::Tree::from_str(svg, options).map_err(|e| PngError::Parse(e.to_string()))?;
    let size = tree.size();
    let (w, h) = ((size.width() * SCALE).ceil() as u32, (size.height() * SCALE).ceil() as u32);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h).ok_or(PngError::Size)?;
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(SCALE, SCALE), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| PngError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RGBA pixels of a PNG.
    fn pixels(png: &[u8]) -> Vec<[u8; 4]> {
        let tree = resvg::tiny_skia::Pixmap::decode_png(png).expect("a PNG");
        tree.pixels().iter().map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        }).collect()
    }

    fn colourful(px: &[[u8; 4]]) -> usize {
        px.iter().filter(|p| p[3] > 128 && p[0].max(p[1]).max(p[2]) - p[0].min(p[1]).min(p[2]) > 80).count()
    }

    #[test]
    fn emoji_are_drawn_from_the_emoji_font_not_as_missing_glyph_boxes() {
        let emoji = std::path::Path::new(crate::config::DEFAULT_EMOJI_FONT);
        assert!(emoji.exists(), "install fonts-noto-color-emoji (see .ci/run)");
        // (Symbols DejaVu has, such as ❤ or ✨, are drawn from DejaVu, in the text colour.)
        for e in ["🎉", "🌙", "👩\u{200D}💻", "🇫🇷", "🦀"] {
            let svg = format!(r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="24"><text x="2" y="18" font-size="16" fill="#ffffff">{e}</text></svg>"##);
            let with = pixels(&render_with(&svg, &options(Some(emoji))).unwrap());
            // The same text without the emoji font: DejaVu's missing-glyph box, in the text colour.
            let boxed = pixels(&render_with(&svg, &options(None)).unwrap());
            assert!(boxed.iter().any(|p| p[3] > 0), "the box is drawn");
            assert_eq!(colourful(&boxed), 0, "the box is plain white");
            assert!(with != boxed, "{e} is the missing-glyph box");
            assert!(colourful(&with) > 20, "{e} is drawn in colour ({} pixels)", colourful(&with));
        }
    }
}
