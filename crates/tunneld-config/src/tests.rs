//! Whole-file tests: defaults, layering, positions of every error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse_ok(text: &str) -> Config {
    parse_with_env(Path::new("t.toml"), text, &env::fixed())
        .unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

/// The errors, one `FILE:LINE:COL: message` string each.
fn parse_err(text: &str) -> Vec<String> {
    match parse_with_env(Path::new("t.toml"), text, &env::fixed()) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_errors(text: &str, want: &[&str]) {
    let got = parse_err(text);
    assert_eq!(
        got.len(),
        want.len(),
        "error count; got:\n{}",
        got.join("\n")
    );
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "\n got: {g}\nwant: {w}…");
    }
}

const SPEC_EXAMPLE: &str = r#"
[daemon]
socket = "/run/tunneld/tunneld.sock"
watch = true
metrics = "127.0.0.1:9337"
log_level = "info"

[defaults]
user = "tunnel"
identity_file = "/etc/tunneld/id_ed25519"
known_hosts = "/etc/tunneld/known_hosts"
strict_host_key_checking = "yes"
server_alive_interval = "10s"
server_alive_count_max = 3
connect_timeout = "15s"
backoff = { initial = "1s", max = "60s", multiplier = 2.0, jitter = 0.2 }
stable_after = "30s"

[tunnels.home-ssh]
host = "public.example.com"
port = 22
remote = ["2222:localhost:22"]

[tunnels.intranet]
host = "bastion.example.com"
local = ["8080:intranet.lan:80", "0.0.0.0:5432:db.lan:5432"]
dynamic = ["1080"]
proxy_jump = "jump@gateway.example.com:22"
"#;

#[test]
fn spec_example_parses() {
    let c = parse_ok(SPEC_EXAMPLE);
    assert_eq!(c.path, PathBuf::from("t.toml"));
    assert_eq!(
        c.daemon,
        DaemonConfig {
            socket: "/run/tunneld/tunneld.sock".into(),
            socket_group: None,
            watch: true,
            metrics: Some("127.0.0.1:9337".into()),
            log_level: "info".into(),
            max_concurrent_handshakes: 8,
        }
    );
    assert_eq!(c.tunnels.len(), 2);
    let home = &c.tunnels["home-ssh"];
    assert_eq!(home.name, "home-ssh");
    assert_eq!(
        home.hosts,
        [HostPort {
            host: "public.example.com".into(),
            port: 22
        }]
    );
    assert_eq!(home.user, "tunnel");
    assert_eq!(
        home.identity_files,
        [PathBuf::from("/etc/tunneld/id_ed25519")]
    );
    assert_eq!(
        home.known_hosts,
        [PathBuf::from("/etc/tunneld/known_hosts")]
    );
    assert_eq!(home.remote.len(), 1);
    assert_eq!(home.remote[0].spec, "2222:localhost:22");
    let intranet = &c.tunnels["intranet"];
    assert_eq!(intranet.local.len(), 2);
    assert_eq!(intranet.dynamic.len(), 1);
    assert_eq!(
        intranet.proxy_jump,
        [JumpHost {
            user: Some("jump".into()),
            host: "gateway.example.com".into(),
            port: 22
        }]
    );
}

