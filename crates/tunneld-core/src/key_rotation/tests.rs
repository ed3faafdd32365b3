//! Plans and rewrites of known_hosts files, and learning with a scripted server: every
//! case where OpenSSH leaves the file alone, a proof that fails, two tunnels at once.

use std::path::PathBuf;

use ssh_key::PublicKey;
use ssh_key::public::Ed25519PublicKey;
use tunneld_ssh::hostkeys::{ProveError, Proven};

use super::*;
use crate::known_hosts::{Verdict, check};

const HOST: &str = "[127.0.0.1]:2222";

/// A distinct ed25519 public key (any 32 bytes are one).
fn key(n: u8) -> PublicKey {
    PublicKey::from(Ed25519PublicKey([n; 32]))
}

fn line(name: &str, k: &PublicKey) -> String {
    format!("{name} {}\n", k.to_openssh().unwrap())
}

fn blob(k: &PublicKey) -> Vec<u8> {
    k.to_bytes().unwrap()
}

struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl File {
    fn new(text: &str) -> File {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).unwrap();
        File { _dir: dir, path }
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }

    fn trusted(&self, session_key: &PublicKey) -> Trusted {
        Trusted {
            tunnel: "t".into(),
            files: self.files(),
            name: HOST.into(),
            key: session_key.clone(),
        }
    }
}

/// A server that proves what it is asked (`Ok`), or answers with `reply` checked as
/// tunneld checks real replies.
enum Script {
    Honest,
    Reply(Vec<u8>),
    Refuse,
}

impl Prover for Script {
    async fn prove(&self, keys: &[PublicKey]) -> Result<Proven, ProveError> {
        match self {
            Script::Honest => Ok(Proven {
                keys: keys.to_vec(),
                disregarded: vec![],
            }),
            Script::Reply(reply) => Ok(hostkeys::verify_proofs(
                reply,
                keys,
                b"session",
                "ssh-ed25519",
            )?),
            Script::Refuse => Err(ProveError::Refused),
        }
    }
}

#[test]
fn a_new_key_is_planned_and_added_beside_the_old_one() {
    let (a, b, other) = (key(1), key(2), key(3));
    let f = File::new(&format!(
        "# notes\n{}{}",
        line("other.example", &other),
        line(HOST, &a)
    ));
    let planned = plan(&f.files(), HOST, &[a.clone(), b.clone()])
        .unwrap()
        .unwrap();
    assert_eq!(
        planned,
        Plan {
            file: f.path.clone(),
            new: vec![b.clone()],
            old: vec![],
        }
    );
    let applied = apply(
        &f.files(),
        HOST,
        &[a.clone(), b.clone()],
        std::slice::from_ref(&b),
    )
    .unwrap();
    assert_eq!((applied.added, applied.removed), (vec![b.clone()], vec![]));
    assert_eq!(check(&f.files(), HOST, &a), Verdict::Trusted);
    assert_eq!(check(&f.files(), HOST, &b), Verdict::Trusted);
    assert_eq!(check(&f.files(), "other.example", &other), Verdict::Trusted);
    assert!(f.text().starts_with("# notes\n"), "{}", f.text());
    // Done: nothing more to do.
    assert_eq!(plan(&f.files(), HOST, &[a, b]).unwrap(), None);
}

#[test]
fn a_key_the_server_dropped_is_dropped_and_nothing_else() {
    let (a, b, other) = (key(1), key(2), key(3));
    let f = File::new(&format!(
        "{}{}{}",
        line(HOST, &a),
        line("other.example", &other),
        line(HOST, &b)
    ));
    let applied = apply(&f.files(), HOST, std::slice::from_ref(&b), &[]).unwrap();
    assert_eq!((applied.added, applied.removed), (vec![], vec![a.clone()]));
    assert_eq!(
        f.text(),
        format!("{}{}", line("other.example", &other), line(HOST, &b))
    );
    assert!(matches!(
        check(&f.files(), HOST, &a),
        Verdict::Changed { .. }
    ));
}

#[test]
fn a_hashed_host_gets_hashed_lines_and_the_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (a, b) = (key(1), key(2));
    let f = File::new(&line(&hash_name(HOST), &a));
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    apply(
        &f.files(),
        HOST,
        &[a.clone(), b.clone()],
        std::slice::from_ref(&b),
    )
    .unwrap();
    let text = f.text();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.starts_with("|1|")), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");
    assert_eq!(check(&f.files(), HOST, &b), Verdict::Trusted);
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn openssh_leaves_these_files_alone_and_so_do_we() {
    let (a, b, ca) = (key(1), key(2), key(9));
    let cases = [
        (
            "a CA for the host",
            format!(
                "{}@cert-authority {}",
                line(HOST, &a),
                line("[127.0.0.1]:*", &ca)
            ),
        ),
        ("a pattern", line("[127.0.0.1]:*", &a)),
        ("a negation", line(&format!("{HOST},!evil"), &a)),
        ("three names", line(&format!("{HOST},a,b"), &a)),
        (
            "the new key under another name",
            format!("{}{}", line(HOST, &a), line("elsewhere", &b)),
        ),
        (
            "a revoked key",
            format!("{}@revoked {}", line(HOST, &a), line(HOST, &key(5))),
        ),
        ("no line for the host", line("elsewhere", &key(7))),
    ];
    for (what, text) in cases {
        let f = File::new(&text);
        let got = plan(&f.files(), HOST, &[a.clone(), b.clone()]);
        assert!(got.is_err(), "{what}: {got:?}");
        assert!(
            apply(
                &f.files(),
                HOST,
                &[a.clone(), b.clone()],
                std::slice::from_ref(&b)
            )
            .is_err(),
            "{what}"
        );
        assert_eq!(f.text(), text, "{what}");
    }
    // A key to drop that stands under another name too.
    let f = File::new(&format!("{}{}", line(HOST, &a), line("alias", &a)));
    assert!(plan(&f.files(), HOST, std::slice::from_ref(&b)).is_err());
    // Lines for the host in two files.
    let (one, two) = (File::new(&line(HOST, &a)), File::new(&line(HOST, &a)));
    let files = vec![one.path.clone(), two.path.clone()];
    assert!(plan(&files, HOST, &[a.clone(), b.clone()]).is_err());
}

