//! A newer OpenSSH `sshd` (≥ 9.9, for `mlkem768x25519-sha256`) than the system's 9.2p1:
//! the sshd of a Debian trixie minimal root that `tests/setup-servers` builds with
//! debootstrap, run with `chroot` by the same code as [`Sshd`] ([`SshdOptions::root`]).
//!
//! The root lives at [`TRIXIE_ROOT`] unless `TUNNELD_TRIXIE_ROOT` names another. Each server
//! gets its tempdir under `ROOT/tmp`; the paths [`Sshd`] reports are the host's view of it,
//! so the host's `ssh` and the tests use them as usual. Needs root (chroot).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

use crate::sshd::{Sshd, SshdOptions};

/// Where `tests/setup-servers` builds the trixie root.
pub const TRIXIE_ROOT: &str = "/var/cache/tunneld-tests/trixie";
/// Environment variable naming another root than [`TRIXIE_ROOT`].
pub const TRIXIE_ROOT_ENV: &str = "TUNNELD_TRIXIE_ROOT";
/// The oldest OpenSSH (major, minor) with `mlkem768x25519-sha256`.
pub const MIN_VERSION: (u32, u32) = (9, 9);

/// The trixie root: `$TUNNELD_TRIXIE_ROOT`, else [`TRIXIE_ROOT`].
pub fn trixie_root() -> PathBuf {
    std::env::var_os(TRIXIE_ROOT_ENV).map_or_else(|| PathBuf::from(TRIXIE_ROOT), PathBuf::from)
}

/// A command running `program` (a path inside the root, e.g. `/usr/bin/ssh`) in the root.
pub fn in_root(root: &Path, program: &str) -> Command {
    let mut cmd = Command::new("/usr/sbin/chroot");
    cmd.arg(root).arg(program);
    cmd
}

