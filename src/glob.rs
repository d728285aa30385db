//! Redis-style glob patterns (`KEYS`, `SCAN MATCH`, `CONFIG GET`): `*`, `?`, `[abc]`,
//! `[^a-z]`, and `\` escapes, matched byte by byte like Redis's `stringmatchlen`.

/// Whether `text` matches `pattern`.
///
/// Iterative with single-star backtracking, so hostile patterns such as `*a*a*a*a*b` run in
/// O(pattern × text) rather than exponential time.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the most recent `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        // An unterminated class matches a literal '['.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last star swallow one more byte, or fail.
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Evaluates the class starting at `pattern[start] == b'['` against `byte`. Returns whether it
/// matched and the index after the closing `]`, or `None` if the class is not terminated.
fn class(pattern: &[u8], start: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        let c = *pattern.get(i)?;
        match c {
            b']' => break,
            b'\\' => {
                i += 1;
                if *pattern.get(i)? == byte {
                    matched = true;
                }
            }
            _ if pattern.get(i + 1) == Some(&b'-')
                && pattern.get(i + 2).is_some_and(|&e| e != b']') =>
            {
                let (mut lo, mut hi) = (c, pattern[i + 2]);
                if lo > hi {
                    std::mem::swap(&mut lo, &mut hi);
                }
                if (lo..=hi).contains(&byte) {
                    matched = true;
                }
                i += 2;
            }
            _ => {
                if c == byte {
                    matched = true;
                }
            }
        }
        i += 1;
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn check(pattern: &str, text: &str, expected: bool) {
        assert_eq!(
            matches(pattern.as_bytes(), text.as_bytes()),
            expected,
            "pattern {pattern:?} against {text:?}"
        );
    }

    #[test]
    fn globs_match_like_redis() {
        check("*", "", true);
        check("*", "anything", true);
        check("h?llo", "hello", true);
        check("h?llo", "hllo", false);
        check("h*llo", "heeeello", true);
        check("h[ae]llo", "hallo", true);
        check("h[ae]llo", "hillo", false);
        check("h[^e]llo", "hallo", true);
        check("h[^e]llo", "hello", false);
        check("h[a-b]llo", "hbllo", true);
        check("h[b-a]llo", "hallo", true);
        check("key:*", "key:1", true);
        check("key:*", "other", false);
        check("a\\*b", "a*b", true);
        check("a\\*b", "axb", false);
        check("*a*a*a*a*a*a*a*b", &"a".repeat(200), false);
        check("user:*:name", "user:42:name", true);
        check("user:*:name", "user:42:age", false);
        check("[", "[", true);
        check("ab*", "a", false);
    }
}
