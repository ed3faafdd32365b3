//! Table-driven tests of every OpenSSH forward form, IPv6 brackets and bad input.

use super::*;

fn tcp(host: &str, port: u16) -> Endpoint {
    Endpoint::Tcp {
        host: host.to_owned(),
        port,
    }
}

fn unix(path: &str) -> Endpoint {
    Endpoint::Unix(PathBuf::from(path))
}

fn listen(bind: LocalBind, port: u16) -> Listen {
    Listen::Tcp { bind, port }
}

fn addr(s: &str) -> LocalBind {
    LocalBind::Addr(s.to_owned())
}

fn rlisten(bind: &str, port: u16) -> RemoteListen {
    RemoteListen::Tcp {
        bind: bind.to_owned(),
        port,
    }
}

#[test]
fn local_forms() {
    use LocalBind::{Any, Loopback};
    let cases: Vec<(&str, bool, Listen, Endpoint)> = vec![
        (
            "8080:intranet.lan:80",
            false,
            listen(Loopback, 8080),
            tcp("intranet.lan", 80),
        ),
        (
            "8080:intranet.lan:80",
            true,
            listen(Any, 8080),
            tcp("intranet.lan", 80),
        ),
        (
            "0.0.0.0:5432:db.lan:5432",
            false,
            listen(addr("0.0.0.0"), 5432),
            tcp("db.lan", 5432),
        ),
        (
            "127.0.0.2:5432:db:5432",
            false,
            listen(addr("127.0.0.2"), 5432),
            tcp("db", 5432),
        ),
        (
            "myhost:5432:db:5432",
            false,
            listen(addr("myhost"), 5432),
            tcp("db", 5432),
        ),
        (
            "localhost:8080:h:80",
            false,
            listen(Loopback, 8080),
            tcp("h", 80),
        ),
        (
            "localhost:8080:h:80",
            true,
            listen(Loopback, 8080),
            tcp("h", 80),
        ),
        ("*:8080:h:80", false, listen(Any, 8080), tcp("h", 80)),
        (":8080:h:80", false, listen(Any, 8080), tcp("h", 80)),
        (
            "[::1]:8080:h:80",
            false,
            listen(addr("::1"), 8080),
            tcp("h", 80),
        ),
        (
            "[::]:8080:[2001:db8::1]:80",
            false,
            listen(addr("::"), 8080),
            tcp("2001:db8::1", 80),
        ),
        (
            "8080:[::1]:80",
            false,
            listen(Loopback, 8080),
            tcp("::1", 80),
        ),
        (
            "[localhost]:8080:h:80",
            false,
            listen(Loopback, 8080),
            tcp("h", 80),
        ),
        ("0:h:80", false, listen(Loopback, 0), tcp("h", 80)),
        (
            "65535:h:65535",
            false,
            listen(Loopback, 65535),
            tcp("h", 65535),
        ),
        (
            "8080:/run/app.sock",
            false,
            listen(Loopback, 8080),
            unix("/run/app.sock"),
        ),
        (
            "127.0.0.1:8080:/run/app.sock",
            false,
            listen(addr("127.0.0.1"), 8080),
            unix("/run/app.sock"),
        ),
        (
            "[::1]:8080:/run/app.sock",
            true,
            listen(addr("::1"), 8080),
            unix("/run/app.sock"),
        ),
        (
            "/tmp/l.sock:h:80",
            false,
            Listen::Unix("/tmp/l.sock".into()),
            tcp("h", 80),
        ),
        (
            "/tmp/l.sock:[::1]:80",
            false,
            Listen::Unix("/tmp/l.sock".into()),
            tcp("::1", 80),
        ),
        (
            "/tmp/l.sock:/run/r.sock",
            false,
            Listen::Unix("/tmp/l.sock".into()),
            unix("/run/r.sock"),
        ),
        // A path with a ':' can be bracketed or escaped, as in readconf.c.
        (
            "[/tmp/a:b.sock]:h:80",
            false,
            Listen::Unix("/tmp/a:b.sock".into()),
            tcp("h", 80),
        ),
        (
            "/tmp/a\\:b.sock:h:80",
            false,
            Listen::Unix("/tmp/a:b.sock".into()),
            tcp("h", 80),
        ),
        // OpenSSH ignores one trailing ':' and leading spaces.
        ("8080:h:80:", false, listen(Loopback, 8080), tcp("h", 80)),
        ("  8080:h:80", false, listen(Loopback, 8080), tcp("h", 80)),
    ];
    assert_eq!(cases.len(), 25);
    for (spec, gateway_ports, want_listen, want_target) in cases {
        let f = parse_local(spec, gateway_ports).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        assert_eq!(f.spec, spec, "spec is kept verbatim");
        assert_eq!(f.listen, want_listen, "{spec:?} listen");
        assert_eq!(f.target, want_target, "{spec:?} target");
    }
}

