//! Every problem in a file reported at once, each at its `FILE:LINE:COL`.

use super::{assert_errors, parse_err};

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
