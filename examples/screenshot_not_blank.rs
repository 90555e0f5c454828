//! Used by `.ci/card-screenshots`: exits non-zero unless each PNG given on the command line
//! shows a card (many colours: avatar, text, badges) rather than a blank page or a
//! broken-image icon.

fn colours(path: &str) -> Result<usize, String> {
    let body = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut reader = png::Decoder::new(&body[..]).read_info().map_err(|e| format!("{path}: not a PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("{path}: {e}"))?;
    let channels = info.color_type.samples();
    let distinct: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    Ok(distinct.len())
}

fn main() -> std::process::ExitCode {
    let mut ok = true;
    for path in std::env::args().skip(1) {
        match colours(&path) {
            Ok(n) if n > 64 => println!("{path}: {n} colours"),
            Ok(n) => {
                eprintln!("{path}: only {n} colours: blank or broken");
                ok = false;
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
