//! Running a fleet: an include folder of tunnel files (loaded, watched, a broken file
//! refused while the others run on), host key rotation learned from the server
//! (`update_host_keys`), the port a server chose for port 0 in `status --json`, and the
//! `on_state_change` hook across a server restart, hung or not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ssh_key::PublicKey;
use tokio::net::TcpStream;
use tunneld_core::known_hosts::{Verdict, check, lookup_name};
use tunneld_core::{Daemon, TunnelState};
use tunneld_tests::net::{echo_roundtrip, wait_until};
use tunneld_tests::{EchoServer, HostKeyType, Sshd};

use crate::harness::*;

fn toml_path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_include_folder_is_loaded_watched_and_a_broken_file_refused() {
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let drop_in = dir.path().join("tunnels.d");
    std::fs::create_dir(&drop_in).unwrap();
    let a = drop_in.join("a.toml");
    std::fs::write(&a, tunnel_toml(&sshd, "a", "dynamic = [\"0\"]")).unwrap();
    let svc = Service::start_in(
        dir,
        "include = [\"tunnels.d/*.toml\"]",
        &tunnel_toml(&sshd, "main", "dynamic = [\"0\"]"),
        true,
        &[],
    );
    svc.wait_status("a and main up", |s| names(s) == ["a", "main"] && all_up(s))
        .await;

    // `check` reports each file.
    let out = Command::new(tunneld_bin())
        .args(["check", "-c"])
        .arg(svc.config_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in [
        format!("{}: ok, 1 tunnel", svc.config_path().display()),
        format!("{}: ok, 1 tunnel", a.display()),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} not in:\n{stdout}"
        );
    }

    // A file renamed into the folder (as configuration management writes) is picked up.
    let staged = svc.dir.path().join("b.staged");
    std::fs::write(&staged, tunnel_toml(&sshd, "b", "dynamic = [\"0\"]")).unwrap();
    std::fs::rename(&staged, drop_in.join("b.toml")).unwrap();
    let before = svc
        .wait_status("b added by the watch", |s| {
            names(s) == ["a", "b", "main"] && all_up(s)
        })
        .await;

    // A broken file is refused, naming its own file, line and column; the rest runs on.
    let c = drop_in.join("c.toml");
    let broken = tunnel_toml(
        &sshd,
        "c",
        "dynamic = [\"0\"]\nserver_alive_interval = \"often\"",
    );
    let line = broken
        .lines()
        .position(|l| l.starts_with("server_alive_interval"))
        .unwrap()
        + 1;
    std::fs::write(&c, &broken).unwrap();
    let mut svc = svc;
    svc.run.wait_line("reload refused");
    let at = format!("{}:{line}:25: server_alive_interval", c.display());
    assert!(svc.run.seen_line(&at), "no log line with {at:?}");
    let out = svc.reload();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&at), "{at:?} not in:\n{stderr}");
    let after = svc.status();
    assert_eq!(names(&after), ["a", "b", "main"]);
    assert!(all_up(&after), "{after:#}");
    for name in ["a", "b", "main"] {
        assert_eq!(
            tunnel(&after, name)["since"],
            tunnel(&before, name)["since"],
            "{name}"
        );
        assert_eq!(tunnel(&after, name)["reconnects"], 0, "{name}");
    }

    // Fixed, then a file removed: its tunnel stops; `reload` says what it read.
    std::fs::remove_file(&c).unwrap();
    std::fs::remove_file(drop_in.join("b.toml")).unwrap();
    svc.wait_status("b removed by the watch", |s| names(s) == ["a", "main"])
        .await;
    let out = svc.reload();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("read {}: 1 tunnel", a.display())),
        "{stdout}"
    );
}

/// A tunnel to `sshd` whose known_hosts is `known_hosts`.
fn tunnel_with_known_hosts(sshd: &Sshd, name: &str, known_hosts: &Path, extra: &str) -> String {
    tunnel_toml(sshd, name, &format!("dynamic = [\"0\"]\n{extra}")).replace(
        &format!("known_hosts = \"{}\"", sshd.known_hosts().display()),
        &format!("known_hosts = \"{}\"", toml_path(known_hosts)),
    )
}

