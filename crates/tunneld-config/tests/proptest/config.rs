//! Whole configuration files: generated files of valid tunnel tables parse to the
//! tunnels they describe; one unknown key anywhere is the one error, naming the key at
//! its line and column; any text, and valid files with random edits, give either a
//! configuration that keeps the model's promises or errors placed inside the text.

use std::path::Path;
use std::time::Duration;

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use tunneld_config::{Config, ConfigErrors, Listen, LocalBind, parse};

use crate::forward::{Host, host};
use crate::mutate;

const PATH: &str = "/etc/tunneld/tunneld.toml";
/// The `user` every generated file sets in `[defaults]`, so no test depends on `$USER`.
const DEFAULT_USER: &str = "tunnel";

/// One generated `[tunnels.NAME]` table; listen ports are handed out when the file is
/// written, so that no two listeners clash.
#[derive(Debug, Clone)]
struct Tunnel {
    name: String,
    hosts: Vec<(Host, Option<u16>)>,
    port: Option<u16>,
    user: Option<String>,
    gateway_ports: Option<bool>,
    /// Targets of the local forwards.
    local: Vec<(Host, u16)>,
    /// Targets of the remote forwards.
    remote: Vec<(Host, u16)>,
    dynamic: usize,
    server_alive_secs: Option<u64>,
    /// Initial and maximum backoff, in seconds.
    backoff: Option<(u64, u64)>,
}

fn target() -> impl Strategy<Value = (Host, u16)> {
    (host(), 1..=65535u16)
}

fn tunnel(name: String) -> impl Strategy<Value = Tunnel> {
    (
        vec((host(), proptest::option::of(1..=65535u16)), 1..3),
        proptest::option::of(1..=65535u16),
        proptest::option::of("[a-z_][a-z0-9_-]{0,15}"),
        proptest::option::of(any::<bool>()),
        (vec(target(), 0..3), vec(target(), 0..3), 0..2usize),
        proptest::option::of(1..3600u64),
        proptest::option::of((1..60u64, 0..600u64)),
    )
        .prop_filter("at least one forward", |(_, _, _, _, (l, r, d), _, _)| {
            l.len() + r.len() + d > 0
        })
        .prop_map(
            move |(hosts, port, user, gateway_ports, (local, remote, dynamic), alive, backoff)| {
                Tunnel {
                    name: name.clone(),
                    hosts,
                    port,
                    user,
                    gateway_ports,
                    local,
                    remote,
                    dynamic,
                    server_alive_secs: alive,
                    backoff: backoff.map(|(initial, extra)| (initial, initial + extra)),
                }
            },
        )
}

/// One to four tunnels with distinct names, and the first listen port to hand out.
fn tunnels() -> impl Strategy<Value = (Vec<Tunnel>, u16)> {
    let names = btree_set("[a-zA-Z0-9_.-]{1,16}", 1..5);
    let tunnels = names.prop_flat_map(|names| names.into_iter().map(tunnel).collect::<Vec<_>>());
    (tunnels, 1024..50_000u16)
}

/// A table of the file: its header (none for the top level) and its lines.
#[derive(Debug, Clone)]
struct Section {
    header: Option<String>,
    lines: Vec<String>,
}

fn quoted(s: &str) -> String {
    // Generated names, hosts and specs hold no quote, backslash or control character.
    format!("\"{s}\"")
}

fn host_entry(h: &Host, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{}:{p}", h.field()),
        None => h.field(),
    }
}

