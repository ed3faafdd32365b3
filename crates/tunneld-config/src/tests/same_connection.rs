//! Which changes between two versions of a tunnel keep its SSH connection.

use std::time::Duration;

use super::parse_ok;
use crate::{JumpHost, StrictHostKeyChecking, TunnelConfig};

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
    let mut hook_changed = base.clone();
    hook_changed.on_state_change = vec!["/bin/true".into()];
    assert!(base.same_connection(&hook_changed));
    assert!(base.same_connection(&base));

    let variations: [fn(&mut TunnelConfig); 18] = [
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
        |t| t.update_host_keys = false,
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
