//! RFC 6455 framing on the server side: the inbound frame parser (masking, fragmentation,
//! control frames, the size limit, UTF-8, close codes, and RFC 7692's compressed messages).
//! Outbound frames are built in [`crate::fanout::frames`].
//!
//! The parser keeps no buffer while a connection is idle: bytes that do not yet make a whole
//! frame are kept until the rest arrives, and a fragmented message's parts until its last one;
//! both are freed as soon as they are used.

pub use flate2::Decompress;
use flate2::{FlushDecompress, Status};

pub use crate::fanout::frames::{close_frame, frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV23: u8 = 0x30;

/// One complete inbound message or control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A text message, valid UTF-8 (inflated when it was compressed).
    Text(String),
    /// A binary message (its bytes are not kept).
    Binary,
    /// A ping; the pong carries the same payload.
    Ping(Vec<u8>),
    Pong,
    /// A close frame: its code (`None` when it had no payload).
    Close(Option<u16>),
}

/// Why the client's input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Broke RFC 6455 (or RFC 7692): unmasked frame, reserved bits or opcodes, a fragmented or
    /// oversized control frame, a continuation with nothing to continue, a data frame inside a
    /// fragmented message, invalid UTF-8 in text or a close reason, an invalid close code, or
    /// compressed data that does not inflate.
    Protocol,
    /// A frame, a message or an inflated message larger than the limit.
    TooLarge,
}

/// Whether a close frame may carry `code` (RFC 6455 §7.4; 1012–1014 are registered since).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Inbound state of one connection: nothing at all (one pointer) while it is idle.
#[derive(Default)]
pub struct Reader(Option<Box<Frames>>);

impl Reader {
    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0.get_or_insert_with(Box::default).feed(bytes);
        }
    }

    /// Bytes held (parsed or not) for this connection.
    pub fn held(&self) -> usize {
        self.0.as_ref().map_or(0, |f| f.held())
    }

    /// Parses the next message or control frame. `Ok(None)` when more bytes are needed (and
    /// then whatever was used is freed). `max` bounds each message, inflated; `inflater` is
    /// the connection's when it negotiated permessage-deflate.
    pub fn next(&mut self, max: usize, inflater: Option<&mut Decompress>) -> Result<Option<Inbound>, WireError> {
        let Some(frames) = self.0.as_mut() else { return Ok(None) };
        let next = frames.next(max, inflater);
        if frames.held() == 0 && frames.open.is_none() {
            self.0 = None;
        }
        next
    }
}

/// The parser's state while bytes or a fragmented message are pending.
#[derive(Default)]
struct Frames {
    /// Received bytes not yet parsed (empty, with no allocation, while idle).
    buf: Vec<u8>,
    /// Where parsing resumes in `buf`.
    pos: usize,
    /// The payload of an unfinished fragmented message.
    message: Vec<u8>,
    /// The opcode of the unfinished fragmented message, and whether it is compressed.
    open: Option<(u8, bool)>,
}

impl Frames {
    fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn held(&self) -> usize {
        self.buf.capacity() + self.message.capacity()
    }

