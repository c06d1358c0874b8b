//! Splits the byte stream of a QMP connection into JSON texts, as QEMU's JSON streamer does:
//! a message ends where its outermost object or array closes, or where a top-level scalar ends.
//! Messages are bounded in size; a message over the bound is dropped with an error and the
//! splitter starts afresh.

/// The largest message accepted.
pub const MAX_MESSAGE: usize = 1 << 20;

/// What the splitter produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete JSON text (not yet parsed).
    Message(Vec<u8>),
    /// A message was longer than [`MAX_MESSAGE`] and was dropped.
    TooLong,
    /// A closing bracket with nothing open.
    Unbalanced,
}

/// Incremental splitter for one connection.
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Inside a top-level scalar (number, literal, string).
    in_scalar: bool,
    /// Skipping the rest of an oversize message.
    discarding: bool,
}

impl Splitter {
    /// Feeds bytes; returns the frames they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for &byte in bytes {
            self.push(byte, &mut frames);
        }
        frames
    }

    fn push(&mut self, byte: u8, frames: &mut Vec<Frame>) {
        let idle = self.depth == 0 && !self.in_scalar && !self.in_string;
        if idle {
            self.discarding = false;
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' => return,
                b'}' | b']' => {
                    frames.push(Frame::Unbalanced);
                    return;
                }
                _ => {}
            }
        }
        if self.in_scalar && !self.in_string && is_delimiter(byte) {
            self.in_scalar = false;
            self.finish(frames);
            self.push(byte, frames);
            return;
        }
        if !self.discarding {
            if self.buf.len() >= MAX_MESSAGE {
                self.buf = Vec::new();
                self.discarding = true;
                frames.push(Frame::TooLong);
            } else {
                self.buf.push(byte);
            }
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
                if self.depth == 0 {
                    self.in_scalar = false;
                    self.finish(frames);
                }
            }
            return;
        }
        match byte {
            b'"' => {
                self.in_string = true;
                if self.depth == 0 {
                    self.in_scalar = true;
                }
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.finish(frames);
                }
            }
            _ if self.depth == 0 => self.in_scalar = true,
            _ => {}
        }
    }

    fn finish(&mut self, frames: &mut Vec<Frame>) {
        let message = std::mem::take(&mut self.buf);
        if !self.discarding {
            frames.push(Frame::Message(message));
        }
        self.discarding = false;
    }
}

fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'[' | b'}' | b']'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Message(m) => String::from_utf8(m).unwrap(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn objects_split_at_their_closing_brace() {
        let mut s = Splitter::default();
        let out = s.feed(br#"{"execute": "stop"}{"execute":"cont", "id": [1, {"a": "}"}]}"#);
        assert_eq!(
            messages(out),
            vec![
                r#"{"execute": "stop"}"#,
                r#"{"execute":"cont", "id": [1, {"a": "}"}]}"#
            ]
        );
    }

    #[test]
    fn messages_may_arrive_in_pieces() {
        let mut s = Splitter::default();
        assert!(s.feed(br#"{"execute": "qu"#).is_empty());
        assert!(s.feed(br#"it", "x": "a\"}"#).is_empty());
        assert_eq!(
            messages(s.feed(b"\"}\n")),
            vec![r#"{"execute": "quit", "x": "a\"}"}"#]
        );
    }

    #[test]
    fn scalars_and_stray_closers() {
        let mut s = Splitter::default();
        let out = s.feed(b"42 \"str\" true} [1]");
        assert_eq!(
            messages(out),
            vec!["42", "\"str\"", "true", "Unbalanced", "[1]"]
        );
    }

    #[test]
    fn oversize_messages_are_dropped_once() {
        let mut s = Splitter::default();
        let mut big = b"{\"execute\": \"".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_MESSAGE + 10));
        big.extend_from_slice(b"\"}");
        let out = s.feed(&big);
        assert_eq!(out, vec![Frame::TooLong]);
        assert_eq!(
            messages(s.feed(b"{\"execute\":\"stop\"}")),
            vec![r#"{"execute":"stop"}"#]
        );
    }
}
