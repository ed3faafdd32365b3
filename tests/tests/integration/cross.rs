//! The ARM builds under qemu-user, against the test-kit's sshd: `--version`, `check` on
//! every example configuration, and a round trip through `-L`, `-R` and `-D`.
//!
//! tests/run builds them (packaging/cross-build) and names them in
//! `TUNNELD_CROSS_BINARIES`: entries `EMULATOR[:SYSROOT]=BINARY` separated by `;`, e.g.
//! `qemu-aarch64-static=target/aarch64-unknown-linux-musl/release/tunneld`. Set it to
//! `none` to leave these out on purpose; unset, the test fails and says how to run it.
//! An entry without a SYSROOT runs with no ARM libraries at hand, so a static build that
//! is not static fails here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpStream;
use tunneld_tests::net::{echo_roundtrip, free_port};
use tunneld_tests::{EchoServer, Sshd};

use crate::harness::*;

/// How long an emulated tunneld may take to stop after SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(10);

struct Cross {
    emulator: String,
    sysroot: Option<String>,
    binary: PathBuf,
}

impl Cross {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.emulator);
        if let Some(root) = &self.sysroot {
            cmd.args(["-L", root]);
        }
        cmd.arg(&self.binary);
        cmd
    }
}

fn binaries() -> Vec<Cross> {
    let list = std::env::var("TUNNELD_CROSS_BINARIES").unwrap_or_else(|_| {
        panic!(
            "TUNNELD_CROSS_BINARIES is not set: run the suite with tests/run, which builds the \
             ARM binaries, or set it to \"none\" to leave this test out"
        )
    });
    if list == "none" {
        return Vec::new();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    list.split(';')
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (emulator, binary) = entry
                .split_once('=')
                .unwrap_or_else(|| panic!("{entry:?} is not EMULATOR[:SYSROOT]=BINARY"));
            let (emulator, sysroot) = match emulator.split_once(':') {
                Some((e, r)) => (e, Some(r.to_owned())),
                None => (emulator, None),
            };
            let binary = root.join(binary);
            assert!(binary.exists(), "{} is missing", binary.display());
            Cross {
                emulator: emulator.to_owned(),
                sysroot,
                binary,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_builds_run_and_forward_under_qemu() {
    let list = binaries();
    if list.is_empty() {
        eprintln!("TUNNELD_CROSS_BINARIES=none: the ARM builds are not tested in this run");
        return;
    }
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for cross in &list {
        let what = cross.binary.display().to_string();
        let out = cross.command().arg("--version").output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("tunneld "),
            "{what}: {out:?}"
        );
        let mut checked = 0;
        for entry in std::fs::read_dir(&configs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            checked += 1;
            let out = cross
                .command()
                .arg("check")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what} check {}: {out:?}",
                path.display()
            );
        }
        assert!(
            checked > 0,
            "no example configuration in {}",
            configs.display()
        );

        let dir = tempfile::tempdir().unwrap();
        let local = free_port(std::net::Ipv4Addr::LOCALHOST.into());
        let socks = free_port(std::net::Ipv4Addr::LOCALHOST.into());
        let text = format!(
            "[daemon]\nsocket = \"{}\"\n{}",
            dir.path().join("tunneld.sock").display(),
            tunnel_toml(
                &sshd,
                "t",
                &format!(
                    "local = [\"{local}:127.0.0.1:{echo}\"]\nremote = [\"0:127.0.0.1:{echo}\"]\n\
                     dynamic = [\"{socks}\"]",
                    echo = echo.port()
                ),
            )
        );
        let path = dir.path().join("tunneld.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = cross.command();
        cmd.arg("run").arg("-c").arg(&path);
        let mut run = Running::start_command(cmd);
        let line = run.wait_line("remote forward active");
        let remote: u16 = line
            .split("listen=")
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        // The listeners were bound before the session: their "listening" lines came first.
        assert!(run.seen_line("listening"), "no listener was bound");
        for (kind, stream) in [
            (
                "-L",
                TcpStream::connect(("127.0.0.1", local)).await.unwrap(),
            ),
            (
                "-R",
                TcpStream::connect(("127.0.0.1", remote)).await.unwrap(),
            ),
            (
                "-D",
                tunneld_tests::socks::socks5_connect(
                    ([127, 0, 0, 1], socks).into(),
                    "127.0.0.1",
                    echo.port(),
                )
                .await
                .unwrap(),
            ),
        ] {
            echo_roundtrip(stream, format!("{kind} through {what}").as_bytes())
                .await
                .unwrap_or_else(|e| panic!("{kind} through {what}: {e}"));
        }
        run.signal(libc::SIGTERM);
        let (code, _) = run.wait_exit(STOP_BOUND);
        assert_eq!(code, Some(0), "{what}");
    }
}