/// `(major, minor)` from an OpenSSH version such as `OpenSSH_10.0p2` or a banner.
pub fn parse_openssh_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let mut parts = rest.splitn(2, '.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// A running sshd from the trixie root; derefs to [`Sshd`] for everything else (keys,
/// known_hosts, `ssh_command`, log, faults, restart).
pub struct ModernSshd {
    sshd: Sshd,
}

impl ModernSshd {
    /// Starts one with [`SshdOptions::default`].
    ///
    /// # Errors
    /// As [`ModernSshd::start_with`].
    pub async fn start() -> anyhow::Result<ModernSshd> {
        Self::start_with(SshdOptions::default()).await
    }

    /// Starts the root's sshd with `opts` (`opts.root` is set to [`trixie_root`] unless
    /// given). Adds `PerSourcePenalties no` after `opts.extra_config` (so a line there wins):
    /// since 9.8 sshd refuses an address for seconds after a failed login, and every test
    /// connects from 127.0.0.1.
    ///
    /// # Errors
    /// The root is missing (run `tests/setup-servers`), its OpenSSH is older than
    /// [`MIN_VERSION`], or as [`Sshd::start_with`].
    pub async fn start_with(mut opts: SshdOptions) -> anyhow::Result<ModernSshd> {
        let root = opts.root.get_or_insert_with(trixie_root).clone();
        if !root.join("usr/sbin/sshd").is_file() {
            bail!(
                "no OpenSSH root at {} (run tests/setup-servers as root, or set {TRIXIE_ROOT_ENV})",
                root.display()
            );
        }
        opts.extra_config.push("PerSourcePenalties no".to_owned());
        let sshd = Sshd::start_with(opts).await?;
        match parse_openssh_version(sshd.banner()) {
            Some(v) if v >= MIN_VERSION => Ok(ModernSshd { sshd }),
            _ => bail!(
                "{} runs {:?}, older than OpenSSH {}.{}",
                root.display(),
                sshd.banner(),
                MIN_VERSION.0,
                MIN_VERSION.1
            ),
        }
    }

    /// The root directory the server runs in.
    pub fn root(&self) -> &Path {
        self.sshd
            .options()
            .root
            .as_deref()
            .unwrap_or(Path::new(TRIXIE_ROOT))
    }

    /// A command running `program` of the root (e.g. its own `/usr/bin/ssh`).
    pub fn in_root(&self, program: &str) -> Command {
        in_root(self.root(), program)
    }
}

impl Deref for ModernSshd {
    type Target = Sshd;
    fn deref(&self) -> &Sshd {
        &self.sshd
    }
}

impl DerefMut for ModernSshd {
    fn deref_mut(&mut self) -> &mut Sshd {
        &mut self.sshd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_run::{assert_ran, run};

    #[test]
    fn parses_versions() {
        assert_eq!(parse_openssh_version("OpenSSH_10.0p2"), Some((10, 0)));
        assert_eq!(
            parse_openssh_version("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"),
            Some((9, 2))
        );
        assert_eq!(parse_openssh_version("OpenSSH_9.9"), Some((9, 9)));
        assert_eq!(parse_openssh_version("SSH-2.0-dropbear_2022.83"), None);
        assert_eq!(parse_openssh_version("OpenSSH_x.1"), None);
    }

    #[tokio::test]
    async fn the_roots_client_offers_mlkem_and_logs_in_with_it() {
        let sshd = ModernSshd::start().await.unwrap();
        let v = parse_openssh_version(sshd.version()).unwrap();
        assert!(v >= MIN_VERSION, "{}", sshd.banner());
        assert!(sshd.banner().starts_with("SSH-2.0-OpenSSH_"));

        let q = sshd
            .in_root("/usr/bin/ssh")
            .args(["-Q", "kex"])
            .output()
            .unwrap();
        assert!(q.status.success());
        let kex = String::from_utf8_lossy(&q.stdout);
        assert!(
            kex.lines().any(|l| l == "mlkem768x25519-sha256"),
            "ssh -Q kex in the root: {kex}"
        );
        let config = sshd.effective_config().unwrap();
        let line = config
            .lines()
            .find(|l| l.starts_with("kexalgorithms "))
            .unwrap();
        assert!(line.contains("mlkem768x25519-sha256"), "{line}");

        // The root's own ssh logs in with mlkem; paths as seen inside the root.
        let inside = |p: &Path| {
            Path::new("/")
                .join(p.strip_prefix(sshd.root()).unwrap())
                .display()
                .to_string()
        };
        let mut args = crate::sshd::ssh_client_args(
            Path::new(&inside(sshd.client_key())),
            Path::new(&inside(sshd.known_hosts())),
            sshd.addr(),
            &sshd.user(),
        );
        args.splice(
            0..0,
            [
                "-v".to_owned(),
                "-o".to_owned(),
                "KexAlgorithms=mlkem768x25519-sha256".to_owned(),
            ],
        );
        let mut cmd = tokio::process::Command::new("/usr/sbin/chroot");
        cmd.arg(sshd.root())
            .arg("/usr/bin/ssh")
            .args(&args)
            .arg("true");
        let out = run(cmd, &[]).await;
        assert_ran(&out, "the root's ssh with mlkem", "sshd", &sshd.log());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("kex: algorithm: mlkem768x25519-sha256"),
            "{stderr}"
        );
    }

    #[tokio::test]
    async fn the_hosts_ssh_logs_in_with_curve25519() {
        let sshd = ModernSshd::start().await.unwrap();
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(["-v", "-o", "KexAlgorithms=curve25519-sha256"])
            .args(sshd.ssh_args())
            .args(["echo", "modern"]);
        let out = run(cmd, &[]).await;
        assert_ran(&out, "ssh 9.2 into the modern sshd", "sshd", &sshd.log());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "modern\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("kex: algorithm: curve25519-sha256"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "Remote protocol version 2.0, remote software version {}",
                sshd.version()
            )),
            "{stderr}"
        );
    }
}