    fn next(&mut self, max: usize, mut inflater: Option<&mut Decompress>) -> Result<Option<Inbound>, WireError> {
        loop {
            let rest = &self.buf[self.pos..];
            if rest.len() < 2 {
                self.compact();
                return Ok(None);
            }
            let (b0, b1) = (rest[0], rest[1]);
            let fin = b0 & FIN != 0;
            let rsv1 = b0 & RSV1 != 0;
            let opcode = b0 & 0x0f;
            if b0 & RSV23 != 0 || b1 & 0x80 == 0 {
                return Err(WireError::Protocol);
            }
            let control = opcode & 0x8 != 0;
            match opcode {
                OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
                _ => return Err(WireError::Protocol),
            }
            let (len, at) = match b1 & 0x7f {
                126 => {
                    if rest.len() < 4 {
                        self.compact();
                        return Ok(None);
                    }
                    (u16::from_be_bytes([rest[2], rest[3]]) as u64, 4)
                }
                127 => {
                    if rest.len() < 10 {
                        self.compact();
                        return Ok(None);
                    }
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&rest[2..10]);
                    let l = u64::from_be_bytes(l);
                    if l >> 63 != 0 {
                        return Err(WireError::Protocol);
                    }
                    (l, 10)
                }
                n => (n as u64, 2),
            };
            if control && (!fin || len > 125 || rsv1) {
                return Err(WireError::Protocol);
            }
            match (opcode, self.open) {
                (OP_CONTINUATION, None) => return Err(WireError::Protocol),
                (OP_CONTINUATION, Some(_)) if rsv1 => return Err(WireError::Protocol),
                (OP_TEXT | OP_BINARY, Some(_)) => return Err(WireError::Protocol),
                (OP_TEXT | OP_BINARY, None) if rsv1 && inflater.is_none() => return Err(WireError::Protocol),
                _ => {}
            }
            // A message's compressed size is bounded by the limit too.
            if !control && len as usize > max.saturating_sub(self.message.len()) {
                return Err(WireError::TooLarge);
            }
            let len = len as usize;
            if rest.len() < at + 4 + len {
                self.compact();
                self.buf.reserve(at + 4 + len - (self.buf.len() - self.pos));
                return Ok(None);
            }
            let mask = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
            let start = self.pos + at + 4;
            self.pos = start + len;
            let payload = &mut self.buf[start..start + len];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
            let payload = &self.buf[start..start + len];
            match opcode {
                OP_PING => return Ok(Some(Inbound::Ping(payload.to_vec()))),
                OP_PONG => return Ok(Some(Inbound::Pong)),
                OP_CLOSE => return close(payload).map(Some),
                _ => {}
            }
            let (op, compressed) = self.open.unwrap_or((opcode, rsv1));
            if !fin {
                self.message.extend_from_slice(payload);
                self.open = Some((op, compressed));
                continue;
            }
            let whole: Vec<u8> = if self.open.take().is_some() {
                self.message.extend_from_slice(payload);
                std::mem::take(&mut self.message)
            } else {
                payload.to_vec()
            };
            let whole = match (compressed, inflater.as_deref_mut()) {
                (true, Some(z)) => inflate(z, &whole, max)?,
                _ => whole,
            };
            if op == OP_BINARY {
                return Ok(Some(Inbound::Binary));
            }
            return String::from_utf8(whole).map(|t| Some(Inbound::Text(t))).map_err(|_| WireError::Protocol);
        }
    }

    /// Drops what was parsed; frees the buffer when nothing is left.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
        }
        self.pos = 0;
    }
}

fn close(payload: &[u8]) -> Result<Inbound, WireError> {
    match payload.len() {
        0 => Ok(Inbound::Close(None)),
        1 => Err(WireError::Protocol),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code_allowed(code) || std::str::from_utf8(&payload[2..]).is_err() {
                return Err(WireError::Protocol);
            }
            Ok(Inbound::Close(Some(code)))
        }
    }
}

