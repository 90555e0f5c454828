//! Generated CDN images: small PNGs whose colours derive from the requested path, so each avatar,
//! emoji or asset looks different but is stable. The encoder is the minimal PNG subset (8-bit
//! RGB, filter 0, one IDAT) built on flate2's zlib and CRC.

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};
use std::io::Write;

/// Side length of every generated image.
pub const SIZE: u32 = 64;

/// FNV-1a, for a stable colour per path.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A 64×64 PNG for `path`: a diagonal gradient between two colours taken from the path's hash,
/// with a disc in the middle.
pub fn png_for(path: &str) -> Vec<u8> {
    let h = fnv(path);
    let a = [(h >> 16) as u8, (h >> 8) as u8, h as u8];
    let b = [(h >> 40) as u8, (h >> 32) as u8, (h >> 24) as u8];
    let mut raw = Vec::with_capacity(((SIZE * 3 + 1) * SIZE) as usize);
    let c = SIZE as i32 / 2;
    for y in 0..SIZE {
        raw.push(0); // filter type None
        for x in 0..SIZE {
            let (dx, dy) = (x as i32 - c, y as i32 - c);
            if dx * dx + dy * dy < (c / 2) * (c / 2) {
                raw.extend_from_slice(&[255 - a[0], 255 - a[1], 255 - a[2]]);
            } else {
                let t = x + y;
                for i in 0..3 {
                    let v = (a[i] as u32 * (2 * SIZE - t) + b[i] as u32 * t) / (2 * SIZE);
                    raw.push(v as u8);
                }
            }
        }
    }
    encode_rgb(SIZE, SIZE, &raw)
}

/// Encodes filtered scanlines (each prefixed with its filter byte) as an RGB PNG.
fn encode_rgb(width: u32, height: u32, scanlines: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // bit depth 8, colour type RGB, deflate, filter 0, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(scanlines)
        .expect("writing to a Vec cannot fail");
    chunk(
        &mut out,
        b"IDAT",
        &z.finish().expect("writing to a Vec cannot fail"),
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}