fn public(line: &str) -> PublicKey {
    PublicKey::from_openssh(line.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_host_key_is_learned_and_the_old_one_dropped() {
    let mut sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = lookup_name("127.0.0.1", sshd.port());
    // The learning tunnel's file is hashed (`ssh-keygen -H`): what it learns must be too.
    let learning = dir.path().join("learning");
    std::fs::copy(sshd.known_hosts(), &learning).unwrap();
    let hashed = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&learning)
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    let fixed = dir.path().join("fixed");
    std::fs::copy(sshd.known_hosts(), &fixed).unwrap();
    let fixed_text = std::fs::read_to_string(&fixed).unwrap();
    let text = format!(
        "{}{}",
        tunnel_with_known_hosts(&sshd, "learns", &learning, ""),
        tunnel_with_known_hosts(&sshd, "fixed", &fixed, "update_host_keys = \"no\"")
    );
    let daemon = Daemon::start(&config(&text));
    let (mut learns, mut fixed_rx) = (
        daemon.subscribe("learns").unwrap(),
        daemon.subscribe("fixed").unwrap(),
    );
    wait_state(&mut learns, TunnelState::Up).await;
    wait_state(&mut fixed_rx, TunnelState::Up).await;

    // The host's administrator adds a key; sshd announces both from its restart on.
    let old_key = public(&sshd.host_key_pub());
    let old_path = sshd.host_keys()[0].clone();
    let new_key = public(
        &sshd
            .add_host_key("ssh_host_rotated_key", HostKeyType::Ed25519)
            .unwrap(),
    );
    sshd.restart().await.unwrap();
    wait_until(UP_TIMEOUT, "the new key learned", || {
        check(std::slice::from_ref(&learning), &name, &new_key) == Verdict::Trusted
    })
    .await
    .unwrap();
    assert_eq!(
        check(std::slice::from_ref(&learning), &name, &old_key),
        Verdict::Trusted
    );
    let learned = std::fs::read_to_string(&learning).unwrap();
    assert_eq!(learned.lines().count(), 2, "{learned}");
    assert!(learned.lines().all(|l| l.starts_with("|1|")), "{learned}");
    wait_status(&mut fixed_rx, "fixed back up", |s| {
        s.reconnects == 1 && s.state == TunnelState::Up
    })
    .await;

    // Later the old key goes: the learning tunnel connects with the new one and forgets
    // the old; the other, which learned nothing, is locked out as ssh would be.
    sshd.remove_host_key(&old_path).unwrap();
    sshd.restart().await.unwrap();
    wait_status(&mut learns, "learns up on the new key", |s| {
        s.reconnects == 2 && s.state == TunnelState::Up
    })
    .await;
    wait_until(UP_TIMEOUT, "the old key dropped", || {
        check(std::slice::from_ref(&learning), &name, &old_key) != Verdict::Trusted
    })
    .await
    .unwrap();
    let learned = std::fs::read_to_string(&learning).unwrap();
    assert_eq!(learned.lines().count(), 1, "{learned}");
    assert_eq!(
        check(std::slice::from_ref(&learning), &name, &new_key),
        Verdict::Trusted
    );
    let locked_out = wait_status(&mut fixed_rx, "fixed refused the new key", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
    })
    .await;
    assert_ne!(locked_out.state, TunnelState::Up);
    assert_eq!(std::fs::read_to_string(&fixed).unwrap(), fixed_text);
    daemon.shutdown().await;
}

