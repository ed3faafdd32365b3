//! Durations written as strings with units: `"500ms"`, `"10s"`, `"1m30s"`.

use std::time::Duration;

const HINT: &str = "write whole numbers with a unit (ms, s, m, h, d), e.g. \"10s\" or \"1m30s\"";

/// Parses a duration such as `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"` or a compound
/// like `"1m30s"`. A number without a unit is an error.
///
/// # Errors
/// A lower-case message naming the bad input and the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration \"{s}\": durations need a unit, e.g. \"{t}s\""
        ));
    }
    if t.contains(['.', ',']) {
        return Err(format!(
            "invalid duration \"{s}\": fractions are not supported; use a smaller unit, e.g. \"1500ms\""
        ));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration \"{s}\": {HINT}"));
        }
        let too_long = || format!("duration \"{s}\" is too long");
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs_per_unit = match unit {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86_400),
            "" => {
                return Err(format!("invalid duration \"{s}\": {n} has no unit; {HINT}"));
            }
            other => {
                return Err(format!(
                    "invalid duration \"{s}\": unknown unit \"{other}\"; {HINT}"
                ));
            }
        };
        let part = match secs_per_unit {
            None => Duration::from_millis(n),
            Some(k) => Duration::from_secs(n.checked_mul(k).ok_or_else(too_long)?),
        };
        total = total.checked_add(part).ok_or_else(too_long)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("0s", Duration::ZERO),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            (" 7s ", Duration::from_secs(7)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn rejected_forms() {
        let cases = [
            ("", "empty duration"),
            ("10", "durations need a unit, e.g. \"10s\""),
            (
                "1.5s",
                "invalid duration \"1.5s\": fractions are not supported",
            ),
            ("1m30", "30 has no unit"),
            ("10 s", "10 has no unit"),
            ("10sec", "unknown unit \"sec\""),
            ("-1s", "invalid duration \"-1s\""),
            ("s", "invalid duration \"s\""),
            ("99999999999999999999s", "too long"),
            ("999999999999999999d", "too long"),
        ];
        for (input, want) in cases {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }
}