#[test]
fn built_in_defaults() {
    let c = parse_ok("[tunnels.t]\nhost = \"h\"\ndynamic = [\"1080\"]\n");
    assert_eq!(
        c.daemon,
        DaemonConfig {
            socket: "/run/user/1000/tunneld.sock".into(),
            socket_group: None,
            watch: false,
            metrics: None,
            log_level: "info".into(),
            max_concurrent_handshakes: 8,
        }
    );
    let t = &c.tunnels["t"];
    let want = TunnelConfig {
        name: "t".into(),
        hosts: vec![HostPort {
            host: "h".into(),
            port: 22,
        }],
        user: "alice".into(),
        identity_files: vec![],
        certificate_files: vec![],
        known_hosts: vec![
            "/home/alice/.ssh/known_hosts".into(),
            "/etc/ssh/ssh_known_hosts".into(),
        ],
        strict_host_key_checking: StrictHostKeyChecking::Yes,
        server_alive_interval: Duration::from_secs(10),
        server_alive_count_max: 3,
        failover_after: 3,
        max_connections: 1024,
        permit_remote_open: crate::PermitRemoteOpen::Any,
        stream_local_bind_unlink: true,
        stream_local_bind_mask: 0o177,
        proxy: crate::ProxySettings::default(),
        connect_timeout: Duration::from_secs(15),
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
        },
        stable_after: Duration::from_secs(30),
        gateway_ports: false,
        local: vec![],
        remote: vec![],
        dynamic: vec![forward::parse_dynamic("1080", false).unwrap()],
        proxy_jump: vec![],
    };
    assert_eq!(*t, want);
}

#[test]
fn empty_file_has_no_tunnels() {
    assert!(parse_ok("").tunnels.is_empty());
}

#[test]
fn defaults_layering() {
    let c = parse_ok(
        r#"
[defaults]
user = "deploy"
port = 2200
server_alive_interval = "5s"
gateway_ports = true
strict_host_key_checking = "accept-new"
backoff = { max = "5m", jitter = 0 }
proxy_jump = "gw"

[tunnels.a]
host = ["a1", "a2:22"]
local = ["8080:h:80"]

[tunnels.b]
host = "b"
user = "other"
server_alive_interval = "1m30s"
gateway_ports = false
strict_host_key_checking = false
backoff = { initial = "2s", multiplier = 1 }
proxy_jump = "none"
local = ["8081:h:80"]
"#,
    );
    let a = &c.tunnels["a"];
    assert_eq!(a.user, "deploy");
    assert_eq!(
        a.hosts,
        [
            HostPort {
                host: "a1".into(),
                port: 2200
            },
            HostPort {
                host: "a2".into(),
                port: 22
            }
        ]
    );
    assert_eq!(a.server_alive_interval, Duration::from_secs(5));
    assert_eq!(a.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
    assert_eq!(
        a.local[0].listen,
        Listen::Tcp {
            bind: LocalBind::Any,
            port: 8080
        }
    );
    assert_eq!(
        a.backoff,
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.0
        }
    );
    assert_eq!(
        a.proxy_jump,
        [JumpHost {
            user: None,
            host: "gw".into(),
            port: 22
        }]
    );

    let b = &c.tunnels["b"];
    assert_eq!(b.user, "other");
    assert_eq!(
        b.hosts,
        [HostPort {
            host: "b".into(),
            port: 2200
        }]
    );
    assert_eq!(b.server_alive_interval, Duration::from_secs(90));
    assert_eq!(b.strict_host_key_checking, StrictHostKeyChecking::No);
    assert_eq!(
        b.local[0].listen,
        Listen::Tcp {
            bind: LocalBind::Loopback,
            port: 8081
        }
    );
    // Field by field: tunnel over [defaults] over built-in.
    assert_eq!(
        b.backoff,
        Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
            multiplier: 1.0,
            jitter: 0.0
        }
    );
    assert!(b.proxy_jump.is_empty());
}

#[test]
fn host_lists() {
    let c = parse_ok(
        r#"
[tunnels.t]
host = ["a.example.com", "b.example.com:2222", "[2001:db8::1]:22", "2001:db8::2", "[::1]"]
port = 2022
remote = ["1080"]
"#,
    );
    let got: Vec<String> = c.tunnels["t"]
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "a.example.com:2022",
            "b.example.com:2222",
            "[2001:db8::1]:22",
            "[2001:db8::2]:2022",
            "[::1]:2022"
        ]
    );
}

