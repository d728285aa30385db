//! Reading command arguments the way Redis does: strict integers (`string2ll`), floats without
//! NaN (`string2ld`), case-insensitive keywords. Shared by every command family.

use bytes::Bytes;

/// Parses a signed 64-bit integer with Redis's strictness: an optional `-`, no `+`, no spaces,
/// no leading zeros, no `-0`.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ if digits.len() > 19 => return None,
        _ => {}
    }
    // Accumulate negatively so i64::MIN fits.
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub((d - b'0') as i64)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parses a float like Redis's `string2ld`: no surrounding spaces, no NaN; `inf` is allowed.
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// Whether `arg` equals the ASCII keyword `word`, ignoring case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// The argument as lossy UTF-8, for error messages.
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// A cursor over a command's arguments (the command name excluded).
#[derive(Debug, Clone)]
pub struct Args<'a> {
    args: &'a [Bytes],
    position: usize,
}

impl<'a> Args<'a> {
    /// A cursor at the first argument.
    pub fn new(args: &'a [Bytes]) -> Self {
        Args { args, position: 0 }
    }

    /// The next argument, if any.
    pub fn next_arg(&mut self) -> Option<&'a Bytes> {
        let arg = self.args.get(self.position)?;
        self.position += 1;
        Some(arg)
    }

    /// The next argument, which the arity check guarantees exists; an empty one otherwise.
    pub fn take(&mut self) -> Bytes {
        self.next_arg().cloned().unwrap_or_default()
    }

    /// The next argument if it equals `word` (case-insensitive).
    pub fn eat(&mut self, word: &str) -> bool {
        match self.args.get(self.position) {
            Some(arg) if is(arg, word) => {
                self.position += 1;
                true
            }
            _ => false,
        }
    }

    /// Arguments not yet read.
    pub fn rest(&self) -> &'a [Bytes] {
        &self.args[self.position.min(self.args.len())..]
    }

    /// Number of arguments not yet read.
    pub fn remaining(&self) -> usize {
        self.rest().len()
    }

    /// Whether every argument was read.
    pub fn is_done(&self) -> bool {
        self.remaining() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        for (input, expected) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("42", Some(42)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+1", None),
            ("01", None),
            ("-0", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("1.0", None),
            ("abc", None),
        ] {
            assert_eq!(parse_i64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn floats_refuse_nan_and_spaces() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-3"), Some(-3.0));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b""), None);
        assert_eq!(parse_f64(b"x"), None);
    }
}