/// The file's tables, and each tunnel's listen ports (local, then dynamic, then remote).
fn sections(tunnels: &[Tunnel], first_port: u16) -> (Vec<Section>, Vec<Vec<u16>>) {
    let mut next_port = first_port;
    let mut take_port = || {
        next_port += 1;
        next_port
    };
    let mut out = vec![
        Section {
            header: None,
            lines: vec![],
        },
        Section {
            header: Some("[daemon]".into()),
            lines: vec!["log_level = \"info\"".into()],
        },
        Section {
            header: Some("[defaults]".into()),
            lines: vec![format!("user = {}", quoted(DEFAULT_USER))],
        },
    ];
    let mut ports = Vec::new();
    for t in tunnels {
        let mut lines = Vec::new();
        let entries: Vec<String> = t
            .hosts
            .iter()
            .map(|(h, p)| quoted(&host_entry(h, *p)))
            .collect();
        lines.push(match entries.as_slice() {
            [one] => format!("host = {one}"),
            many => format!("host = [{}]", many.join(", ")),
        });
        if let Some(p) = t.port {
            lines.push(format!("port = {p}"));
        }
        if let Some(u) = &t.user {
            lines.push(format!("user = {}", quoted(u)));
        }
        if let Some(g) = t.gateway_ports {
            lines.push(format!("gateway_ports = {g}"));
        }
        let mut mine = Vec::new();
        let mut forwards = |key: &str, specs: Vec<String>| {
            if !specs.is_empty() {
                let list: Vec<String> = specs.iter().map(|s| quoted(s)).collect();
                lines.push(format!("{key} = [{}]", list.join(", ")));
            }
        };
        let local: Vec<String> = t
            .local
            .iter()
            .map(|(h, p)| {
                let port = take_port();
                mine.push(port);
                format!("{port}:{}:{p}", h.field())
            })
            .collect();
        forwards("local", local);
        let dynamic: Vec<String> = (0..t.dynamic)
            .map(|_| {
                let port = take_port();
                mine.push(port);
                port.to_string()
            })
            .collect();
        forwards("dynamic", dynamic);
        let remote: Vec<String> = t
            .remote
            .iter()
            .map(|(h, p)| {
                let port = take_port();
                mine.push(port);
                format!("{port}:{}:{p}", h.field())
            })
            .collect();
        forwards("remote", remote);
        if let Some(s) = t.server_alive_secs {
            lines.push(format!("server_alive_interval = \"{s}s\""));
        }
        if let Some((initial, max)) = t.backoff {
            lines.push(format!(
                "backoff = {{ initial = \"{initial}s\", max = \"{max}s\" }}"
            ));
        }
        ports.push(mine);
        out.push(Section {
            header: Some(format!("[tunnels.{}]", quoted(&t.name))),
            lines,
        });
    }
    (out, ports)
}

/// The file's text, and the 1-based line of `marked` (a section and line index).
fn render(sections: &[Section], marked: Option<(usize, usize)>) -> (String, usize) {
    let mut text = String::new();
    let mut line_no = 0;
    let mut marked_line = 0;
    for (si, s) in sections.iter().enumerate() {
        if let Some(h) = &s.header {
            text.push_str(h);
            text.push('\n');
            line_no += 1;
        }
        for (li, l) in s.lines.iter().enumerate() {
            text.push_str(l);
            text.push('\n');
            line_no += 1;
            if marked == Some((si, li)) {
                marked_line = line_no;
            }
        }
        text.push('\n');
        line_no += 1;
    }
    (text, marked_line)
}

/// Checks what any result of `parse` promises: a configuration whose tunnels each have
/// a host, a forward and valid ports, or errors placed inside `text`.
fn check_result(text: &str, result: Result<Config, ConfigErrors>) -> Result<(), TestCaseError> {
    match result {
        Ok(c) => {
            prop_assert_eq!(c.path.as_path(), Path::new(PATH));
            for t in c.tunnels.values() {
                prop_assert!(!t.hosts.is_empty(), "tunnel {} has no host", t.name);
                prop_assert!(t.hosts.iter().all(|h| h.port != 0 && !h.host.is_empty()));
                let forwards = t.local.len() + t.remote.len() + t.dynamic.len();
                prop_assert!(forwards > 0, "tunnel {} has no forward", t.name);
            }
        }
        Err(e) => {
            prop_assert!(!e.errors.is_empty(), "an error without errors");
            let lines: Vec<&str> = text.split('\n').collect();
            for err in &e.errors {
                prop_assert_eq!(err.file.as_path(), Path::new(PATH));
                prop_assert!(!err.message.is_empty());
                if err.line == 0 {
                    prop_assert_eq!(err.col, 0);
                    prop_assert!(err.message.starts_with("invalid TOML"), "{}", err);
                } else {
                    prop_assert!(err.line <= lines.len(), "{} past the end", err);
                    let width = lines[err.line - 1].chars().count();
                    prop_assert!(
                        err.col >= 1 && err.col <= width + 1,
                        "{} past its line",
                        err
                    );
                }
            }
        }
    }
    Ok(())
}