#[test]
fn tilde_expansion_in_paths() {
    let c = parse_ok(
        r#"
[daemon]
socket = "~/tunneld.sock"
[defaults]
identity_file = ["~/.ssh/id_ed25519", "/etc/tunneld/key"]
known_hosts = "~/.ssh/known_hosts"
[tunnels.t]
host = "h"
local = ["1:h:2"]
"#,
    );
    assert_eq!(c.daemon.socket, PathBuf::from("/home/alice/tunneld.sock"));
    let t = &c.tunnels["t"];
    assert_eq!(
        t.identity_files,
        [
            PathBuf::from("/home/alice/.ssh/id_ed25519"),
            PathBuf::from("/etc/tunneld/key")
        ]
    );
    assert_eq!(
        t.known_hosts,
        [PathBuf::from("/home/alice/.ssh/known_hosts")]
    );
}

#[test]
fn many_errors_reported_at_once_with_positions() {
    let text = r#"[daemon]
log_level = "verbose"
watch = "yes"

[defaults]
host = "x"
server_alive_interval = 10

[tunnels.web]
hots = "a"
local = ["8080:h:80", "99999:h:80", "8080:h"]

[tunnels.db]
host = "db.example.com"
remote = ["2222:localhost:0"]
backoff = { initial = "5s", max = "1s", jiter = 0.1 }
"#;
    assert_errors(
        text,
        &[
            "t.toml:2:13: log_level \"verbose\" is unknown; use one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
            "t.toml:3:9: watch must be true or false, not a string",
            "t.toml:6:1: host cannot be set in [defaults]; set it in each [tunnels.NAME] table",
            "t.toml:7:25: server_alive_interval must be a string like \"10s\", not an integer",
            "t.toml:9:10: tunnel \"web\" has no host; add host = \"server.example.com\"",
            "t.toml:10:1: unknown key \"hots\" in [tunnels.web]; did you mean \"host\"?",
            "t.toml:11:23: invalid local forward \"99999:h:80\": listen port 99999 is out of range; use 0-65535",
            "t.toml:11:37: invalid local forward \"8080:h\": missing target port; expected",
            "t.toml:15:11: invalid remote forward \"2222:localhost:0\": target port 0 is not valid; use 1-65535",
            "t.toml:16:11: backoff max (1s) is less than initial (5s); raise max or lower initial",
            "t.toml:16:41: unknown key \"jiter\" in backoff; did you mean \"jitter\"?",
        ],
    );
}

