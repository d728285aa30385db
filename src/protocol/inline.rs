//! Inline commands (`PING\r\n` from telnet, redis-benchmark's inline tests), split into
//! words the way Redis's `sdssplitargs` does.

use bytes::Bytes;

use super::{ProtocolError, Request};

/// Splits an inline command into words the way Redis's `sdssplitargs` does: whitespace
/// separates words; "double quotes" take `\n`, `\xHH`-style escapes; 'single quotes' take
/// `\'`; a closing quote must be followed by whitespace or the end.
pub fn split_inline(line: &[u8]) -> Result<Request, ProtocolError> {
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(words);
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(b'\\')
                            if i + 3 < line.len()
                                && line[i + 1] == b'x'
                                && line[i + 2].is_ascii_hexdigit()
                                && line[i + 3].is_ascii_hexdigit() =>
                        {
                            let hex = std::str::from_utf8(&line[i + 2..i + 4]).unwrap_or("0");
                            word.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                            i += 4;
                        }
                        Some(b'\\') if i + 1 < line.len() => {
                            word.push(match line[i + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => other,
                            });
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            if i < line.len() && !line[i].is_ascii_whitespace() {
                                return Err(ProtocolError::UnbalancedQuotes);
                            }
                            break;
                        }
                        Some(&c) => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                            word.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            i += 1;
                            if i < line.len() && !line[i].is_ascii_whitespace() {
                                return Err(ProtocolError::UnbalancedQuotes);
                            }
                            break;
                        }
                        Some(&c) => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        words.push(Bytes::from(word));
    }
}
