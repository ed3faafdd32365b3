//! Forward specifications: a spec generated from its fields (bind address, bracketed
//! IPv6, ports, Unix paths) parses back to exactly those fields; ports outside the
//! documented ranges and unbracketed IPv6 addresses are refused with a message saying
//! so; nothing written, however mangled, makes a parser panic or accept a spec that
//! breaks the types' promises.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use proptest::prelude::*;
use tunneld_config::forward::{parse_dynamic, parse_local, parse_remote};
use tunneld_config::{Endpoint, Listen, LocalBind, RemoteListen};

use crate::mutate;

/// A host name or address as a spec may hold it.
#[derive(Debug, Clone)]
pub enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    /// The host as parsed: without brackets.
    pub fn text(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }

    /// The host as written in a spec: IPv6 in brackets.
    pub fn field(&self) -> String {
        match self {
            Host::V6(a) => format!("[{a}]"),
            other => other.text(),
        }
    }
}

pub fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}"
            .prop_filter("not the loopback keyword", |n| n != "localhost")
            .prop_map(Host::Name),
        any::<[u8; 4]>().prop_map(|a| Host::V4(a.into())),
        any::<[u8; 16]>().prop_map(|a| Host::V6(a.into())),
    ]
}

/// The bind part of a spec.
#[derive(Debug, Clone)]
pub enum Bind {
    Omitted,
    Localhost,
    Star,
    Empty,
    Host(Host),
}

impl Bind {
    /// The spec's prefix: the bind field and its `:`, or nothing.
    pub fn prefix(&self) -> String {
        match self {
            Bind::Omitted => String::new(),
            Bind::Localhost => "localhost:".into(),
            Bind::Star => "*:".into(),
            Bind::Empty => ":".into(),
            Bind::Host(h) => format!("{}:", h.field()),
        }
    }

    /// Where a local or dynamic listener binds (OpenSSH client rules).
    fn local(&self, gateway_ports: bool) -> LocalBind {
        match self {
            Bind::Omitted if gateway_ports => LocalBind::Any,
            Bind::Omitted | Bind::Localhost => LocalBind::Loopback,
            Bind::Star | Bind::Empty => LocalBind::Any,
            Bind::Host(h) => LocalBind::Addr(h.text()),
        }
    }

    /// The address a remote forward asks the server to listen on.
    fn remote(&self) -> String {
        match self {
            Bind::Omitted | Bind::Localhost => "localhost".into(),
            Bind::Star | Bind::Empty => String::new(),
            Bind::Host(h) => h.text(),
        }
    }
}

pub fn bind() -> impl Strategy<Value = Bind> {
    prop_oneof![
        2 => Just(Bind::Omitted),
        1 => Just(Bind::Localhost),
        1 => Just(Bind::Star),
        1 => Just(Bind::Empty),
        3 => host().prop_map(Bind::Host),
    ]
}

/// A Unix socket path that fits `sun_path`.
fn unix_path() -> impl Strategy<Value = String> {
    "/[a-z0-9._-]{1,30}(/[a-z0-9._-]{1,30}){0,2}"
}

/// Listen ports: all of them, 0 included (the kernel or server picks).
fn listen_port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), Just(1), Just(65535), any::<u16>()]
}

/// Target ports: 1-65535.
fn target_port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(1u16), Just(65535), 1..=65535u16]
}

/// A TCP target, the spec text for it and what it parses to.
fn tcp_target() -> impl Strategy<Value = (String, Endpoint)> {
    (host(), target_port()).prop_map(|(h, port)| {
        let text = format!("{}:{port}", h.field());
        (
            text,
            Endpoint::Tcp {
                host: h.text(),
                port,
            },
        )
    })
}

fn unix_target() -> impl Strategy<Value = (String, Endpoint)> {
    unix_path().prop_map(|p| (p.clone(), Endpoint::Unix(PathBuf::from(p))))
}

fn any_target() -> impl Strategy<Value = (String, Endpoint)> {
    prop_oneof![3 => tcp_target(), 1 => unix_target()]
}