/// A TOML value for an unknown key.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("true".to_owned()),
        Just("\"value\"".to_owned()),
        Just("[1, \"two\"]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("\"10s\"".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_files_parse_to_their_tunnels((tunnels, first_port) in tunnels()) {
        let (sections, ports) = sections(&tunnels, first_port);
        let (text, _) = render(&sections, None);
        let c = parse(Path::new(PATH), &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- file:\n{text}")))?;
        prop_assert_eq!(c.tunnels.len(), tunnels.len());
        for (t, ports) in tunnels.iter().zip(&ports) {
            let got = c.tunnels.get(&t.name).ok_or_else(|| TestCaseError::fail(format!("no tunnel {}", t.name)))?;
            let hosts: Vec<(String, u16)> = got.hosts.iter().map(|h| (h.host.clone(), h.port)).collect();
            let want: Vec<(String, u16)> = t
                .hosts
                .iter()
                .map(|(h, p)| (h.text(), p.or(t.port).unwrap_or(22)))
                .collect();
            prop_assert_eq!(hosts, want);
            prop_assert_eq!(&got.user, t.user.as_deref().unwrap_or(DEFAULT_USER));
            let gateway_ports = t.gateway_ports.unwrap_or(false);
            prop_assert_eq!(got.gateway_ports, gateway_ports);
            let bind = if gateway_ports { LocalBind::Any } else { LocalBind::Loopback };
            let mut listen_ports = Vec::new();
            for (f, (h, p)) in got.local.iter().zip(&t.local) {
                let Listen::Tcp { bind: b, port } = &f.listen else {
                    return Err(TestCaseError::fail(format!("{f:?} is not a TCP listener")));
                };
                prop_assert_eq!(b, &bind);
                prop_assert_eq!(f.target.to_string(), format!("{}:{p}", h.field()));
                listen_ports.push(*port);
            }
            prop_assert_eq!(got.local.len(), t.local.len());
            for f in &got.dynamic {
                prop_assert_eq!(&f.bind, &bind);
                listen_ports.push(f.port);
            }
            prop_assert_eq!(got.dynamic.len(), t.dynamic);
            for (f, (h, p)) in got.remote.iter().zip(&t.remote) {
                let tunneld_config::RemoteListen::Tcp { bind: b, port } = &f.listen else {
                    return Err(TestCaseError::fail(format!("{f:?} is not a TCP listener")));
                };
                prop_assert_eq!(b, "localhost");
                let target = f.target.as_ref().map(ToString::to_string);
                prop_assert_eq!(target, Some(format!("{}:{p}", h.field())));
                listen_ports.push(*port);
            }
            prop_assert_eq!(got.remote.len(), t.remote.len());
            prop_assert_eq!(&listen_ports, ports);
            let alive = t.server_alive_secs.map_or(Duration::from_secs(10), Duration::from_secs);
            prop_assert_eq!(got.server_alive_interval, alive);
            if let Some((initial, max)) = t.backoff {
                prop_assert_eq!(got.backoff.initial, Duration::from_secs(initial));
                prop_assert_eq!(got.backoff.max, Duration::from_secs(max));
            }
        }
    }

    #[test]
    fn an_unknown_key_is_the_one_error_and_is_named_where_it_stands(
        (tunnels, first_port) in tunnels(),
        key in "x_[a-z0-9_]{0,12}",
        value in any_value(),
        section in any::<usize>(),
        at in any::<usize>(),
        in_backoff in any::<bool>(),
    ) {
        let (mut sections, _) = sections(&tunnels, first_port);
        let si = section % sections.len();
        let (li, col) = if in_backoff && si >= 3 {
            // Inside a tunnel's backoff inline table.
            let lines = &mut sections[si].lines;
            lines.retain(|l| !l.starts_with("backoff = "));
            let prefix = "backoff = { initial = \"1s\", ";
            lines.push(format!("{prefix}{key} = {value} }}"));
            (lines.len() - 1, prefix.chars().count() + 1)
        } else {
            let lines = &mut sections[si].lines;
            let li = at % (lines.len() + 1);
            lines.insert(li, format!("{key} = {value}"));
            (li, 1)
        };
        let (text, line) = render(&sections, Some((si, li)));
        let errors = match parse(Path::new(PATH), &text) {
            Ok(_) => return Err(TestCaseError::fail(format!("accepted:\n{text}"))),
            Err(e) => e.errors,
        };
        prop_assert_eq!(errors.len(), 1, "{:?}\n--- file:\n{}", errors, text);
        let e = &errors[0];
        prop_assert!(e.message.contains(&format!("unknown key \"{key}\"")), "{}", e);
        prop_assert_eq!((e.line, e.col), (line, col), "{}\n--- file:\n{}", e, text);
    }

    #[test]
    fn any_text_gives_a_config_or_placed_errors(text in any::<String>()) {
        check_result(&text, parse(Path::new(PATH), &text))?;
    }

    #[test]
    fn edited_files_give_a_config_or_placed_errors(
        (tunnels, first_port) in tunnels(),
        edits in mutate::edits(prop_oneof![
            prop::sample::select(b"[]{}=\"',.:#\n\\ 0x-".to_vec()),
            any::<u8>(),
        ]),
    ) {
        let (sections, _) = sections(&tunnels, first_port);
        let (text, _) = render(&sections, None);
        let edited = String::from_utf8_lossy(&mutate::apply(text.as_bytes(), &edits)).into_owned();
        check_result(&edited, parse(Path::new(PATH), &edited))?;
    }
}
