//! known_hosts lines: a line written for a host with a key names that host and no other,
//! in plain, hashed (`|1|salt|hash`, computed here) and pattern form; markers are kept;
//! whole files give the verdicts OpenSSH would; no line or name makes the parser panic.

use base64ct::{Base64, Encoding};
use hmac::{Hmac, Mac};
use proptest::collection::vec;
use proptest::prelude::*;
use sha1::Sha1;
use ssh_key::PublicKey;
use ssh_key::public::{Ed25519PublicKey, KeyData};
use tunneld_core::known_hosts::{HostLine, Marker, Verdict, check, lookup_name};

use crate::mutate;

fn key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(|b| PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(b)), ""))
}

fn openssh(key: &PublicKey) -> String {
    key.to_openssh().expect("an ed25519 key encodes")
}

/// A host as written in a tunnel: a DNS name in any case, or an IPv4 address.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]{1,10}){0,3}",
        any::<[u8; 4]>().prop_map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(22u16), 1..=65535u16]
}

/// The name looked up for a host and port, and another that differs from it.
fn name_and_other() -> impl Strategy<Value = (String, String)> {
    (host(), port(), host(), port())
        .prop_map(|(h, p, oh, op)| (lookup_name(&h, p), lookup_name(&oh, op)))
        .prop_filter("two different names", |(a, b)| a != b)
}

/// `ssh-keygen -H`'s form of `name` with `salt`.
fn hashed(name: &str, salt: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    let hash = mac.finalize().into_bytes();
    format!(
        "|1|{}|{}",
        Base64::encode_string(salt),
        Base64::encode_string(&hash)
    )
}