#[test]
fn single_errors() {
    // (file, expected first-and-only error)
    let t = |body: &str| format!("[tunnels.t]\nhost = \"h\"\nlocal = [\"1:h:2\"]\n{body}\n");
    let cases: Vec<(String, &str)> = vec![
        (
            "x = 1\n".into(),
            "t.toml:1:1: unknown key \"x\" in the top level; expected one of: daemon, defaults, tunnels",
        ),
        (
            "[tunnel.a]\nhost = \"h\"\n".into(),
            "t.toml:1:2: unknown key \"tunnel\" in the top level; did you mean \"tunnels\"?",
        ),
        (
            "daemon = 1\n".into(),
            "t.toml:1:10: daemon must be a table ([daemon]), not an integer",
        ),
        (
            "[[tunnels]]\n".into(),
            "t.toml:1:1: tunnels must be a table of [tunnels.NAME] tables, not an array",
        ),
        (
            "[daemon]\nsocket = \"\"\n".into(),
            "t.toml:2:10: socket is empty; write a path or remove the key",
        ),
        (
            "[daemon]\nmetrics = \"localhost:9\"\n".into(),
            "t.toml:2:11: metrics address \"localhost:9\" is not IP:PORT",
        ),
        (
            "[daemon]\nmax_concurrent_handshakes = 0\n".into(),
            "t.toml:2:29: max_concurrent_handshakes must be at least 1, not 0",
        ),
        (
            "[daemon]\nSocket = \"/x\"\n".into(),
            "t.toml:2:1: unknown key \"Socket\" in [daemon]; did you mean \"socket\"?",
        ),
        (
            "[defaults]\nlocal = []\n".into(),
            "t.toml:2:1: local cannot be set in [defaults]",
        ),
        (
            "[defaults]\nbackoff = { initial = \"2m\" }\n".into(),
            "t.toml:2:11: backoff max (60s) is less than initial (120s)",
        ),
        (
            "[tunnels.\"a b\"]\nhost = \"h\"\ndynamic = [\"1\"]\n".into(),
            "t.toml:1:10: tunnel name \"a b\" may contain only letters, digits, '_', '.' and '-'",
        ),
        (
            "[tunnels.t]\nhost = \"h\"\n".into(),
            "t.toml:1:10: tunnel \"t\" has no forwards; add local, remote or dynamic",
        ),
        (
            "[tunnels.t]\nhost = \"h\"\nlocal = []\n".into(),
            "t.toml:1:10: tunnel \"t\" has only empty forward lists",
        ),
        (
            "[tunnels.t]\nhost = \"h\"\nlocal = [8080]\n".into(),
            "t.toml:3:10: entries of local must be strings (an ssh forward string), not an integer",
        ),
        (
            "[tunnels.t]\nhost = \"h\"\nremote = 2222\n".into(),
            "t.toml:3:10: remote must be an ssh forward string or an array of them, not an integer",
        ),
        (
            "tunnels.t = 5\n".into(),
            "t.toml:1:13: tunnels.t must be a table ([tunnels.t]), not an integer",
        ),
        (
            t("port = 0"),
            "t.toml:4:8: port must be between 1 and 65535, not 0",
        ),
        (
            t("port = \"22\""),
            "t.toml:4:8: port must be an integer, not a string",
        ),
        (t("host = 1"), "t.toml:4:1: invalid TOML: duplicate key"),
        (
            t("user = \"\""),
            "t.toml:4:8: user is empty; write a user name or remove the key",
        ),
        (
            t("connect_timeout = \"0s\""),
            "t.toml:4:19: connect_timeout must be greater than 0",
        ),
        (
            t("server_alive_interval = \"10\""),
            "t.toml:4:25: server_alive_interval: invalid duration \"10\": durations need a unit, e.g. \"10s\"",
        ),
        (
            t("server_alive_count_max = 0"),
            "t.toml:4:26: server_alive_count_max must be at least 1, not 0",
        ),
        (
            t("permit_remote_open = [\"a:1\", \"b\"]"),
            "t.toml:4:30: permit_remote_open entry \"b\": no port (expected host:port, [IPv6]:port, * for any host or port)",
        ),
        (
            t("stream_local_bind_mask = \"0999\""),
            "t.toml:4:26: stream_local_bind_mask must be an octal mask like \"0177\", not \"0999\"",
        ),
        (
            t("failover_after = -2"),
            "t.toml:4:18: failover_after must be at least 1, not -2",
        ),
        (
            t("max_connections = 0"),
            "t.toml:4:19: max_connections must be at least 1, not 0",
        ),
        (
            t("strict_host_key_checking = \"ask\""),
            "t.toml:4:28: strict_host_key_checking \"ask\" is impossible in a daemon",
        ),
        (
            t("strict_host_key_checking = \"maybe\""),
            "t.toml:4:28: strict_host_key_checking \"maybe\" is unknown; use \"yes\", \"accept-new\" or \"no\"",
        ),
        (
            t("backoff = \"1s\""),
            "t.toml:4:11: backoff must be an inline table like",
        ),
        (
            t("backoff = { multiplier = 0.5 }"),
            "t.toml:4:26: backoff.multiplier must be at least 1.0, not 0.5",
        ),
        (
            t("backoff = { jitter = 1.5 }"),
            "t.toml:4:22: backoff.jitter must be between 0.0 and 1.0, not 1.5",
        ),
        (
            t("backoff = { initial = \"0s\" }"),
            "t.toml:4:23: backoff.initial must be greater than 0",
        ),
        (
            t("gateway_ports = 1"),
            "t.toml:4:17: gateway_ports must be true or false, not an integer",
        ),
        (
            t("identity_file = \"~bob/id\""),
            "t.toml:4:17: identity_file: \"~bob/id\": only \"~/\" is expanded; write the full path",
        ),
        (
            t("known_hosts = [\"/a\", 3]"),
            "t.toml:4:22: entries of known_hosts must be strings (a path), not an integer",
        ),
        (
            t("proxy_jump = \"a,,b\""),
            "t.toml:4:14: proxy_jump \"a,,b\" has an empty hop",
        ),
        (
            t("proxy_jump = [\"a\"]"),
            "t.toml:4:14: proxy_jump must be a string like \"user@jump.example.com:22\", not an array",
        ),
        (
            t("LocalForward = []"),
            "t.toml:4:1: unknown key \"LocalForward\" in [tunnels.t]; did you mean \"local\"?",
        ),
        (
            "[tunnels.t]\nhost = []\nlocal = [\"1:h:2\"]\n".into(),
            "t.toml:2:8: host is empty",
        ),
        (
            "[tunnels.t]\nhost = \"me@h\"\nlocal = [\"1:h:2\"]\n".into(),
            "t.toml:2:8: host \"me@h\" contains a user name; set user = \"me\" instead",
        ),
        (
            "[daemon]\nwatch = tru\n".into(),
            "t.toml:2:9: invalid TOML: invalid boolean, expected `true`",
        ),
    ];
    assert_eq!(cases.len(), 42);
    for (text, want) in &cases {
        let got = parse_err(text);
        assert_eq!(got.len(), 1, "{text}\ngot:\n{}", got.join("\n"));
        assert!(
            got[0].starts_with(want),
            "{text}\n got: {}\nwant: {want}…",
            got[0]
        );
    }
}

