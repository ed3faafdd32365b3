//! `update_host_keys` and `on_state_change`, in a tunnel or in `[defaults]`.

use super::{assert_errors, parse_ok};

const T: &str = "[tunnels.t]\nhost = \"h\"\ndynamic = [\"1080\"]\n";

#[test]
fn update_host_keys_is_yes_unless_said_otherwise() {
    assert!(parse_ok(T).tunnels["t"].update_host_keys);
    for (value, want) in [("\"yes\"", true), ("\"no\"", false), ("false", false)] {
        let text = format!("{T}update_host_keys = {value}\n");
        assert_eq!(
            parse_ok(&text).tunnels["t"].update_host_keys,
            want,
            "{value}"
        );
    }
    let text = format!("[defaults]\nupdate_host_keys = \"no\"\n{T}");
    assert!(!parse_ok(&text).tunnels["t"].update_host_keys);
    let text = format!("[defaults]\nupdate_host_keys = \"no\"\n{T}update_host_keys = \"yes\"\n");
    assert!(parse_ok(&text).tunnels["t"].update_host_keys);
}

#[test]
fn update_host_keys_errors() {
    assert_errors(
        &format!("{T}update_host_keys = \"ask\"\n"),
        &["t.toml:4:20: update_host_keys \"ask\" is impossible in a daemon"],
    );
    assert_errors(
        &format!("{T}update_host_keys = \"maybe\"\n"),
        &["t.toml:4:20: update_host_keys \"maybe\" is unknown; use \"yes\" or \"no\""],
    );
    assert_errors(
        &format!("{T}update_host_keys = 1\n"),
        &["t.toml:4:20: update_host_keys must be \"yes\" or \"no\", not an integer"],
    );
    assert_errors(
        &format!("{T}UpdateHostKeys = \"yes\"\n"),
        &[
            "t.toml:4:1: unknown key \"UpdateHostKeys\" in [tunnels.t]; did you mean \"update_host_keys\"?",
        ],
    );
}

#[test]
fn on_state_change_is_an_argv_and_a_tunnel_may_turn_the_default_off() {
    assert!(parse_ok(T).tunnels["t"].on_state_change.is_empty());
    let text = format!(
        "[defaults]\non_state_change = [\"~/bin/alert\", \"--to\", \"ops team\"]\n{T}\
         [tunnels.quiet]\nhost = \"q\"\ndynamic = [\"1081\"]\non_state_change = []\n"
    );
    let c = parse_ok(&text);
    assert_eq!(
        c.tunnels["t"].on_state_change,
        ["/home/alice/bin/alert", "--to", "ops team"]
    );
    assert!(c.tunnels["quiet"].on_state_change.is_empty());
}

#[test]
fn on_state_change_errors() {
    assert_errors(
        &format!("{T}on_state_change = \"/usr/local/bin/alert --quiet\"\n"),
        &[
            "t.toml:4:19: on_state_change must be an array: the program and its arguments, run without a shell",
        ],
    );
    assert_errors(
        &format!("{T}on_state_change = [\"\", \"x\"]\n"),
        &["t.toml:4:20: on_state_change: the program is empty"],
    );
    assert_errors(
        &format!("{T}on_state_change = [\"/bin/x\", 3]\n"),
        &["t.toml:4:30: entries of on_state_change must be strings, not an integer"],
    );
}
