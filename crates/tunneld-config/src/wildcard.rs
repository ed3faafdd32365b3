//! OpenSSH's `match_pattern`, the shell's glob without brackets: `*` matches any run of
//! elements, `?` any one. One matcher for include file names (characters), known_hosts
//! host patterns (bytes, as OpenSSH compares them) and ssh_config `Host` lines.

/// Whether `text` matches `pattern`, where `any_run` in the pattern stands for any run of
/// elements (even none) and `any_one` for exactly one; every other element for itself.
pub fn matches<T: Copy + PartialEq>(pattern: &[T], text: &[T], any_run: T, any_one: T) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `any_run` was, and the text position it stands at now.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == any_run {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == any_one || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `any_run` take one more element, and go on after it.
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == any_run)
}

/// [`matches`] over the characters of two strings.
pub fn matches_str(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    matches(&p, &t, '*', '?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks_as_in_openssh() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "example.com", false),
            ("host?", "host1", true),
            ("host?", "host", false),
            ("a*c", "abd", false),
            ("a*b*c", "axxbyyc", true),
            ("a*", "a*b", true),
            ("[127.0.0.1]:*", "[127.0.0.1]:2222", true),
            ("é?", "éa", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(matches_str(pattern, text), want, "{pattern:?} {text:?}");
            assert_eq!(
                matches(pattern.as_bytes(), text.as_bytes(), b'*', b'?'),
                want,
                "bytes: {pattern:?} {text:?}"
            );
        }
    }

    #[test]
    fn the_element_decides_what_one_is() {
        // One character, two bytes: OpenSSH's byte-wise `?` takes one byte.
        assert!(matches_str("?", "é"));
        assert!(!matches("?".as_bytes(), "é".as_bytes(), b'*', b'?'));
        assert!(matches("??".as_bytes(), "é".as_bytes(), b'*', b'?'));
    }
}
