//! One value of the type a key expects (table, string, path, integer, duration, ...):
//! each helper records a problem at the value and returns `None` when it is not.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Item;
use super::problems::Problems;
use crate::duration::parse_duration;
use crate::env::Env;

fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn wrong_type(
    key: &str,
    expected: &str,
    v: &DeValue<'_>,
    span: Range<usize>,
    p: &mut Problems,
) {
    p.push(span, format!("{key} must be {expected}, not {}", a_type(v)));
}

pub(super) fn table<'a, 'i>(
    key: &str,
    expected: &str,
    item: &'a Item<'i>,
    p: &mut Problems,
) -> Option<&'a DeTable<'i>> {
    match item.get_ref() {
        DeValue::Table(t) => Some(t),
        v => {
            wrong_type(key, expected, v, item.span(), p);
            None
        }
    }
}

pub(super) fn string<'a>(
    key: &str,
    expected: &str,
    item: &'a Item<'_>,
    p: &mut Problems,
) -> Option<&'a str> {
    match item.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        v => {
            wrong_type(key, expected, v, item.span(), p);
            None
        }
    }
}

pub(super) fn non_empty(
    key: &str,
    expected: &str,
    item: &Item<'_>,
    p: &mut Problems,
) -> Option<String> {
    let s = string(key, expected, item, p)?;
    if s.is_empty() {
        p.push(
            item.span(),
            format!("{key} is empty; write {expected} or remove the key"),
        );
        return None;
    }
    Some(s.to_owned())
}

/// A string or an array of strings; each bad element is reported at its own position.
pub(super) fn strings(
    key: &str,
    expected: &str,
    item: &Item<'_>,
    p: &mut Problems,
) -> Option<Vec<Spanned<String>>> {
    match item.get_ref() {
        DeValue::String(s) => Some(vec![Spanned::new(item.span(), s.to_string())]),
        DeValue::Array(a) => Some(
            a.iter()
                .filter_map(|e| match e.get_ref() {
                    DeValue::String(s) => Some(Spanned::new(e.span(), s.to_string())),
                    v => {
                        let what = format!("entries of {key}");
                        p.push(
                            e.span(),
                            format!("{what} must be strings ({expected}), not {}", a_type(v)),
                        );
                        None
                    }
                })
                .collect(),
        ),
        v => {
            wrong_type(
                key,
                &format!("{expected} or an array of them"),
                v,
                item.span(),
                p,
            );
            None
        }
    }
}

pub(super) fn path(key: &str, item: &Item<'_>, env: &Env, p: &mut Problems) -> Option<PathBuf> {
    let s = non_empty(key, "a path", item, p)?;
    env.expand_tilde(&s)
        .map_err(|e| p.push(item.span(), format!("{key}: {e}")))
        .ok()
}

pub(super) fn paths(
    key: &str,
    item: &Item<'_>,
    env: &Env,
    p: &mut Problems,
) -> Option<Vec<PathBuf>> {
    let list = strings(key, "a path", item, p)?;
    let mut out = Vec::new();
    for s in list {
        if s.get_ref().is_empty() {
            p.push(s.span(), format!("{key}: empty path"));
            continue;
        }
        match env.expand_tilde(s.get_ref()) {
            Ok(path) => out.push(path),
            Err(e) => p.push(s.span(), format!("{key}: {e}")),
        }
    }
    Some(out)
}

pub(super) fn boolean(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<bool> {
    match item.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        v => {
            wrong_type(key, "true or false", v, item.span(), p);
            None
        }
    }
}

pub(super) fn integer(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<i64> {
    match item.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                p.push(item.span(), format!("{key}: {i} is too large"));
                None
            }
        },
        v => {
            wrong_type(key, "an integer", v, item.span(), p);
            None
        }
    }
}

/// A count of at least 1.
pub(super) fn count(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<u32> {
    let n = integer(key, item, p)?;
    match u32::try_from(n) {
        Ok(count) if count >= 1 => Some(count),
        _ => {
            p.push(item.span(), format!("{key} must be at least 1, not {n}"));
            None
        }
    }
}

pub(super) fn float(key: &str, item: &Item<'_>, p: &mut Problems) -> Option<f64> {
    match item.get_ref() {
        DeValue::Float(f) => f.as_str().parse().ok(),
        DeValue::Integer(_) => integer(key, item, p).map(|n| n as f64),
        v => {
            wrong_type(key, "a number like 2.0", v, item.span(), p);
            None
        }
    }
}

pub(super) fn duration(
    key: &str,
    item: &Item<'_>,
    must_be_positive: bool,
    p: &mut Problems,
) -> Option<Duration> {
    let s = string(key, "a string like \"10s\"", item, p)?;
    match parse_duration(s) {
        Ok(d) if must_be_positive && d.is_zero() => {
            p.push(item.span(), format!("{key} must be greater than 0"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            p.push(item.span(), format!("{key}: {e}"));
            None
        }
    }
}
