//! What the defaults take from the user's environment: the home directory for `~`,
//! the user name.

use std::path::{Path, PathBuf};

use super::parse_ok;
use crate::{env, parse_with_env};

#[test]
fn tilde_expansion_in_paths() {
    let c = parse_ok(
        r#"
[daemon]
socket = "~/tunneld.sock"
[defaults]
identity_file = ["~/.ssh/id_ed25519", "/etc/tunneld/key"]
known_hosts = "~/.ssh/known_hosts"
[tunnels.t]
host = "h"
local = ["1:h:2"]
"#,
    );
    assert_eq!(c.daemon.socket, PathBuf::from("/home/alice/tunneld.sock"));
    let t = &c.tunnels["t"];
    assert_eq!(
        t.identity_files,
        [
            PathBuf::from("/home/alice/.ssh/id_ed25519"),
            PathBuf::from("/etc/tunneld/key")
        ]
    );
    assert_eq!(
        t.known_hosts,
        [PathBuf::from("/home/alice/.ssh/known_hosts")]
    );
}

#[test]
fn missing_user_is_an_error_only_when_needed() {
    let env = env::Env {
        user: None,
        ..env::fixed()
    };
    let text = "[tunnels.t]\nhost = \"h\"\nlocal = [\"1:h:2\"]\n";
    let errs = parse_with_env(Path::new("t.toml"), text, &env).unwrap_err();
    assert_eq!(errs.errors.len(), 1);
    assert!(
        errs.errors[0]
            .to_string()
            .starts_with("t.toml:1:10: tunnel \"t\": cannot tell the current user name")
    );
    let with_user = format!("[defaults]\nuser = \"u\"\n{text}");
    assert_eq!(
        parse_with_env(Path::new("t.toml"), &with_user, &env)
            .unwrap()
            .tunnels["t"]
            .user,
        "u"
    );
}