#[test]
fn with_nothing_to_do_aliases_and_patterns_are_no_matter() {
    let (a, ca) = (key(1), key(9));
    let text = format!(
        "{}{}@cert-authority {}",
        line(&format!("{HOST},alias"), &a),
        line("alias2", &a),
        line("*", &ca)
    );
    let f = File::new(&text);
    assert_eq!(plan(&f.files(), HOST, std::slice::from_ref(&a)), Ok(None));
}

#[tokio::test]
async fn a_failed_or_refused_proof_learns_and_drops_nothing() {
    let (a, b, gone) = (key(1), key(2), key(3));
    let text = format!("{}{}", line(HOST, &a), line(HOST, &gone));
    let f = File::new(&text);
    let mut signature = tunneld_ssh::wire::Writer::new();
    signature.string(b"ssh-ed25519").string(&[0x42; 64]);
    let mut forged = tunneld_ssh::wire::Writer::new();
    forged.string(signature.as_slice());
    let mut garbage = tunneld_ssh::wire::Writer::new();
    garbage.string(b"x").string(b"y");
    for (what, script) in [
        ("forged", Script::Reply(forged.into_vec())),
        ("missing", Script::Reply(Vec::new())),
        ("garbage", Script::Reply(garbage.into_vec())),
        ("refused", Script::Refuse),
    ] {
        let got = learn(&script, &f.trusted(&a), &[blob(&a), blob(&b)]).await;
        let why = got.expect_err(what);
        assert!(why.contains("nothing learned or dropped"), "{what}: {why}");
        assert_eq!(f.text(), text, "{what}");
    }
    // The honest server: b learned, the key it no longer has dropped.
    let got = learn(&Script::Honest, &f.trusted(&a), &[blob(&a), blob(&b)])
        .await
        .unwrap();
    assert_eq!((got.added, got.removed), (vec![b.clone()], vec![gone]));
    assert_eq!(f.text(), format!("{}{}", line(HOST, &a), line(HOST, &b)));
}

#[tokio::test]
async fn suspicious_announcements_change_nothing() {
    let (a, b) = (key(1), key(2));
    let text = line(HOST, &a);
    let f = File::new(&text);
    for (what, blobs, want) in [
        ("a duplicate", vec![blob(&a), blob(&b), blob(&b)], "twice"),
        (
            "without the session's key",
            vec![blob(&b)],
            "lacks the key the session was authenticated with",
        ),
    ] {
        let why = learn(&Script::Honest, &f.trusted(&a), &blobs)
            .await
            .expect_err(what);
        assert!(why.contains(want), "{what}: {why}");
        assert_eq!(f.text(), text, "{what}");
    }
    // Garbage blobs are left out; the rest goes on.
    let got = learn(
        &Script::Honest,
        &f.trusted(&a),
        &[b"junk".to_vec(), blob(&a)],
    )
    .await
    .unwrap();
    assert_eq!(got, Applied::default());
}

#[test]
fn tunnels_rotating_one_host_at_once_write_each_key_once() {
    let (a, b) = (key(1), key(2));
    let f = File::new(&line(HOST, &a));
    let files = f.files();
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                apply(
                    &files,
                    HOST,
                    &[a.clone(), b.clone()],
                    std::slice::from_ref(&b),
                )
                .unwrap();
            });
        }
    });
    assert_eq!(f.text(), format!("{}{}", line(HOST, &a), line(HOST, &b)));
}

#[test]
fn accept_new_waiting_on_the_lock_writes_into_the_replaced_file() {
    let (a, b, c) = (key(1), key(2), key(3));
    let f = File::new(&line(HOST, &a));
    let files = f.files();
    let held = crate::known_hosts::lock(&f.path).unwrap();
    std::thread::scope(|s| {
        let recorder =
            s.spawn(|| crate::known_hosts::record(&files, &files[0], "new.example", &c).unwrap());
        // The recorder opened the file and waits for the lock meanwhile (or opens it after
        // the rename: either way it must land in the file the name leads to).
        replace(&f.path, &held, line(HOST, &b).as_bytes()).unwrap();
        drop(held);
        assert_eq!(recorder.join().unwrap(), Verdict::Unknown);
    });
    assert_eq!(
        f.text(),
        format!("{}{}", line(HOST, &b), line("new.example", &c))
    );
}