/// A pattern that matches `name`: some characters made `?`, one run made `*`.
fn pattern_for(name: &str, marks: &[(usize, bool)]) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    for &(at, star) in marks {
        let at = at % chars.len();
        if star {
            let end = (at + 3).min(chars.len());
            chars.splice(at..end, ['*']);
        } else if chars[at] != '*' {
            chars[at] = '?';
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_plain_line_names_its_host_and_no_other(
        (name, other) in name_and_other(),
        k in key(),
        upper in any::<bool>(),
        comment in "( [a-z@.]{1,12})?",
    ) {
        // Patterns are compared lower-cased, as the looked-up name is.
        let written = if upper { name.to_ascii_uppercase() } else { name.clone() };
        let line = format!("{written} {}{comment}", openssh(&k));
        let parsed = HostLine::parse(&line).expect("a valid line");
        prop_assert!(parsed.matches(&name), "{line:?} does not match {name:?}");
        prop_assert!(!parsed.matches(&other), "{line:?} matches {other:?}");
        prop_assert_eq!(parsed.public_key().key_data(), k.key_data());
        prop_assert_eq!(parsed.marker(), None);
    }

    #[test]
    fn a_hashed_line_names_its_host_and_no_other(
        (name, other) in name_and_other(),
        salt in vec(any::<u8>(), 1..40),
        k in key(),
    ) {
        let line = format!("{} {}", hashed(&name, &salt), openssh(&k));
        let parsed = HostLine::parse(&line).expect("a valid hashed line");
        prop_assert!(parsed.matches(&name), "{line:?} does not match {name:?}");
        prop_assert!(!parsed.matches(&other), "{line:?} matches {other:?}");
        // The salt is part of the hash: the same hash beside another salt names nobody.
        let mut salt2 = salt.clone();
        salt2[0] ^= 1;
        let hash = hashed(&name, &salt).rsplit('|').next().expect("a hash").to_owned();
        let line2 = format!("|1|{}|{hash} {}", Base64::encode_string(&salt2), openssh(&k));
        prop_assert!(!HostLine::parse(&line2).expect("valid").matches(&name), "{line2:?}");
    }

    #[test]
    fn patterns_match_with_wildcards_and_negation_wins(
        (name, other) in name_and_other(),
        marks in vec((any::<usize>(), any::<bool>()), 0..4),
        k in key(),
    ) {
        let pattern = pattern_for(&name, &marks);
        let key_text = openssh(&k);
        let line = format!("{pattern} {key_text}");
        prop_assert!(HostLine::parse(&line).expect("valid").matches(&name), "{line:?}");
        // In a list, one matching pattern is enough...
        let list = format!("{other},{pattern} {key_text}");
        prop_assert!(HostLine::parse(&list).expect("valid").matches(&name), "{list:?}");
        // ...but a negated one that matches overrides every positive match.
        let negated = format!("*,{pattern},!{name} {key_text}");
        let parsed = HostLine::parse(&negated).expect("valid");
        prop_assert!(!parsed.matches(&name), "{negated:?}");
        prop_assert!(parsed.matches(&other), "{negated:?}");
    }

    #[test]
    fn markers_are_kept(name in host(), k in key(), revoked in any::<bool>()) {
        let (marker, want) = if revoked {
            ("@revoked", Marker::Revoked)
        } else {
            ("@cert-authority", Marker::CertAuthority)
        };
        let line = format!("{marker} {name},*.{name} {}", openssh(&k));
        let parsed = HostLine::parse(&line).expect("a valid marked line");
        prop_assert_eq!(parsed.marker(), Some(&want));
        let name = name.to_ascii_lowercase();
        prop_assert!(parsed.matches(&name));
        let sub = format!("a.{name}");
        prop_assert!(parsed.matches(&sub), "{}", sub);
    }

    #[test]
    fn lookup_names_follow_openssh(h in host(), p in port()) {
        let name = lookup_name(&h, p);
        if p == 22 {
            prop_assert_eq!(name, h.to_ascii_lowercase());
        } else {
            prop_assert_eq!(name, format!("[{}]:{p}", h.to_ascii_lowercase()));
        }
    }

    #[test]
    fn files_give_openssh_verdicts(
        (name, other) in name_and_other(),
        keys in vec(key(), 3),
        hash in any::<bool>(),
    ) {
        let distinct = |a: &PublicKey, b: &PublicKey| a.key_data() != b.key_data();
        prop_assume!(distinct(&keys[0], &keys[1]) && distinct(&keys[1], &keys[2]) && distinct(&keys[0], &keys[2]));
        let (good, revoked, unknown) = (&keys[0], &keys[1], &keys[2]);
        let host_field = if hash { hashed(&name, b"0123456789abcdefghij") } else { name.clone() };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("known_hosts");
        let text = format!(
            "# comment\n{host_field} {}\n@revoked {host_field} {}\nnot a line\n",
            openssh(good),
            openssh(revoked)
        );
        std::fs::write(&file, text).expect("write known_hosts");
        let files = [file.clone()];
        prop_assert_eq!(check(&files, &name, good), Verdict::Trusted);
        prop_assert_eq!(check(&files, &name, revoked), Verdict::Revoked { file: file.clone(), line: 3 });
        prop_assert_eq!(check(&files, &name, unknown), Verdict::Changed { file: file.clone(), line: 2 });
        prop_assert_eq!(check(&files, &other, good), Verdict::Unknown);
    }

    #[test]
    fn any_line_and_name_are_handled(line in any::<String>(), name in any::<String>()) {
        if let Some(parsed) = HostLine::parse(&line) {
            let _ = parsed.matches(&name);
        }
    }

    #[test]
    fn edited_lines_are_handled(
        name in host(),
        k in key(),
        hash in any::<bool>(),
        edits in mutate::edits(prop_oneof![
            Just(b' '), Just(b','), Just(b'!'), Just(b'*'), Just(b'?'), Just(b'|'),
            Just(b'@'), Just(b'#'), Just(b'['), Just(b'\n'), any::<u8>(),
        ]),
    ) {
        let host_field = if hash { hashed(&name, b"salt") } else { name.clone() };
        let line = format!("{host_field} {}", openssh(&k));
        let edited = String::from_utf8_lossy(&mutate::apply(line.as_bytes(), &edits)).into_owned();
        if let Some(parsed) = HostLine::parse(&edited) {
            let _ = parsed.matches(&name);
            let _ = parsed.matches(&edited);
        }
    }
}
