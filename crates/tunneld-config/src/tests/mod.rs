//! Whole-file tests: defaults, layering, positions of every error.
//!
//! - `resolved`: what a good file resolves to (built-in defaults, `[defaults]` layering,
//!   host lists).
//! - `environment`: what the defaults take from the user's environment (`~`, the user
//!   name).
//! - `errors`: every problem reported at once, each at its position.
//! - `same_connection`: which changes a reload may apply without reconnecting.
//! - `loading`: reading the file, and the default path.
//! - `proxies`: `proxy`, `proxy_command`, `proxy = "env"` and their errors.
//! - `includes`: `[daemon] include`: included files, their errors, duplicate names.
//! - `fleet_keys`: `update_host_keys` and `on_state_change`.

mod environment;
mod errors;
mod fleet_keys;
mod includes;
mod loading;
mod proxies;
mod resolved;
mod same_connection;

use std::path::Path;

use crate::{Config, env, parse_with_env};

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
