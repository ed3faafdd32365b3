//! Reload: what changes between two resolved configurations.
//!
//! [`diff`] is pure; the daemon applies its result. Tunnels are matched by
//! name; forwards by their parsed value, regardless of their order in the file.

use std::fmt::Display;

use crate::forward::{DynamicForward, LocalForward, RemoteForward};
use crate::model::{Config, DaemonConfig, TunnelConfig};

/// What a reload changes, by tunnel name (each list sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// In the new file only: start them.
    pub added: Vec<String>,
    /// In the old file only: stop them.
    pub removed: Vec<String>,
    /// Connection settings changed (anything but the forward lists and
    /// `gateway_ports`, see [`TunnelConfig::same_connection`]): reconnect them.
    pub restarted: Vec<String>,
    /// Only their forward lists or their `on_state_change` changed: keep the session,
    /// add/cancel forwards, run the new hook from the next change on.
    pub updated: Vec<ForwardChanges>,
    /// Identical (forward order aside): not touched.
    pub unchanged: Vec<String>,
    /// `[daemon]` settings that changed but need a restart to apply, each
    /// human-readable, e.g. `socket (/a -> /b)`. `log_level`, `watch` and
    /// `max_concurrent_handshakes` apply live and are never listed.
    pub needs_restart: Vec<String>,
}

/// Changes of one tunnel whose session is kept: its forwards (added ones in new-file
/// order, removed ones in old-file order) and its `on_state_change` hook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardChanges {
    /// The tunnel.
    pub name: String,
    /// `local` forwards to start listening for.
    pub local_added: Vec<LocalForward>,
    /// `local` forwards to stop.
    pub local_removed: Vec<LocalForward>,
    /// `remote` forwards to request from the server.
    pub remote_added: Vec<RemoteForward>,
    /// `remote` forwards to cancel on the server.
    pub remote_removed: Vec<RemoteForward>,
    /// `dynamic` forwards to start listening for.
    pub dynamic_added: Vec<DynamicForward>,
    /// `dynamic` forwards to stop.
    pub dynamic_removed: Vec<DynamicForward>,
    /// `on_state_change` changed (set, removed or edited).
    pub hook_changed: bool,
}

impl ForwardChanges {
    /// Number of forwards started.
    pub fn added_count(&self) -> usize {
        self.local_added.len() + self.remote_added.len() + self.dynamic_added.len()
    }

    /// Number of forwards stopped.
    pub fn removed_count(&self) -> usize {
        self.local_removed.len() + self.remote_removed.len() + self.dynamic_removed.len()
    }

    /// True when nothing changes: no forward is added or removed, the hook is the same.
    pub fn is_empty(&self) -> bool {
        self.added_count() == 0 && self.removed_count() == 0 && !self.hook_changed
    }
}

/// Compares two configurations: which tunnels start, stop, reconnect, change
/// forwards or stay untouched, and which `[daemon]` changes need a restart.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff {
        needs_restart: daemon_changes(&old.daemon, &new.daemon),
        ..Diff::default()
    };
    // BTreeMap iteration is by name, so every list comes out sorted.
    for (name, o) in &old.tunnels {
        match new.tunnels.get(name) {
            None => d.removed.push(name.clone()),
            Some(n) if !o.same_connection(n) => d.restarted.push(name.clone()),
            Some(n) => {
                let changes = forward_changes(o, n);
                if changes.is_empty() {
                    d.unchanged.push(name.clone());
                } else {
                    d.updated.push(changes);
                }
            }
        }
    }
    d.added = new
        .tunnels
        .keys()
        .filter(|name| !old.tunnels.contains_key(*name))
        .cloned()
        .collect();
    d
}