#[test]
fn local_errors() {
    let long_path = format!("/{}:h:80", "x".repeat(200));
    let cases: Vec<(&str, &str)> = vec![
        (
            "",
            "invalid local forward \"\": empty specification; expected [bind_address:]port:host:hostport",
        ),
        (
            "abc",
            "invalid local forward \"abc\": missing target; expected",
        ),
        (
            "8080",
            "invalid local forward \"8080\": missing target; expected",
        ),
        (
            "8080:host",
            "invalid local forward \"8080:host\": missing target port; expected",
        ),
        (
            "99999:h:80",
            "invalid local forward \"99999:h:80\": listen port 99999 is out of range; use 0-65535",
        ),
        (
            "8080:h:0",
            "invalid local forward \"8080:h:0\": target port 0 is not valid; use 1-65535",
        ),
        ("8080:h:99999", "target port 99999 is out of range"),
        (
            "8080:[::1:80",
            "invalid local forward \"8080:[::1:80\": '[' without a matching ']'",
        ),
        (
            "[::1]x:8080:h:80",
            "']' must be followed by ':', not \"x:8080:h:80\"",
        ),
        (
            "1:2:3:4:5",
            "too many ':'-separated fields; write IPv6 addresses in brackets",
        ),
        ("::1:8080:h:80", "too many ':'-separated fields"),
        (
            "8080::80",
            "invalid local forward \"8080::80\": empty target host",
        ),
        ("8080:[]:80", "empty target host"),
        (
            "http:h:80",
            "listen port \"http\" is not a number (service names are not supported; use 0-65535)",
        ),
        ("8080:h:http", "target port \"http\" is not a number"),
        ("8080:h:", "missing target port"),
        ("-1:h:80", "listen port \"-1\" is not a number"),
        ("/a.sock", "a unix socket listener needs a target"),
        ("/a.sock:h", "missing target port"),
        ("/l.sock:/x:80", "target host \"/x\" looks like a path"),
        ("8080:h:80\\", "a '\\' at the end escapes nothing"),
        ("a/b:8080:h:80", "bind address \"a/b\" cannot be a path"),
        ("8080:h x:80", "target host \"h x\" contains whitespace"),
        (&long_path, "unix socket path"),
    ];
    assert_eq!(cases.len(), 24);
    for (spec, want) in cases {
        let err = parse_local(spec, false).expect_err(spec);
        assert!(err.contains(want), "{spec:?}:\n got: {err}\nwant: {want}");
    }
}