#[test]
fn errors_in_one_tunnel_do_not_hide_another() {
    let text = r#"
[tunnels.a]
host = "a"
local = ["x", "8080:h:80", "y"]

[tunnels.b]
host = "b:0"
dynamic = ["z"]
"#;
    assert_errors(
        text,
        &[
            "t.toml:4:10: invalid local forward \"x\"",
            "t.toml:4:28: invalid local forward \"y\"",
            "t.toml:7:8: host \"b:0\": port 0 is not valid",
            "t.toml:8:12: invalid dynamic forward \"z\"",
        ],
    );
}

#[test]
fn clashing_listeners() {
    let text = r#"
[tunnels.a]
host = "a"
local = ["8080:h:80", "0:h:80", "/tmp/a.sock:h:80"]
dynamic = ["*:1080"]
remote = ["2222:h:22", "localhost:2222:/x.sock", "0:h:1", "0:h:2"]

[tunnels.b]
host = "b"
local = ["localhost:8080:h:81", "0:h:80", "127.0.0.1:8081:h:81", "/tmp/a.sock:/r.sock"]
dynamic = ["127.0.0.2:1080", "8081", "9090", "[::1]:9091"]
remote = ["2222:h:22"]
"#;
    assert_errors(
        text,
        &[
            "t.toml:6:24: remote forward \"localhost:2222:/x.sock\" asks the server for the same listener as \"2222:h:22\"",
            "t.toml:10:10: local forward \"localhost:8080:h:81\" would listen on the same address as local forward \"8080:h:80\" in tunnel \"a\"",
            "t.toml:10:66: local forward \"/tmp/a.sock:/r.sock\" would listen on the same address as local forward \"/tmp/a.sock:h:80\" in tunnel \"a\"; use another socket path",
            "t.toml:11:12: dynamic forward \"127.0.0.2:1080\" would listen on the same address as dynamic forward \"*:1080\" in tunnel \"a\"",
            "t.toml:11:30: dynamic forward \"8081\" would listen on the same address as local forward \"127.0.0.1:8081:h:81\"; change one of the ports",
        ],
    );
}