impl Diff {
    /// True when nothing at all changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && self.updated.is_empty()
            && self.needs_restart.is_empty()
    }

    /// One line per category that is not empty (`added: c, d`, `removed: a`,
    /// `restarted: b`, `updated: e (+1 -1 forwards)`, `unchanged: f, g`,
    /// `needs a restart: socket (/a -> /b)`); `no changes` when [`is_empty`](Self::is_empty).
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes".to_owned();
        }
        let updated: Vec<String> = self
            .updated
            .iter()
            .map(|u| {
                let mut what = Vec::new();
                if u.added_count() + u.removed_count() > 0 {
                    what.push(format!(
                        "+{} -{} forwards",
                        u.added_count(),
                        u.removed_count()
                    ));
                }
                if u.hook_changed {
                    what.push("on_state_change".to_owned());
                }
                format!("{} ({})", u.name, what.join(", "))
            })
            .collect();
        let lines: [(&str, &[String]); 6] = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
            ("updated", &updated),
            ("unchanged", &self.unchanged),
            ("needs a restart", &self.needs_restart),
        ];
        lines
            .iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(label, items)| format!("{label}: {}", items.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The `[daemon]` settings that changed and only take effect at start-up.
fn daemon_changes(old: &DaemonConfig, new: &DaemonConfig) -> Vec<String> {
    // Destructured so that a new field cannot be forgotten here.
    let DaemonConfig {
        socket,
        socket_group,
        metrics,
        watch: _,
        log_level: _,
        max_concurrent_handshakes: _,
        // Re-read at every reload.
        include: _,
    } = old;
    let mut out = Vec::new();
    if *socket != new.socket {
        out.push(change("socket", &socket.display(), &new.socket.display()));
    }
    if *socket_group != new.socket_group {
        out.push(change(
            "socket_group",
            &optional(socket_group),
            &optional(&new.socket_group),
        ));
    }
    if *metrics != new.metrics {
        out.push(change(
            "metrics",
            &optional(metrics),
            &optional(&new.metrics),
        ));
    }
    out
}

fn change(key: &str, old: &dyn Display, new: &dyn Display) -> String {
    format!("{key} ({old} -> {new})")
}

fn optional(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("none")
}

/// What changes in one tunnel's forwards between `old` and `new` (and whether its hook
/// does): what [`diff`] reports for a tunnel whose session is kept, and what the tunnel
/// applies, so the summary and the running forwards never disagree.
pub fn forward_changes(old: &TunnelConfig, new: &TunnelConfig) -> ForwardChanges {
    ForwardChanges {
        name: new.name.clone(),
        local_added: missing_from(&new.local, &old.local),
        local_removed: missing_from(&old.local, &new.local),
        remote_added: missing_from(&new.remote, &old.remote),
        remote_removed: missing_from(&old.remote, &new.remote),
        dynamic_added: missing_from(&new.dynamic, &old.dynamic),
        dynamic_removed: missing_from(&old.dynamic, &new.dynamic),
        hook_changed: old.on_state_change != new.on_state_change,
    }
}

/// The items of `these` not matched in `others`, in order; counted as a
/// multiset, so an item listed twice in `these` and once in `others` is
/// returned once.
fn missing_from<T: Clone + PartialEq>(these: &[T], others: &[T]) -> Vec<T> {
    let mut pool: Vec<Option<&T>> = others.iter().map(Some).collect();
    these
        .iter()
        .filter(
            |t| match pool.iter_mut().find(|slot| slot.is_some_and(|o| o == *t)) {
                Some(slot) => {
                    *slot = None;
                    false
                }
                None => true,
            },
        )
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::env;

    const BASE: &str = r#"
[daemon]
socket = "/a"
log_level = "info"

[defaults]
user = "tunnel"

[tunnels.a]
host = "a.example.com"
local = ["8080:intranet:80", "8443:intranet:443"]
remote = ["2222:localhost:22"]
dynamic = ["1080"]

[tunnels.b]
host = "b.example.com"
local = ["9090:db:5432"]
"#;

    fn config(text: &str) -> Config {
        crate::parse_with_env(Path::new("t.toml"), text, &env::fixed())
            .unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
    }

    /// `BASE` with each `(from, to)` replaced (each `from` must occur).
    fn edited(edits: &[(&str, &str)]) -> String {
        let mut text = BASE.to_owned();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} not in the base config");
            text = text.replacen(from, to, 1);
        }
        text
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The forward `spec` as parsed in tunnel `name` of `text`.
    fn local(text: &str, name: &str, spec: &str) -> LocalForward {
        let c = config(text);
        c.tunnels[name]
            .local
            .iter()
            .find(|f| f.spec == spec)
            .unwrap_or_else(|| panic!("no local {spec} in {name}"))
            .clone()
    }

    fn remote(text: &str, name: &str, spec: &str) -> RemoteForward {
        let c = config(text);
        c.tunnels[name]
            .remote
            .iter()
            .find(|f| f.spec == spec)
            .unwrap_or_else(|| panic!("no remote {spec} in {name}"))
            .clone()
    }

    fn dynamic(text: &str, name: &str, spec: &str) -> DynamicForward {
        let c = config(text);
        c.tunnels[name]
            .dynamic
            .iter()
            .find(|f| f.spec == spec)
            .unwrap_or_else(|| panic!("no dynamic {spec} in {name}"))
            .clone()
    }

    fn no_forwards(name: &str) -> ForwardChanges {
        ForwardChanges {
            name: name.to_owned(),
            local_added: vec![],
            local_removed: vec![],
            remote_added: vec![],
            remote_removed: vec![],
            dynamic_added: vec![],
            dynamic_removed: vec![],
            hook_changed: false,
        }
    }

    const TUNNEL_C: &str = r#"
[tunnels.c]
host = "c.example.com"
dynamic = ["1081"]
"#;

    #[test]
    fn table() {
        let base = BASE.to_owned();
        let with_c = format!("{BASE}{TUNNEL_C}");
        let forwards_edited = edited(&[
            (
                r#"local = ["8080:intranet:80", "8443:intranet:443"]"#,
                r#"local = ["8080:intranet:80", "8444:intranet:443"]"#,
            ),
            (r#"dynamic = ["1080"]"#, r#"dynamic = ["1080", "1082"]"#),
            ("remote = [\"2222:localhost:22\"]\n", ""),
        ]);
        let reordered = edited(&[(
            r#"local = ["8080:intranet:80", "8443:intranet:443"]"#,
            r#"local = ["8443:intranet:443", "8080:intranet:80"]"#,
        )]);
        let gateway = edited(&[("[tunnels.b]\n", "[tunnels.b]\ngateway_ports = true\n")]);
        let mix = format!(
            "{}{TUNNEL_C}",
            edited(&[
                (r#"socket = "/a""#, r#"socket = "/b""#),
                ("[daemon]\n", "[daemon]\nmetrics = \"127.0.0.1:9337\"\n"),
                (r#"log_level = "info""#, r#"log_level = "debug""#),
                (r#"dynamic = ["1080"]"#, r#"dynamic = ["1080", "1082"]"#),
                ("[tunnels.b]\n", "[tunnels.d]\n"),
            ])
        );
        let mix_old =
            format!("{BASE}\n[tunnels.e]\nhost = \"e.example.com\"\nlocal = [\"7070:x:70\"]\n");
        let mix_new =
            format!("{mix}\n[tunnels.e]\nhost = \"e2.example.com\"\nlocal = [\"7070:x:70\"]\n");

        struct Case {
            what: &'static str,
            old: String,
            new: String,
            want: Diff,
        }
        let cases = [
            Case {
                what: "identical",
                old: base.clone(),
                new: base.clone(),
                want: Diff {
                    unchanged: names(&["a", "b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "tunnel added",
                old: base.clone(),
                new: with_c.clone(),
                want: Diff {
                    added: names(&["c"]),
                    unchanged: names(&["a", "b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "tunnel removed",
                old: with_c.clone(),
                new: base.clone(),
                want: Diff {
                    removed: names(&["c"]),
                    unchanged: names(&["a", "b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "host changed",
                old: base.clone(),
                new: edited(&[("b.example.com", "b2.example.com")]),
                want: Diff {
                    restarted: names(&["b"]),
                    unchanged: names(&["a"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "port changed",
                old: base.clone(),
                new: edited(&[("[tunnels.b]\n", "[tunnels.b]\nport = 2200\n")]),
                want: Diff {
                    restarted: names(&["b"]),
                    unchanged: names(&["a"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "user changed in [defaults]",
                old: base.clone(),
                new: edited(&[(r#"user = "tunnel""#, r#"user = "other""#)]),
                want: Diff {
                    restarted: names(&["a", "b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "backoff changed",
                old: base.clone(),
                new: edited(&[(
                    "[tunnels.a]\n",
                    "[tunnels.a]\nbackoff = { initial = \"2s\" }\n",
                )]),
                want: Diff {
                    restarted: names(&["a"]),
                    unchanged: names(&["b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "heartbeat changed",
                old: base.clone(),
                new: edited(&[(
                    "[tunnels.a]\n",
                    "[tunnels.a]\nserver_alive_interval = \"5s\"\n",
                )]),
                want: Diff {
                    restarted: names(&["a"]),
                    unchanged: names(&["b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "forwards added and removed",
                old: base.clone(),
                new: forwards_edited.clone(),
                want: Diff {
                    updated: vec![ForwardChanges {
                        local_added: vec![local(&forwards_edited, "a", "8444:intranet:443")],
                        local_removed: vec![local(&base, "a", "8443:intranet:443")],
                        remote_removed: vec![remote(&base, "a", "2222:localhost:22")],
                        dynamic_added: vec![dynamic(&forwards_edited, "a", "1082")],
                        ..no_forwards("a")
                    }],
                    unchanged: names(&["b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "forward order changed only",
                old: base.clone(),
                new: reordered,
                want: Diff {
                    unchanged: names(&["a", "b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "gateway_ports changes the local bind",
                old: base.clone(),
                new: gateway.clone(),
                want: Diff {
                    updated: vec![ForwardChanges {
                        local_added: vec![local(&gateway, "b", "9090:db:5432")],
                        local_removed: vec![local(&base, "b", "9090:db:5432")],
                        ..no_forwards("b")
                    }],
                    unchanged: names(&["a"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "hook set: kept session",
                old: base.clone(),
                new: edited(&[(
                    "[tunnels.b]\n",
                    "[tunnels.b]\non_state_change = [\"/bin/true\"]\n",
                )]),
                want: Diff {
                    updated: vec![ForwardChanges {
                        hook_changed: true,
                        ..no_forwards("b")
                    }],
                    unchanged: names(&["a"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "update_host_keys changed: reconnect",
                old: base.clone(),
                new: edited(&[("[tunnels.b]\n", "[tunnels.b]\nupdate_host_keys = \"no\"\n")]),
                want: Diff {
                    restarted: names(&["b"]),
                    unchanged: names(&["a"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "socket changed",
                old: base.clone(),
                new: edited(&[(r#"socket = "/a""#, r#"socket = "/b""#)]),
                want: Diff {
                    unchanged: names(&["a", "b"]),
                    needs_restart: names(&["socket (/a -> /b)"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "socket_group set",
                old: base.clone(),
                new: edited(&[("[daemon]\n", "[daemon]\nsocket_group = \"wheel\"\n")]),
                want: Diff {
                    unchanged: names(&["a", "b"]),
                    needs_restart: names(&["socket_group (none -> wheel)"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "live [daemon] settings",
                old: base.clone(),
                new: edited(&[
                    (r#"log_level = "info""#, r#"log_level = "debug""#),
                    (
                        "[daemon]\n",
                        "[daemon]\nwatch = true\nmax_concurrent_handshakes = 2\n",
                    ),
                ]),
                want: Diff {
                    unchanged: names(&["a", "b"]),
                    ..Diff::default()
                },
            },
            Case {
                what: "everything at once",
                old: mix_old.clone(),
                new: mix_new.clone(),
                want: Diff {
                    added: names(&["c", "d"]),
                    removed: names(&["b"]),
                    restarted: names(&["e"]),
                    updated: vec![ForwardChanges {
                        dynamic_added: vec![dynamic(&mix_new, "a", "1082")],
                        ..no_forwards("a")
                    }],
                    unchanged: vec![],
                    needs_restart: names(&[
                        "socket (/a -> /b)",
                        "metrics (none -> 127.0.0.1:9337)",
                    ]),
                },
            },
        ];
        for case in cases {
            let got = diff(&config(&case.old), &config(&case.new));
            assert_eq!(got, case.want, "{}", case.what);
            assert_eq!(
                got.is_empty(),
                case.want.added.is_empty()
                    && case.want.removed.is_empty()
                    && case.want.restarted.is_empty()
                    && case.want.updated.is_empty()
                    && case.want.needs_restart.is_empty(),
                "is_empty: {}",
                case.what
            );
        }
    }

    #[test]
    fn summary() {
        let mix = Diff {
            added: names(&["c", "d"]),
            removed: names(&["a"]),
            restarted: names(&["b"]),
            updated: vec![
                ForwardChanges {
                    local_added: vec![local(BASE, "a", "8080:intranet:80")],
                    local_removed: vec![local(BASE, "b", "9090:db:5432")],
                    ..no_forwards("e")
                },
                ForwardChanges {
                    hook_changed: true,
                    ..no_forwards("h")
                },
            ],
            unchanged: names(&["f", "g"]),
            needs_restart: names(&["socket (/a -> /b)"]),
        };
        let no_changes = Diff {
            unchanged: names(&["a", "b"]),
            ..Diff::default()
        };
        let cases: [(&str, Diff, &str); 3] = [
            (
                "everything",
                mix,
                "added: c, d\n\
                 removed: a\n\
                 restarted: b\n\
                 updated: e (+1 -1 forwards), h (on_state_change)\n\
                 unchanged: f, g\n\
                 needs a restart: socket (/a -> /b)",
            ),
            ("only unchanged tunnels", no_changes, "no changes"),
            ("empty", Diff::default(), "no changes"),
        ];
        for (what, d, want) in cases {
            assert_eq!(d.summary(), want, "{what}");
        }
    }

    #[test]
    fn forwards_compare_as_multisets() {
        let cases: [(&[u8], &[u8], &[u8]); 4] = [
            (&[1, 2, 3], &[3, 2, 1], &[]),
            (&[1, 2], &[2], &[1]),
            (&[1, 1], &[1], &[1]),
            (&[], &[1], &[]),
        ];
        for (these, others, want) in cases {
            assert_eq!(missing_from(these, others), want, "{these:?} - {others:?}");
        }
    }
}