#[test]
fn remote_forms() {
    let cases: Vec<(&str, RemoteListen, Option<Endpoint>)> = vec![
        (
            "2222:localhost:22",
            rlisten("localhost", 2222),
            Some(tcp("localhost", 22)),
        ),
        (
            "0.0.0.0:2222:localhost:22",
            rlisten("0.0.0.0", 2222),
            Some(tcp("localhost", 22)),
        ),
        (
            "localhost:2222:h:22",
            rlisten("localhost", 2222),
            Some(tcp("h", 22)),
        ),
        ("*:2222:h:22", rlisten("", 2222), Some(tcp("h", 22))),
        (":2222:h:22", rlisten("", 2222), Some(tcp("h", 22))),
        (
            "[::]:2222:[::1]:22",
            rlisten("::", 2222),
            Some(tcp("::1", 22)),
        ),
        ("0:h:22", rlisten("localhost", 0), Some(tcp("h", 22))),
        (
            "2222:/run/app.sock",
            rlisten("localhost", 2222),
            Some(unix("/run/app.sock")),
        ),
        (
            "[::1]:2222:/run/app.sock",
            rlisten("::1", 2222),
            Some(unix("/run/app.sock")),
        ),
        (
            "/srv/r.sock:h:80",
            RemoteListen::Unix("/srv/r.sock".into()),
            Some(tcp("h", 80)),
        ),
        (
            "/srv/r.sock:/run/l.sock",
            RemoteListen::Unix("/srv/r.sock".into()),
            Some(unix("/run/l.sock")),
        ),
        // Reverse dynamic (SOCKS) forwards, OpenSSH 7.6+.
        ("1080", rlisten("localhost", 1080), None),
        ("*:1080", rlisten("", 1080), None),
        ("0.0.0.0:1080", rlisten("0.0.0.0", 1080), None),
        ("[::1]:1080", rlisten("::1", 1080), None),
        ("0", rlisten("localhost", 0), None),
        (
            "/srv/socks.sock",
            RemoteListen::Unix("/srv/socks.sock".into()),
            None,
        ),
    ];
    assert_eq!(cases.len(), 17);
    for (spec, want_listen, want_target) in cases {
        let f = parse_remote(spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        assert_eq!(f.spec, spec);
        assert_eq!(f.listen, want_listen, "{spec:?} listen");
        assert_eq!(f.target, want_target, "{spec:?} target");
    }
}

#[test]
fn remote_errors() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "",
            "invalid remote forward \"\": empty specification; expected",
        ),
        (
            "abc",
            "invalid remote forward \"abc\": listen port \"abc\" is not a number",
        ),
        (
            "8080:host",
            "invalid remote forward \"8080:host\": missing target port; expected",
        ),
        ("99999", "listen port 99999 is out of range"),
        ("99999:h:22", "listen port 99999 is out of range"),
        ("2222:h:0", "target port 0 is not valid"),
        ("a:b:c:d:e", "too many ':'-separated fields"),
        ("/r.sock:h", "missing target port"),
        ("2222::22", "empty target host"),
        ("[::1:2222:h:22", "'[' without a matching ']'"),
        ("a/b:2222:h:22", "bind address \"a/b\" cannot be a path"),
        ("h:x:22", "listen port \"h\" is not a number"),
    ];
    assert_eq!(cases.len(), 12);
    for (spec, want) in cases {
        let err = parse_remote(spec).expect_err(spec);
        assert!(err.contains(want), "{spec:?}:\n got: {err}\nwant: {want}");
    }
}

#[test]
fn dynamic_forms() {
    use LocalBind::{Any, Loopback};
    let cases: Vec<(&str, bool, LocalBind, u16)> = vec![
        ("1080", false, Loopback, 1080),
        ("1080", true, Any, 1080),
        ("localhost:1080", true, Loopback, 1080),
        ("*:1080", false, Any, 1080),
        (":1080", false, Any, 1080),
        ("0.0.0.0:1080", false, addr("0.0.0.0"), 1080),
        ("[::1]:1080", false, addr("::1"), 1080),
        ("[::]:1080", false, addr("::"), 1080),
        ("0", false, Loopback, 0),
    ];
    assert_eq!(cases.len(), 9);
    for (spec, gateway_ports, bind, port) in cases {
        let f = parse_dynamic(spec, gateway_ports).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        let want = DynamicForward {
            spec: spec.to_owned(),
            bind,
            port,
        };
        assert_eq!(f, want, "{spec:?}");
    }
}

#[test]
fn dynamic_errors() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "",
            "invalid dynamic forward \"\": empty specification; expected [bind_address:]port",
        ),
        (
            "abc",
            "invalid dynamic forward \"abc\": listen port \"abc\" is not a number",
        ),
        (
            "::1:1080",
            "write an IPv6 bind address in brackets, e.g. [::1]:1080",
        ),
        ("1080:h:80", "too many ':'-separated fields"),
        ("99999", "listen port 99999 is out of range"),
        (
            "/tmp/s.sock",
            "unix socket listeners are not supported for dynamic forwards",
        ),
        ("a/b:1080", "bind address \"a/b\" cannot be a path"),
        ("[::1]", "listen port \"::1\" is not a number"),
        ("[::1:1080", "'[' without a matching ']'"),
    ];
    assert_eq!(cases.len(), 9);
    for (spec, want) in cases {
        let err = parse_dynamic(spec, false).expect_err(spec);
        assert!(err.contains(want), "{spec:?}:\n got: {err}\nwant: {want}");
    }
}

#[test]
fn endpoint_display() {
    assert_eq!(tcp("h", 80).to_string(), "h:80");
    assert_eq!(tcp("::1", 80).to_string(), "[::1]:80");
    assert_eq!(unix("/run/a.sock").to_string(), "/run/a.sock");
}