/// Ports that do not fit in 16 bits, as written.
fn too_big_port() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("65536".to_owned()),
        (65_536..=9_999_999u32).prop_map(|p| p.to_string()),
        "[1-9][0-9]{7,30}",
    ]
}

/// Bytes worth inserting into a spec.
fn spec_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b":[]/\\*0123456789 .-".to_vec()),
        any::<u8>(),
    ]
}

/// What any accepted forward promises, whatever was written.
fn check_endpoint(e: &Endpoint) -> Result<(), TestCaseError> {
    match e {
        Endpoint::Tcp { host, port } => {
            prop_assert!(*port != 0, "target port 0 accepted");
            prop_assert!(!host.is_empty(), "empty target host accepted");
            prop_assert!(!host.contains(char::is_whitespace), "{:?}", host);
        }
        Endpoint::Unix(p) => prop_assert!(p.as_os_str().len() <= 107, "{:?}", p),
    }
    Ok(())
}

/// Parses `spec` with all three parsers, checking what an accepted spec promises.
fn parse_all(spec: &str, gateway_ports: bool) -> Result<(), TestCaseError> {
    if let Ok(f) = parse_local(spec, gateway_ports) {
        prop_assert_eq!(&f.spec, spec);
        check_endpoint(&f.target)?;
        if let Listen::Unix(p) = &f.listen {
            prop_assert!(p.as_os_str().len() <= 107, "{:?}", p);
        }
    }
    if let Ok(f) = parse_remote(spec) {
        prop_assert_eq!(&f.spec, spec);
        if let Some(t) = &f.target {
            check_endpoint(t)?;
        }
        if let RemoteListen::Unix(p) = &f.listen {
            prop_assert!(p.len() <= 107, "{:?}", p);
        }
    }
    if let Ok(f) = parse_dynamic(spec, gateway_ports) {
        prop_assert_eq!(&f.spec, spec);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn local_tcp_specs_parse_to_their_fields(
        b in bind(),
        port in listen_port(),
        (target_text, target) in any_target(),
        gateway_ports in any::<bool>(),
    ) {
        let spec = format!("{}{port}:{target_text}", b.prefix());
        let f = parse_local(&spec, gateway_ports).map_err(TestCaseError::fail)?;
        prop_assert_eq!(f.listen, Listen::Tcp { bind: b.local(gateway_ports), port });
        prop_assert_eq!(&f.target, &target);
        prop_assert_eq!(f.spec, spec);
        // A TCP target shows as written: IPv6 back in brackets.
        if matches!(target, Endpoint::Tcp { .. }) {
            prop_assert_eq!(f.target.to_string(), target_text);
        }
    }

    #[test]
    fn local_unix_listener_specs_parse_to_their_fields(
        path in unix_path(),
        (target_text, target) in any_target(),
    ) {
        let spec = format!("{path}:{target_text}");
        let f = parse_local(&spec, false).map_err(TestCaseError::fail)?;
        prop_assert_eq!(f.listen, Listen::Unix(PathBuf::from(path)));
        prop_assert_eq!(f.target, target);
    }

    #[test]
    fn remote_specs_parse_to_their_fields(
        b in bind(),
        port in listen_port(),
        path in unix_path(),
        unix_listener in any::<bool>(),
        target in proptest::option::of(any_target()),
    ) {
        let (listen_text, listen) = if unix_listener {
            (path.clone(), RemoteListen::Unix(path))
        } else {
            (format!("{}{port}", b.prefix()), RemoteListen::Tcp { bind: b.remote(), port })
        };
        // No target: a reverse SOCKS proxy.
        let spec = match &target {
            Some((text, _)) => format!("{listen_text}:{text}"),
            None => listen_text,
        };
        let f = parse_remote(&spec).map_err(TestCaseError::fail)?;
        prop_assert_eq!(f.listen, listen);
        prop_assert_eq!(f.target, target.map(|(_, e)| e));
        prop_assert_eq!(f.spec, spec);
    }

    #[test]
    fn dynamic_specs_parse_to_their_fields(
        b in bind(),
        port in listen_port(),
        gateway_ports in any::<bool>(),
    ) {
        let spec = format!("{}{port}", b.prefix());
        let f = parse_dynamic(&spec, gateway_ports).map_err(TestCaseError::fail)?;
        prop_assert_eq!(f.bind, b.local(gateway_ports));
        prop_assert_eq!(f.port, port);
    }

    #[test]
    fn ports_outside_the_documented_ranges_are_refused(
        b in bind(),
        h in host(),
        big in too_big_port(),
        which in 0..3usize,
        gateway_ports in any::<bool>(),
    ) {
        let hf = h.field();
        let p = b.prefix();
        // A port past 65535 anywhere: "out of range".
        let (local, remote) = match which {
            0 => (format!("{p}{big}:{hf}:80"), format!("{p}{big}:{hf}:80")),
            1 => (format!("{p}8080:{hf}:{big}"), format!("{p}8080:{hf}:{big}")),
            _ => (format!("{p}{big}:/run/app.sock"), format!("{p}{big}:/run/app.sock")),
        };
        for (spec, r) in [
            (&local, parse_local(&local, gateway_ports).map(drop)),
            (&remote, parse_remote(&remote).map(drop)),
            (&format!("{p}{big}"), parse_dynamic(&format!("{p}{big}"), gateway_ports).map(drop)),
        ] {
            let e = r.expect_err(spec);
            prop_assert!(e.contains("out of range"), "{}: {}", spec, e);
        }
        // Target port 0 is never valid; listen port 0 is (the kernel or server picks).
        let spec = format!("{p}8080:{hf}:0");
        let e = parse_local(&spec, gateway_ports).expect_err(&spec);
        prop_assert!(e.contains("target port 0 is not valid"), "{}: {}", spec, e);
        let e = parse_remote(&spec).expect_err(&spec);
        prop_assert!(e.contains("target port 0 is not valid"), "{}: {}", spec, e);
        let (tcp0, dynamic0) = (format!("{p}0:{hf}:80"), format!("{p}0"));
        prop_assert!(parse_local(&tcp0, gateway_ports).is_ok(), "{}", tcp0);
        prop_assert!(parse_remote(&tcp0).is_ok(), "{}", tcp0);
        prop_assert!(parse_dynamic(&dynamic0, gateway_ports).is_ok(), "{}", dynamic0);
    }

    #[test]
    fn unbracketed_ipv6_addresses_are_refused_with_a_hint(
        a in any::<[u8; 16]>(),
        port in 1..=65535u16,
    ) {
        let a = Ipv6Addr::from(a);
        for spec in [format!("8080:{a}:{port}"), format!("{a}:8080:h:{port}")] {
            let e = parse_local(&spec, false).expect_err(&spec);
            prop_assert!(e.contains("brackets"), "{}: {}", spec, e);
            let e = parse_remote(&spec).expect_err(&spec);
            prop_assert!(e.contains("brackets"), "{}: {}", spec, e);
        }
        let spec = format!("{a}:{port}");
        let e = parse_dynamic(&spec, false).expect_err(&spec);
        prop_assert!(e.contains("brackets"), "{}: {}", spec, e);
    }

    #[test]
    fn any_text_keeps_the_parsers_promises(spec in any::<String>(), gateway_ports in any::<bool>()) {
        parse_all(&spec, gateway_ports)?;
    }

    #[test]
    fn edited_specs_keep_the_parsers_promises(
        b in bind(),
        port in listen_port(),
        (target_text, _) in any_target(),
        edits in mutate::edits(spec_byte()),
        gateway_ports in any::<bool>(),
    ) {
        let spec = format!("{}{port}:{target_text}", b.prefix());
        let edited = String::from_utf8_lossy(&mutate::apply(spec.as_bytes(), &edits)).into_owned();
        parse_all(&edited, gateway_ports)?;
    }
}
