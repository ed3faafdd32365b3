//! Forward specifications: the first byte's low bit is `gateway_ports`, the rest is the
//! spec, given to the `local`, `remote` and `dynamic` parsers. None may panic, and what
//! they accept must keep the types' promises (target port never 0, paths that fit).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld_config::forward::{parse_dynamic, parse_local, parse_remote};
use tunneld_config::{Endpoint, Listen, RemoteListen};

/// `sizeof(sockaddr_un.sun_path) - 1` on Linux.
const MAX_UNIX_PATH_BYTES: usize = 107;

fn check(e: &Endpoint) {
    match e {
        Endpoint::Tcp { host, port } => {
            assert_ne!(*port, 0, "target port 0 accepted");
            assert!(!host.is_empty(), "empty target host accepted");
        }
        Endpoint::Unix(p) => assert!(p.as_os_str().len() <= MAX_UNIX_PATH_BYTES),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(spec) = std::str::from_utf8(rest) else {
        return;
    };
    let gateway_ports = flags & 1 == 1;
    if let Ok(f) = parse_local(spec, gateway_ports) {
        assert_eq!(f.spec, spec);
        check(&f.target);
        if let Listen::Unix(p) = &f.listen {
            assert!(p.as_os_str().len() <= MAX_UNIX_PATH_BYTES);
        }
    }
    if let Ok(f) = parse_remote(spec) {
        assert_eq!(f.spec, spec);
        if let Some(t) = &f.target {
            check(t);
        }
        if let RemoteListen::Unix(p) = &f.listen {
            assert!(p.len() <= MAX_UNIX_PATH_BYTES);
        }
    }
    if let Ok(f) = parse_dynamic(spec, gateway_ports) {
        assert_eq!(f.spec, spec);
    }
});
