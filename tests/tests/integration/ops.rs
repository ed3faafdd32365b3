//! Running as a service: the control socket, `tunneld status` and `tunneld reload`,
//! reload by difference (SIGHUP, the socket, the file watch), systemd notify.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpStream;
use tunneld_tests::net::{echo_roundtrip, free_port};
use tunneld_tests::{EchoServer, Sshd};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_restarts_while_unchanged_tunnels_carry_on() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let keep_port = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let keep = tunnel_toml(
        &sshd,
        "keep",
        &format!("local = [\"{keep_port}:127.0.0.1:{}\"]", echo.port()),
    );
    let gone = tunnel_toml(&sshd, "gone", "dynamic = [\"0\"]");
    let change = tunnel_toml(&sshd, "change", "dynamic = [\"0\"]");
    let svc = Service::start(&format!("{keep}{gone}{change}"), false, &[]);
    svc.wait_status("all up", all_up).await;

    let mut long_lived = TcpStream::connect(("127.0.0.1", keep_port)).await.unwrap();
    echo_roundtrip(&mut long_lived, b"before").await.unwrap();
    let logins_before = sshd.count_in_log("Accepted publickey");

    let changed = change.replace("connect_timeout = \"5s\"", "connect_timeout = \"6s\"");
    let added = tunnel_toml(&sshd, "new", "dynamic = [\"0\"]");
    svc.write(&format!("{keep}{changed}{added}"));
    let out = svc.reload();
    assert!(out.status.success(), "{out:?}");
    let summary = String::from_utf8(out.stdout).unwrap();
    for line in [
        "added: new",
        "removed: gone",
        "restarted: change",
        "unchanged: keep",
    ] {
        assert!(summary.contains(line), "{line:?} missing in:\n{summary}");
    }
    let s = svc.wait_status("new set up", all_up).await;
    assert_eq!(names(&s), vec!["change", "keep", "new"]);
    // Two new logins (new, change), none for keep; its connection carries on.
    assert_eq!(sshd.count_in_log("Accepted publickey"), logins_before + 2);
    echo_roundtrip(&mut long_lived, b"after").await.unwrap();
    assert_eq!(tunnel(&s, "keep")["reconnects"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_only_change_keeps_the_session() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let (p1, p2) = (
        free_port(std::net::Ipv4Addr::LOCALHOST.into()),
        free_port(std::net::Ipv4Addr::LOCALHOST.into()),
    );
    let rport = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let first = format!("local = [\"{p1}:127.0.0.1:{}\"]", echo.port());
    let svc = Service::start(&tunnel_toml(&sshd, "t", &first), false, &[]);
    let before = svc.wait_status("up", all_up).await;
    let logins = sshd.count_in_log("Accepted publickey");
    let mut open = TcpStream::connect(("127.0.0.1", p1)).await.unwrap();
    echo_roundtrip(&mut open, b"kept").await.unwrap();

    // Swap the local forward for another, add a remote one; SIGHUP this time.
    let second = format!(
        "local = [\"{p2}:127.0.0.1:{}\"]\nremote = [\"127.0.0.1:{rport}:127.0.0.1:{}\"]",
        echo.port(),
        echo.port()
    );
    svc.write(&tunnel_toml(&sshd, "t", &second));
    svc.run.signal(libc::SIGHUP);
    let after = svc
        .wait_status("new forwards active", |s| {
            let f = tunnel(s, "t")["forwards"].as_array().unwrap().clone();
            f.len() == 2 && f.iter().all(|f| f["state"] == "active")
        })
        .await;
    let (b, a) = (tunnel(&before, "t"), tunnel(&after, "t"));
    assert_eq!(
        (a["since"].clone(), a["reconnects"].clone()),
        (b["since"].clone(), b["reconnects"].clone())
    );
    assert_eq!(
        sshd.count_in_log("Accepted publickey"),
        logins,
        "no new login: {}",
        sshd.log()
    );
    echo_roundtrip(
        TcpStream::connect(("127.0.0.1", p2)).await.unwrap(),
        b"new local",
    )
    .await
    .unwrap();
    echo_roundtrip(
        TcpStream::connect(("127.0.0.1", rport)).await.unwrap(),
        b"new remote",
    )
    .await
    .unwrap();
    // The removed listener is closed; its open connection still works.
    assert!(TcpStream::connect(("127.0.0.1", p1)).await.is_err());
    echo_roundtrip(&mut open, b"still open").await.unwrap();

    // Removing the remote forward gives the port back on the server.
    svc.write(&tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{p2}:127.0.0.1:{}\"]", echo.port()),
    ));
    assert!(svc.reload().status.success());
    tunneld_tests::net::wait_port_closed(([127, 0, 0, 1], rport).into(), UP_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(sshd.count_in_log("Accepted publickey"), logins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing_through_reload_or_the_watch() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let port = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let good = tunnel_toml(
        &sshd,
        "t",
        &format!("local = [\"{port}:127.0.0.1:{}\"]", echo.port()),
    );
    let mut svc = Service::start(&good, true, &[]);
    let before = svc.wait_status("up", all_up).await;

    let bad = good.replace("connect_timeout = \"5s\"", "connect_timeout = \"soon\"");
    std::fs::write(svc.config_path(), daemon_table(svc.dir.path(), true) + &bad).unwrap();
    // The watch saw it and refused it.
    svc.run.wait_line("reload refused");
    let out = svc.reload();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let file = svc.config_path().display().to_string();
    assert!(stderr.contains(&format!("{file}:")), "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
    assert!(
        stderr.contains("kept its previous configuration"),
        "{stderr}"
    );
    // A file that is not even TOML: `reload -c` still finds the daemon's socket in it.
    let broken = format!(
        "{}{}",
        daemon_table(svc.dir.path(), true),
        good.replace("port = ", "port = \"x")
    );
    std::fs::write(svc.config_path(), broken).unwrap();
    let out = Command::new(tunneld_bin())
        .args(["reload", "-c"])
        .arg(svc.config_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid TOML"),
        "{out:?}"
    );
    let after = svc.status();
    assert_eq!(tunnel(&after, "t")["since"], tunnel(&before, "t")["since"]);
    echo_roundtrip(
        TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        b"still serving",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_applies_rename_over_saves_and_symlink_swaps() {
    let sshd = Sshd::start().await.unwrap();
    let one = tunnel_toml(&sshd, "one", "dynamic = [\"0\"]");
    let two = tunnel_toml(&sshd, "two", "dynamic = [\"0\"]");
    let three = tunnel_toml(&sshd, "three", "dynamic = [\"0\"]");
    let svc = Service::start(&one, true, &[]);
    svc.wait_status("up", all_up).await;
    let path = svc.config_path();
    let header = daemon_table(svc.dir.path(), true);

    // An editor's save: write a temporary file, rename it over the config.
    let tmp = svc.dir.path().join(".tunneld.toml.swp");
    std::fs::write(&tmp, format!("{header}{one}{two}")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    svc.wait_status("two added by rename", |s| names(s) == ["one", "two"])
        .await;

    // A deploy tool's symlink swap: the config becomes a link, then the link is replaced.
    let a = svc.dir.path().join("a.toml");
    std::fs::write(&a, format!("{header}{one}{two}")).unwrap();
    let link = svc.dir.path().join("link.tmp");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    std::fs::rename(&link, &path).unwrap();
    let b = svc.dir.path().join("b.toml");
    std::fs::write(&b, format!("{header}{three}")).unwrap();
    std::os::unix::fs::symlink(&b, &link).unwrap();
    std::fs::rename(&link, &path).unwrap();
    svc.wait_status("swapped to three", |s| names(s) == ["three"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(UP_TIMEOUT)).unwrap();
    let mut svc = Service::start(
        &tunnel_toml(&sshd, "t", "dynamic = [\"0\"]"),
        false,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen: Vec<String> = Vec::new();
    let mut expect = |needle: &str| {
        let deadline = Instant::now() + UP_TIMEOUT;
        while Instant::now() < deadline {
            if seen.iter().any(|m| m.contains(needle)) {
                return;
            }
            let mut buf = [0u8; 4096];
            if let Ok(n) = notify.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        panic!("no {needle:?} among {seen:?}");
    };
    expect("READY=1");
    expect("STATUS=0/1 tunnels up");
    expect("STATUS=1/1 tunnels up");
    expect("WATCHDOG=1");
    assert!(svc.reload().status.success());
    expect("RELOADING=1\nMONOTONIC_USEC=");
    svc.run.signal(libc::SIGTERM);
    expect("STOPPING=1");
    assert_eq!(svc.run.wait_exit(Duration::from_secs(5)).0, Some(0));
    // READY=1 came again after the reload.
    let reloading = seen.iter().position(|m| m.contains("RELOADING=1")).unwrap();
    assert!(
        seen[reloading..].iter().any(|m| m.contains("READY=1")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_the_schema_for_up_degraded_and_backoff() {
    let sshd = Sshd::start().await.unwrap();
    let echo = EchoServer::start().await.unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = squatter.local_addr().unwrap().port();
    let nothing = free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let up = tunnel_toml(
        &sshd,
        "up",
        &format!("local = [\"0:127.0.0.1:{}\"]", echo.port()),
    );
    let degraded = tunnel_toml(
        &sshd,
        "degraded",
        &format!("remote = [\"127.0.0.1:{held}:127.0.0.1:{}\"]", echo.port()),
    );
    let down = tunnel_toml(&sshd, "down", "dynamic = [\"0\"]").replace(
        &format!("port = {}", sshd.port()),
        &format!("port = {nothing}"),
    );
    let svc = Service::start(&format!("{up}{degraded}{down}"), false, &[]);
    let s = svc
        .wait_status("up, degraded, backoff", |s| {
            tunnel(s, "up")["state"] == "up"
                && tunnel(s, "degraded")["state"] == "degraded"
                && tunnel(s, "down")["state"] == "backoff"
        })
        .await;

    // Exactly the SPEC's keys and types.
    let top: Vec<&String> = s.as_object().unwrap().keys().collect();
    assert_eq!(top, ["tunnels"]);
    for t in s["tunnels"].as_array().unwrap() {
        let mut keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "forwards",
                "host",
                "last_error",
                "name",
                "reconnects",
                "since",
                "state"
            ]
        );
        assert!(t["name"].is_string() && t["state"].is_string() && t["host"].is_string());
        assert!(t["reconnects"].is_u64());
        assert!(t["last_error"].is_null() || t["last_error"].is_string());
        let since = t["since"].as_str().unwrap();
        assert_eq!(
            (since.len(), &since[10..11], &since[19..]),
            (20, "T", "Z"),
            "{since}"
        );
        for f in t["forwards"].as_array().unwrap() {
            let mut keys: Vec<&String> = f.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "bytes_in",
                    "bytes_out",
                    "connections",
                    "error",
                    "kind",
                    "listen",
                    "spec",
                    "state"
                ]
            );
            assert!(["local", "remote", "dynamic"].contains(&f["kind"].as_str().unwrap()));
            // What is bound while active, null otherwise.
            assert_eq!(f["listen"].is_array(), f["state"] == "active", "{f}");
            assert!(f["connections"].is_u64() && f["bytes_in"].is_u64() && f["bytes_out"].is_u64());
        }
    }
    assert_eq!(
        tunnel(&s, "up")["host"],
        format!("127.0.0.1:{}", sshd.port())
    );
    assert!(tunnel(&s, "up")["last_error"].is_null());
    let f = &tunnel(&s, "degraded")["forwards"][0];
    assert_eq!(
        (f["kind"].as_str(), f["state"].as_str()),
        (Some("remote"), Some("refused"))
    );
    assert!(f["error"].as_str().unwrap().contains("refused"));
    // A local forward on port 0 shows the port it drew, where it really listens.
    let local = &tunnel(&s, "up")["forwards"][0];
    let at: std::net::SocketAddr = local["listen"][0].as_str().unwrap().parse().unwrap();
    assert!(at.ip().is_loopback() && at.port() != 0, "{local}");
    echo_roundtrip(TcpStream::connect(at).await.unwrap(), b"through listen")
        .await
        .unwrap();
    assert!(
        tunnel(&s, "down")["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );

    // The table for people, one line per tunnel.
    let out = svc.tunneld(&["status"]);
    let table = String::from_utf8(out.stdout).unwrap();
    eprintln!("{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().next().unwrap().starts_with("NAME"));
    drop(squatter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_is_private_and_checks_its_peer() {
    let sshd = Sshd::start().await.unwrap();
    let svc = Service::start(&tunnel_toml(&sshd, "t", "dynamic = [\"0\"]"), false, &[]);
    let mode = std::fs::metadata(svc.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the peer-credential check needs another uid; checked the mode only");
        return;
    }
    // Open the file mode up so that only the peer-credential check stands in the way.
    std::fs::set_permissions(svc.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(tunneld_bin())
        .args(["status", "--socket"])
        .arg(svc.socket())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
    // Root and the owner still get through.
    assert!(svc.status()["tunnels"].is_array());
}

/// With `socket_group`, the socket is 0660 in that group, and the peer check lets in its
/// members (primary or supplementary group) and no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_group_members_get_in_and_others_do_not() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running clients as other users needs root");
        return;
    }
    let sshd = Sshd::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("tunneld.toml");
    let socket = dir.path().join("tunneld.sock");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nsocket_group = \"nogroup\"\n{}",
            socket.display(),
            tunnel_toml(&sshd, "t", "dynamic = [\"0\"]")
        ),
    )
    .unwrap();
    let mut run = Running::start(&config, &[]);
    run.wait_line("tunneld started");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 65534);
    // Open the mode up so that only the peer-credential check decides.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let status_as = |gid: u32, extra_group: Option<libc::gid_t>| {
        let mut cmd = Command::new(tunneld_bin());
        cmd.args(["status", "--socket"]).arg(&socket);
        // SAFETY: setgroups/setgid/setuid are async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(move || {
                let groups: Vec<libc::gid_t> = extra_group.into_iter().collect();
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(4242) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.output().unwrap()
    };
    let primary = status_as(65534, None);
    assert!(primary.status.success(), "{primary:?}");
    let supplementary = status_as(4242, Some(65534));
    assert!(supplementary.status.success(), "{supplementary:?}");
    let stranger = status_as(4242, None);
    assert_eq!(stranger.status.code(), Some(1), "{stranger:?}");
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("permission denied"),
        "{stranger:?}"
    );
}

#[test]
fn no_daemon_means_exit_69() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nobody-here.sock");
    for cmd in ["status", "reload"] {
        let out = Command::new(tunneld_bin())
            .args([cmd, "--socket"])
            .arg(&sock)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(69), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no tunneld answers"),
            "{out:?}"
        );
    }
}

#[tokio::test]
async fn garbage_on_the_control_socket_gets_an_error_not_a_crash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sshd = Sshd::start().await.unwrap();
    let svc = Service::start(&tunnel_toml(&sshd, "t", "dynamic = [\"0\"]"), false, &[]);
    for junk in [
        &b"hello\n"[..],
        b"{\"version\":9,\"command\":\"status\"}\n",
        &[0xff; 100_000],
    ] {
        let mut s = tokio::net::UnixStream::connect(svc.socket()).await.unwrap();
        let _ = s.write_all(junk).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(v["ok"], false, "{v}");
    }
    assert!(svc.status()["tunnels"].is_array());
}
