//! Perfetto's importer accepts a comma before `]` or `}`; serde_json does not. This reader sits
//! between the file and serde_json and leaves those commas out, byte by byte.

use std::io::Read;

/// Passes JSON through, leaving out commas that stand before `]` or `}` (outside strings), which
/// Perfetto's importer accepts and serde_json does not. Line breaks are kept, so positions in
/// error messages still point into the file.
pub(super) struct TrailingCommas<R> {
    inner: R,
    buffer: Vec<u8>,
    start: usize,
    in_string: bool,
    escaped: bool,
    /// A comma held back until the next significant byte shows whether it stays.
    held_comma: bool,
    /// Whitespace read after the held comma.
    held_space: Vec<u8>,
    done: bool,
}

impl<R: Read> TrailingCommas<R> {
    pub(super) fn new(inner: R) -> Self {
        TrailingCommas {
            inner,
            buffer: Vec::new(),
            start: 0,
            in_string: false,
            escaped: false,
            held_comma: false,
            held_space: Vec::new(),
            done: false,
        }
    }

    /// Reads and filters the next piece of input into `buffer`.
    fn fill(&mut self) -> std::io::Result<()> {
        let mut raw = [0u8; 1 << 16];
        let read = self.inner.read(&mut raw)?;
        self.buffer.clear();
        self.start = 0;
        if read == 0 {
            self.done = true;
            if self.held_comma {
                self.buffer.push(b',');
                self.held_comma = false;
            }
            self.buffer.append(&mut self.held_space);
            return Ok(());
        }
        let mut rest = &raw[..read];
        while !rest.is_empty() {
            if self.in_string {
                // Copy up to the next quote or backslash in one go.
                if self.escaped {
                    self.buffer.push(rest[0]);
                    self.escaped = false;
                    rest = &rest[1..];
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', rest) {
                    None => {
                        self.buffer.extend_from_slice(rest);
                        rest = &[];
                    }
                    Some(at) => {
                        self.buffer.extend_from_slice(&rest[..=at]);
                        if rest[at] == b'"' {
                            self.in_string = false;
                        } else {
                            self.escaped = true;
                        }
                        rest = &rest[at + 1..];
                    }
                }
                continue;
            }
            if self.held_comma {
                let byte = rest[0];
                rest = &rest[1..];
                if byte.is_ascii_whitespace() {
                    self.held_space.push(byte);
                    continue;
                }
                if byte != b']' && byte != b'}' {
                    self.buffer.push(b',');
                }
                self.held_comma = false;
                self.buffer.append(&mut self.held_space);
                self.take_outside(byte);
                continue;
            }
            // Outside strings: copy up to the next quote or comma in one go.
            match memchr::memchr2(b'"', b',', rest) {
                None => {
                    self.buffer.extend_from_slice(rest);
                    rest = &[];
                }
                Some(at) => {
                    self.buffer.extend_from_slice(&rest[..at]);
                    self.take_outside(rest[at]);
                    rest = &rest[at + 1..];
                }
            }
        }
        Ok(())
    }
}

impl<R> TrailingCommas<R> {
    /// One byte outside any string.
    fn take_outside(&mut self, byte: u8) {
        match byte {
            b',' => self.held_comma = true,
            b'"' => {
                self.in_string = true;
                self.buffer.push(byte);
            }
            _ => self.buffer.push(byte),
        }
    }
}

impl<R: Read> Read for TrailingCommas<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.start == self.buffer.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buffer.len() - self.start);
        out[..n].copy_from_slice(&self.buffer[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}