#[test]
fn same_connection_ignores_only_forward_lists() {
    let base = parse_ok("[tunnels.t]\nhost = \"h\"\nlocal = [\"1:h:2\"]\nremote = [\"3:h:4\"]\n")
        .tunnels["t"]
        .clone();
    let forwards_changed = parse_ok(
        "[tunnels.t]\nhost = \"h\"\ngateway_ports = true\nlocal = [\"5:h:6\"]\ndynamic = [\"7\"]\n",
    )
    .tunnels["t"]
        .clone();
    assert_ne!(base, forwards_changed);
    assert!(base.same_connection(&forwards_changed));
    assert!(base.same_connection(&base));

    let variations: [fn(&mut TunnelConfig); 17] = [
        |t| t.name.push('x'),
        |t| t.hosts[0].port = 23,
        |t| t.user.push('x'),
        |t| t.identity_files.push("/k".into()),
        |t| t.known_hosts.clear(),
        |t| t.strict_host_key_checking = StrictHostKeyChecking::No,
        |t| t.server_alive_interval = Duration::from_secs(1),
        |t| t.server_alive_count_max = 9,
        |t| t.failover_after = 1,
        |t| t.max_connections = 1,
        |t| t.permit_remote_open = crate::PermitRemoteOpen::Only(vec![]),
        |t| t.stream_local_bind_unlink = false,
        |t| t.stream_local_bind_mask = 0o117,
        |t| t.connect_timeout = Duration::from_secs(1),
        |t| t.backoff.jitter = 0.5,
        |t| t.stable_after = Duration::ZERO,
        |t| {
            t.proxy_jump.push(JumpHost {
                user: None,
                host: "j".into(),
                port: 22,
            })
        },
    ];
    for (i, change) in variations.iter().enumerate() {
        let mut other = base.clone();
        change(&mut other);
        assert!(!base.same_connection(&other), "variation {i}");
    }
}

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let dir = std::env::temp_dir().join(format!("tunneld-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, SPEC_EXAMPLE).unwrap();
    assert_eq!(load(&good).unwrap().tunnels.len(), 2);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[tunnels.t]\nhost = 5\n").unwrap();
    let errs = load(&bad).unwrap_err();
    assert_eq!(errs.errors.len(), 2, "{errs}");
    assert_eq!(errs.errors[0].line, 1);
    assert!(
        errs.to_string()
            .starts_with(&format!("{}:1:10: ", bad.display())),
        "{errs}"
    );

    let missing = dir.join("missing.toml");
    let errs = load(&missing).unwrap_err();
    assert_eq!(errs.errors.len(), 1);
    assert_eq!((errs.errors[0].line, errs.errors[0].col), (0, 0));
    assert_eq!(
        errs.to_string(),
        format!(
            "{}: file not found; create it, or point -c/--config or $TUNNELD_CONFIG at another file",
            missing.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_user_is_an_error_only_when_needed() {
    let env = env::Env {
        user: None,
        ..env::fixed()
    };
    let text = "[tunnels.t]\nhost = \"h\"\nlocal = [\"1:h:2\"]\n";
    let errs = parse_with_env(Path::new("t.toml"), text, &env).unwrap_err();
    assert_eq!(errs.errors.len(), 1);
    assert!(
        errs.errors[0]
            .to_string()
            .starts_with("t.toml:1:10: tunnel \"t\": cannot tell the current user name")
    );
    let with_user = format!("[defaults]\nuser = \"u\"\n{text}");
    assert_eq!(
        parse_with_env(Path::new("t.toml"), &with_user, &env)
            .unwrap()
            .tunnels["t"]
            .user,
        "u"
    );
}

#[test]
fn default_config_path_is_absolute() {
    // The value depends on $TUNNELD_CONFIG; either way it is a usable path.
    let p = default_config_path();
    match std::env::var_os("TUNNELD_CONFIG") {
        Some(v) if !v.is_empty() => assert_eq!(p, PathBuf::from(v)),
        _ => assert_eq!(p, PathBuf::from("/etc/tunneld/tunneld.toml")),
    }
}

#[test]
fn proxies_and_their_errors() {
    let c = parse_ok(
        r#"
[defaults]
proxy = "http://bob@proxy.corp:3128"
proxy_password_file = "~/proxy.pass"
[tunnels.a]
host = "h"
local = ["1:h:2"]
[tunnels.b]
host = "h"
local = ["3:h:3"]
proxy = "none"
[tunnels.c]
host = "h"
local = ["4:h:4"]
proxy_command = "nc -X connect -x proxy.corp:3128 %h %p"
"#,
    );
    let a = &c.tunnels["a"].proxy;
    assert_eq!(
        a.proxy.as_ref().map(ToString::to_string).as_deref(),
        Some("http://bob@proxy.corp:3128")
    );
    assert_eq!(
        a.password_file.as_deref(),
        Some(Path::new("/home/alice/proxy.pass"))
    );
    assert_eq!(c.tunnels["b"].proxy.proxy, None);
    assert_eq!(
        c.tunnels["c"].proxy.proxy,
        Some(Proxy::Command(
            "nc -X connect -x proxy.corp:3128 %h %p".into()
        ))
    );
    // Only the proxy differs: a reload must reconnect.
    let mut direct = c.tunnels["a"].clone();
    assert!(direct.same_connection(&c.tunnels["a"]));
    direct.proxy = c.tunnels["b"].proxy.clone();
    assert!(!direct.same_connection(&c.tunnels["a"]));

    assert_errors(
        r#"
[tunnels.t]
host = "h"
local = ["1:h:2"]
proxy = "http://p:3128"
proxy_command = "nc %h %p"
[tunnels.u]
host = "h"
local = ["3:h:3"]
proxy = "socks5://carol@p:1080"
[tunnels.v]
host = "h"
local = ["4:h:4"]
proxy = "http://p:3128"
proxy_password_file = "/etc/p"
[tunnels.w]
host = "h"
local = ["5:h:5"]
proxy_password_file = "/etc/p"
[tunnels.x]
host = "h"
local = ["6:h:6"]
proxy = "http://carol:pw@p:3128"
proxy_command = "nc %j"
"#,
        &[
            "t.toml:6:1: proxy and proxy_command are both set",
            "t.toml:10:9: tunnel \"u\": the proxy user \"carol\" needs a password",
            "t.toml:15:23: tunnel \"v\": proxy_password_file is set but the proxy names no user",
            "t.toml:19:23: tunnel \"w\": proxy_password_file is set but no proxy is",
            "t.toml:23:9: proxy \"http://carol:…@p:3128\" has a password in it",
            "t.toml:24:17: proxy_command has \"%j\"",
        ],
    );
}

#[test]
fn proxy_from_the_environment() {
    let env = env::Env {
        proxy_vars: crate::proxy::ProxyVars {
            proxy: Some(("https_proxy".into(), "http://proxy.corp:3128".into())),
            no_proxy: Some("localhost,.lan".into()),
        },
        ..env::fixed()
    };
    let text = "[tunnels.t]\nhost = [\"h.lan\", \"public.example.com\"]\nlocal = [\"1:h:2\"]\nproxy = \"env\"\n";
    let c = parse_with_env(Path::new("t.toml"), text, &env).unwrap();
    let proxy = c.tunnels["t"].proxy.proxy.as_ref().unwrap();
    assert_eq!(proxy.route("h.lan"), None);
    assert!(
        matches!(proxy.route("public.example.com"), Some(ProxyRoute::Url(u)) if u.port == 3128)
    );
    let broken = env::Env {
        proxy_vars: crate::proxy::ProxyVars {
            proxy: Some(("ALL_PROXY".into(), "ftp://p:21".into())),
            no_proxy: None,
        },
        ..env::fixed()
    };
    let errs = parse_with_env(Path::new("t.toml"), text, &broken).unwrap_err();
    assert!(
        errs.errors[0]
            .to_string()
            .starts_with("t.toml:4:9: tunnel \"t\": proxy = \"env\": $ALL_PROXY: proxy \"ftp://p:21\": unknown scheme"),
        "{errs}"
    );
}