/// A hook script appending `TUNNEL|STATE|PREVIOUS|HOST|REMOTE_LISTEN|LAST_ERROR` to its
/// first argument.
fn recorder(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("record.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s\\n' \"$TUNNELD_TUNNEL\" \"$TUNNELD_STATE\" \
         \"$TUNNELD_PREVIOUS_STATE\" \"$TUNNELD_HOST\" \"$TUNNELD_REMOTE_LISTEN\" \
         \"$TUNNELD_LAST_ERROR\" >> \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn hook_lines(out: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_0_shows_in_status_and_the_hook_follows_a_server_restart() {
    let mut sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (script, out) = (recorder(dir.path()), dir.path().join("hook.log"));
    let extra = format!(
        "remote = [\"0:127.0.0.1:{}\"]\non_state_change = [\"{}\", \"{}\"]",
        echo.port(),
        toml_path(&script),
        toml_path(&out)
    );
    // A backoff long enough that the hook's `backoff` run is over before `connecting`.
    let tunnels = tunnel_toml(&sshd, "box", &extra).replace(
        "backoff = { initial = \"50ms\", max = \"500ms\" }",
        "backoff = { initial = \"2s\", max = \"2s\", jitter = 0.0 }",
    );
    let svc = Service::start_in(dir, "", &tunnels, false, &[]);
    let s = svc.wait_status("up", all_up).await;
    let listen = tunnel(&s, "box")["forwards"][0]["listen"].clone();
    let bound = listen[0]
        .as_str()
        .unwrap_or_else(|| panic!("{s:#}"))
        .to_owned();
    let port: u16 = bound.strip_prefix("localhost:").unwrap().parse().unwrap();
    assert_ne!(port, 0);
    // The server really listens there, for us.
    echo_roundtrip(
        TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        b"chosen port",
    )
    .await
    .unwrap();
    let table = String::from_utf8(svc.tunneld(&["status"]).stdout).unwrap();
    assert!(table.contains(&bound), "{table}");
    wait_until(UP_TIMEOUT, "the hook told of up", || {
        !hook_lines(&out).is_empty()
    })
    .await
    .unwrap();
    let host = format!("127.0.0.1:{}", sshd.port());
    assert_eq!(
        hook_lines(&out)[0],
        ["box", "up", "connecting", &host, &bound, ""]
    );

    sshd.restart().await.unwrap();
    let s = svc
        .wait_status("up again", |s| {
            tunnel(s, "box")["reconnects"] == 1 && all_up(s)
        })
        .await;
    let rebound = tunnel(&s, "box")["forwards"][0]["listen"][0]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(UP_TIMEOUT, "the hook told of up again", || {
        let l = hook_lines(&out);
        l.len() >= 4 && l.last().is_some_and(|l| l[1] == "up")
    })
    .await
    .unwrap();
    let lines = hook_lines(&out);
    let states: Vec<&str> = lines.iter().map(|l| l[1].as_str()).collect();
    assert_eq!(states[..3], ["up", "backoff", "connecting"], "{lines:?}");
    for pair in lines.windows(2) {
        assert_eq!(pair[1][2], pair[0][1], "previous state chain: {lines:?}");
    }
    // While down the server holds nothing for us, and the hook hears why.
    assert_eq!(lines[1][4], "", "{lines:?}");
    assert!(!lines[1][5].is_empty(), "{lines:?}");
    assert_eq!(lines.last().unwrap()[4], rebound, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_hook_does_not_delay_reconnection() {
    let mut sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hook.log");
    // Says it ran, then never ends (until killed after 30 s).
    let hook = format!(
        "on_state_change = [\"/bin/sh\", \"-c\", \"echo \\\"$TUNNELD_STATE\\\" >> \\\"$0\\\"; exec sleep 600\", \"{}\"]",
        toml_path(&out)
    );
    let text = tunnel_toml(&sshd, "t", &format!("dynamic = [\"0\"]\n{hook}"));
    let daemon = Daemon::start(&config(&text));
    let mut rx = daemon.subscribe("t").unwrap();
    wait_state(&mut rx, TunnelState::Up).await;
    wait_until(UP_TIMEOUT, "the hook started", || {
        std::fs::read_to_string(&out).unwrap_or_default() == "up\n"
    })
    .await
    .unwrap();

    let restarted = Instant::now();
    sshd.restart().await.unwrap();
    wait_status(&mut rx, "back up", |s| {
        s.reconnects == 1 && s.state == TunnelState::Up
    })
    .await;
    assert!(
        restarted.elapsed() < tunneld_core::HOOK_TIMEOUT,
        "{:?}",
        restarted.elapsed()
    );
    // The first run still hangs; the changes since wait for it.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "up\n");
    daemon.shutdown().await;
}

/// Reads one HTTP request from `listener` (head and `Content-Length` body), answers 200,
/// and returns the body.
async fn receive_post(listener: &tokio::net::TcpListener) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "request cut short: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if body.len() >= length {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                return body.to_owned();
            }
        }
    };
    tokio::time::timeout(UP_TIMEOUT, read)
        .await
        .expect("a webhook call in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_hook_posts_each_change_to_a_webhook() {
    let sshd = Sshd::start().await.unwrap();
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/tunnels", webhook.local_addr().unwrap());
    let script = std::fs::canonicalize(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/on-state-change.sh"),
    )
    .unwrap();
    let extra = format!(
        "remote = [\"0:127.0.0.1:9\"]\non_state_change = [\"{}\"]",
        toml_path(&script)
    );
    let mut svc = Service::start_in(
        tempfile::tempdir().unwrap(),
        "",
        &tunnel_toml(&sshd, "box", &extra),
        false,
        &[("WEBHOOK_URL", &url)],
    );
    let body = receive_post(&webhook).await;
    let got: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(got["tunnel"], "box", "{got}");
    assert_eq!(got["state"], "up", "{got}");
    assert_eq!(got["previous_state"], "connecting", "{got}");
    assert_eq!(got["host"], format!("127.0.0.1:{}", sshd.port()), "{got}");
    let status = svc.status();
    assert_eq!(
        got["remote_listen"],
        tunnel(&status, "box")["forwards"][0]["listen"][0],
        "{got}"
    );
    assert!(
        got["remote_listen"]
            .as_str()
            .unwrap()
            .starts_with("localhost:"),
        "{got}"
    );
    svc.run.wait_line("on_state_change: exited with status 0");
}
