//! PNG output: the same SVG rasterised by resvg with only the embedded fonts, so the pixels do
//! not depend on the fonts installed on the host. CPU-bound: callers run it off the executor.

use crate::card::text::{BOLD_TTF, REGULAR_TTF};
use std::sync::{Arc, LazyLock};

/// Output pixels per SVG unit (2 = sharp on high-density screens).
pub const SCALE: f32 = 2.0;

static OPTIONS: LazyLock<resvg::usvg::Options<'static>> = LazyLock::new(|| {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_font_data(REGULAR_TTF.to_vec());
    db.load_font_data(BOLD_TTF.to_vec());
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
});

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
    let tree = resvg::usvg::Tree::from_str(svg, &OPTIONS).map_err(|e| PngError::Parse(e.to_string()))?;
    let size = tree.size();
    let (w, h) = ((size.width() * SCALE).ceil() as u32, (size.height() * SCALE).ceil() as u32);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h).ok_or(PngError::Size)?;
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(SCALE, SCALE), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| PngError::Encode(e.to_string()))
}
