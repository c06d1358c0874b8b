//! The byte encoding of link messages: little-endian integers and length-prefixed byte strings,
//! written into a `Vec` and read back with every length checked against what is left.
//!
//! Hand-written rather than a serde format: the messages are a dozen small fixed shapes, the
//! reader must bound every allocation by the datagram it came in (a hostile peer chooses every
//! byte), and the fuzz target exercises exactly this code.

use super::LinkError;

/// Builds one message.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// A message that starts with `tag`.
    pub fn new(tag: u8) -> Self {
        Self(vec![tag])
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// Appends a 16-bit integer.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a 32-bit integer.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a byte string with its 32-bit length.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads one message, never past its end.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over a whole message.
    pub fn new(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LinkError> {
        if self.rest.len() < n {
            return Err(LinkError::Malformed("the message ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, LinkError> {
        Ok(self.take(1)?[0])
    }

    /// The next 16-bit integer.
    pub fn u16(&mut self) -> Result<u16, LinkError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// The next 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, LinkError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next byte string (its length was written before it).
    pub fn bytes(&mut self) -> Result<&'a [u8], LinkError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// The next byte string as UTF-8 text (invalid bytes replaced).
    pub fn text(&mut self) -> Result<String, LinkError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// Fails unless the whole message was read.
    pub fn finish(&self) -> Result<(), LinkError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(LinkError::Malformed("bytes after the end of the message"))
        }
    }
}
