//! What a good file resolves to: built-in defaults, `[defaults]` layering, host lists.

use std::path::PathBuf;
use std::time::Duration;

use super::{SPEC_EXAMPLE, parse_ok};
use crate::{
    Backoff, DaemonConfig, HostPort, JumpHost, Listen, LocalBind, StrictHostKeyChecking,
    TunnelConfig, forward,
};

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
            include: vec![],
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
            include: vec![],
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
        update_host_keys: true,
        on_state_change: vec![],
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