/// Inflates one compressed message (RFC 7692 §7.2.2: the sender dropped the trailing
/// `00 00 ff ff`), refusing output past `max`. Each message is inflated on its own (the client
/// was told `client_no_context_takeover`).
pub fn inflate(z: &mut Decompress, data: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    z.reset(false);
    let mut input = Vec::with_capacity(data.len() + 4);
    input.extend_from_slice(data);
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity((data.len() * 4 + 64).min(max + 1));
    let mut consumed = 0usize;
    loop {
        let (before_in, before_out) = (z.total_in(), z.total_out());
        let status = z.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync).map_err(|_| WireError::Protocol)?;
        consumed += (z.total_in() - before_in) as usize;
        if out.len() > max {
            return Err(WireError::TooLarge);
        }
        if status == Status::StreamEnd || (consumed == input.len() && out.len() < out.capacity()) {
            return Ok(out);
        }
        if out.len() == out.capacity() {
            out.reserve(out.len().max(256).min(max + 1 - out.len()));
        } else if z.total_in() == before_in && z.total_out() == before_out {
            return Err(WireError::Protocol);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![b0];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= u16::MAX as usize {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn parse(bytes: &[u8]) -> Vec<Result<Inbound, WireError>> {
        let mut r = Reader::default();
        r.feed(bytes);
        let mut out = Vec::new();
        loop {
            match r.next(100, None) {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[test]
    fn fragments_and_interleaved_control_frames() {
        let mut bytes = masked(0x01, b"he");
        bytes.extend(masked(0x89, b"p"));
        bytes.extend(masked(0x80, b"llo"));
        assert_eq!(parse(&bytes), vec![Ok(Inbound::Ping(b"p".to_vec())), Ok(Inbound::Text("hello".into()))]);
    }

    #[test]
    fn a_frame_split_anywhere_parses_the_same_and_leaves_nothing_held() {
        let f = masked(0x81, b"{\"op\":4}");
        for cut in 0..f.len() {
            let mut r = Reader::default();
            r.feed(&f[..cut]);
            assert_eq!(r.next(100, None), Ok(None));
            r.feed(&f[cut..]);
            assert_eq!(r.next(100, None), Ok(Some(Inbound::Text("{\"op\":4}".into()))));
            assert_eq!(r.next(100, None), Ok(None));
            assert_eq!(r.held(), 0);
        }
    }

    #[test]
    fn a_message_stays_open_across_reads_even_with_an_empty_first_fragment() {
        // Each fragment arrives in a read of its own, so the parser is idle in between.
        let mut r = Reader::default();
        r.feed(&masked(0x01, b""));
        assert_eq!(r.next(100, None), Ok(None));
        r.feed(&masked(0x00, b"he"));
        assert_eq!(r.next(100, None), Ok(None));
        assert!(r.held() > 0, "the first part is kept");
        r.feed(&masked(0x80, b"llo"));
        assert_eq!(r.next(100, None), Ok(Some(Inbound::Text("hello".into()))));
        assert_eq!(r.next(100, None), Ok(None));
        assert_eq!(r.held(), 0);
        // A continuation once the message is done has nothing to continue.
        r.feed(&masked(0x80, b"x"));
        assert_eq!(r.next(100, None), Err(WireError::Protocol));
    }

    #[test]
    fn violations() {
        let unmasked = [0x81u8, 1, b'a'];
        assert_eq!(parse(&unmasked), vec![Err(WireError::Protocol)]);
        assert_eq!(parse(&masked(0xc1, b"a")), vec![Err(WireError::Protocol)], "RSV1 without deflate");
        assert_eq!(parse(&masked(0xa1, b"a")), vec![Err(WireError::Protocol)], "RSV2");
        assert_eq!(parse(&masked(0x83, b"a")), vec![Err(WireError::Protocol)], "reserved data opcode");
        assert_eq!(parse(&masked(0x8b, b"a")), vec![Err(WireError::Protocol)], "reserved control opcode");
        assert_eq!(parse(&masked(0x09, b"a")), vec![Err(WireError::Protocol)], "fragmented ping");
        assert_eq!(parse(&masked(0x89, &[0; 126])), vec![Err(WireError::Protocol)], "long ping");
        assert_eq!(parse(&masked(0x80, b"a")), vec![Err(WireError::Protocol)], "nothing to continue");
        let mut two = masked(0x01, b"a");
        two.extend(masked(0x81, b"b"));
        assert_eq!(parse(&two), vec![Err(WireError::Protocol)], "new message inside a fragmented one");
        assert_eq!(parse(&masked(0x81, &[0xff, 0xfe])), vec![Err(WireError::Protocol)], "bad UTF-8");
        assert_eq!(parse(&masked(0x88, &[3])), vec![Err(WireError::Protocol)], "one-byte close");
        assert_eq!(parse(&masked(0x88, &1005u16.to_be_bytes())), vec![Err(WireError::Protocol)], "close code 1005");
        assert_eq!(parse(&masked(0x88, &[0x03, 0xe8, 0xff])), vec![Err(WireError::Protocol)], "bad close reason");
        assert_eq!(parse(&masked(0x88, &4000u16.to_be_bytes())), vec![Ok(Inbound::Close(Some(4000)))]);
        assert_eq!(parse(&masked(0x88, b"")), vec![Ok(Inbound::Close(None))]);
        assert_eq!(parse(&masked(0x81, &[b'a'; 101])), vec![Err(WireError::TooLarge)]);
        // The limit is known from the header alone: no payload needs to arrive.
        assert_eq!(parse(&masked(0x81, &[b'a'; 300])[..8]), vec![Err(WireError::TooLarge)]);
        let mut long = masked(0x01, &[b'a'; 60]);
        long.extend(masked(0x80, &[b'a'; 60]));
        assert_eq!(parse(&long), vec![Err(WireError::TooLarge)], "fragments over the limit");
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut z = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_inflate_within_the_limit() {
        let mut z = Decompress::new(false);
        let mut r = Reader::default();
        r.feed(&masked(0xc1, &deflate(b"{\"op\":4}")));
        assert_eq!(r.next(100, Some(&mut z)), Ok(Some(Inbound::Text("{\"op\":4}".into()))));
        // Fragmented and compressed: RSV1 on the first frame only.
        let c = deflate(b"hello hello hello");
        let mut bytes = masked(0x41, &c[..3]);
        bytes.extend(masked(0x80, &c[3..]));
        r.feed(&bytes);
        assert_eq!(r.next(100, Some(&mut z)), Ok(Some(Inbound::Text("hello hello hello".into()))));
        // A small frame that inflates past the limit.
        let bomb = deflate(&[b'a'; 100_000]);
        assert!(bomb.len() < 1000, "{}", bomb.len());
        r.feed(&masked(0xc1, &bomb));
        assert_eq!(r.next(1000, Some(&mut z)), Err(WireError::TooLarge));
        let mut r = Reader::default();
        r.feed(&masked(0xc1, &deflate(&[b'a'; 100])));
        assert_eq!(r.next(100, Some(&mut z)), Ok(Some(Inbound::Text("a".repeat(100)))));
        let mut r = Reader::default();
        r.feed(&masked(0xc1, b"\xff\xff\xff"));
        assert_eq!(r.next(100, Some(&mut z)), Err(WireError::Protocol));
    }
}
