//! Test keys made by OpenSSH's own `ssh-keygen` at test time, in a temporary directory, with
//! certificates signed by a test CA. Public blobs and fingerprints are taken from
//! `ssh-keygen`'s output, so tests compare our parsing with OpenSSH's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ssh_key::PrivateKey;
use ssh_key::encoding::base64::{Base64, Encoding};

/// The key types the tests make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyType {
    Ed25519,
    P256,
    P384,
    P521,
    Rsa,
}

impl KeyType {
    pub(crate) const ALL: &'static [KeyType] = &[
        KeyType::Ed25519,
        KeyType::P256,
        KeyType::P384,
        KeyType::P521,
        KeyType::Rsa,
    ];

    fn file_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "id_ed25519",
            KeyType::P256 => "id_ecdsa256",
            KeyType::P384 => "id_ecdsa384",
            KeyType::P521 => "id_ecdsa521",
            KeyType::Rsa => "id_rsa",
        }
    }

    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::P256 => &["-t", "ecdsa", "-b", "256"],
            KeyType::P384 => &["-t", "ecdsa", "-b", "384"],
            KeyType::P521 => &["-t", "ecdsa", "-b", "521"],
            KeyType::Rsa => &["-t", "rsa", "-b", "3072"],
        }
    }
}

/// Runs a command and returns its stdout; panics with its stderr on failure.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run an OpenSSH tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The base64 blob of a one-line OpenSSH public key or certificate file.
pub(crate) fn blob_of_line(line: &str) -> Vec<u8> {
    let b64 = line.split_whitespace().nth(1).expect("a key line");
    Base64::decode_vec(b64).expect("base64")
}

/// Keys of some types, each with a user and a host certificate from one CA.
pub(crate) struct KeyFiles {
    dir: tempfile::TempDir,
}

impl KeyFiles {
    /// Makes keys of `types` (unencrypted), a CA, and the certificates.
    pub(crate) fn new(types: &[KeyType]) -> KeyFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = KeyFiles { dir };
        files.keygen("ca", &["-t", "ed25519"], "");
        for &t in types {
            files.keygen(t.file_name(), t.keygen_args(), "");
            let public = files.path(t).with_extension("pub");
            run(Command::new("ssh-keygen")
                .args(["-q", "-s"])
                .arg(files.dir.path().join("ca"))
                .args(["-I", "user-id", "-n", "user"])
                .arg(&public));
            // A second certificate of the same key, as a host certificate.
            let host_dir = files.dir.path().join("host");
            std::fs::create_dir_all(&host_dir).expect("mkdir");
            let host_pub = host_dir.join(format!("{}.pub", t.file_name()));
            std::fs::copy(&public, &host_pub).expect("copy");
            run(Command::new("ssh-keygen")
                .args(["-q", "-h", "-s"])
                .arg(files.dir.path().join("ca"))
                .args(["-I", "host-id", "-n", "host.example"])
                .arg(&host_pub));
        }
        files
    }

    /// Makes an extra key `name` with `args`, encrypted with `passphrase` if not empty.
    pub(crate) fn keygen(&self, name: &str, args: &[&str], passphrase: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", passphrase, "-C"])
            .arg(format!("{name}@test"))
            .args(args)
            .arg("-f")
            .arg(&path));
        path
    }

    /// The directory holding everything.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The private key file of `t`.
    pub(crate) fn path(&self, t: KeyType) -> PathBuf {
        self.dir.path().join(t.file_name())
    }

    /// The private key file's text.
    pub(crate) fn private_text(&self, t: KeyType) -> String {
        std::fs::read_to_string(self.path(t)).expect("read key")
    }

    /// The private key, parsed by ssh-key.
    pub(crate) fn private_key(&self, t: KeyType) -> PrivateKey {
        PrivateKey::from_openssh(self.private_text(t)).expect("parse key")
    }

    /// The public key blob as `ssh-keygen -y -f KEY` derives it from the private key.
    pub(crate) fn public_blob(&self, t: KeyType) -> Vec<u8> {
        blob_of_line(&run(Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(self.path(t))))
    }

    /// `SHA256:...` as `ssh-keygen -l -E sha256` prints it for the public key file.
    pub(crate) fn keygen_fingerprint(&self, t: KeyType) -> String {
        let out = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.path(t).with_extension("pub")));
        out.split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }

    /// The user certificate file's text (`-I user-id -n user`).
    pub(crate) fn user_certificate_text(&self, t: KeyType) -> String {
        let path = self.dir.path().join(format!("{}-cert.pub", t.file_name()));
        std::fs::read_to_string(path).expect("read certificate")
    }

    /// The user certificate's blob.
    pub(crate) fn user_certificate_blob(&self, t: KeyType) -> Vec<u8> {
        blob_of_line(&self.user_certificate_text(t))
    }

    /// The host certificate's blob (`-h -I host-id -n host.example`).
    pub(crate) fn host_certificate_blob(&self, t: KeyType) -> Vec<u8> {
        let path = self
            .dir
            .path()
            .join("host")
            .join(format!("{}-cert.pub", t.file_name()));
        blob_of_line(&std::fs::read_to_string(path).expect("read certificate"))
    }
}

/// A private ssh-agent, killed when dropped.
pub(crate) struct Agent {
    child: Child,
    /// The agent's socket.
    pub(crate) socket: PathBuf,
}

impl Agent {
    /// Starts an agent with its socket in `dir`.
    pub(crate) fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        // ssh-agent prints `SSH_AUTH_SOCK=...` once it listens on the socket.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let agent = Agent { child, socket };
        read.expect("read ssh-agent's stdout");
        assert!(
            line.starts_with("SSH_AUTH_SOCK="),
            "ssh-agent said {line:?}"
        );
        agent
    }

    /// Loads the key file (and its certificate, if any) into the agent.
    pub(crate) fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &self.socket)
            .arg("-q")
            .arg(key));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
