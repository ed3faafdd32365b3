//! `proxy`, `proxy_password_file`, `proxy_command` and `proxy = "env"`, and their errors.

use std::path::Path;

use super::{assert_errors, parse_ok};
use crate::{Proxy, ProxyRoute, env, parse_with_env};

#[test]
fn proxies_and_their_errors() {
    let c = parse_ok(
        r#"
[defaults]
proxy = "http://bob@proxy.corp:3128"
proxy_password_file = "~/proxy.pass"
[tunnels.a]
host = "h"
local = ["1:h:2"]
[tunnels.b]
host = "h"
local = ["3:h:3"]
proxy = "none"
[tunnels.c]
host = "h"
local = ["4:h:4"]
proxy_command = "nc -X connect -x proxy.corp:3128 %h %p"
"#,
    );
    let a = &c.tunnels["a"].proxy;
    assert_eq!(
        a.proxy.as_ref().map(ToString::to_string).as_deref(),
        Some("http://bob@proxy.corp:3128")
    );
    assert_eq!(
        a.password_file.as_deref(),
        Some(Path::new("/home/alice/proxy.pass"))
    );
    assert_eq!(c.tunnels["b"].proxy.proxy, None);
    assert_eq!(
        c.tunnels["c"].proxy.proxy,
        Some(Proxy::Command(
            "nc -X connect -x proxy.corp:3128 %h %p".into()
        ))
    );
    // Only the proxy differs: a reload must reconnect.
    let mut direct = c.tunnels["a"].clone();
    assert!(direct.same_connection(&c.tunnels["a"]));
    direct.proxy = c.tunnels["b"].proxy.clone();
    assert!(!direct.same_connection(&c.tunnels["a"]));

    assert_errors(
        r#"
[tunnels.t]
host = "h"
local = ["1:h:2"]
proxy = "http://p:3128"
proxy_command = "nc %h %p"
[tunnels.u]
host = "h"
local = ["3:h:3"]
proxy = "socks5://carol@p:1080"
[tunnels.v]
host = "h"
local = ["4:h:4"]
proxy = "http://p:3128"
proxy_password_file = "/etc/p"
[tunnels.w]
host = "h"
local = ["5:h:5"]
proxy_password_file = "/etc/p"
[tunnels.x]
host = "h"
local = ["6:h:6"]
proxy = "http://carol:pw@p:3128"
proxy_command = "nc %j"
"#,
        &[
            "t.toml:6:1: proxy and proxy_command are both set",
            "t.toml:10:9: tunnel \"u\": the proxy user \"carol\" needs a password",
            "t.toml:15:23: tunnel \"v\": proxy_password_file is set but the proxy names no user",
            "t.toml:19:23: tunnel \"w\": proxy_password_file is set but no proxy is",
            "t.toml:23:9: proxy \"http://carol:…@p:3128\" has a password in it",
            "t.toml:24:17: proxy_command has \"%j\"",
        ],
    );
}

#[test]
fn proxy_from_the_environment() {
    let env = env::Env {
        proxy_vars: crate::proxy::ProxyVars {
            proxy: Some(("https_proxy".into(), "http://proxy.corp:3128".into())),
            no_proxy: Some("localhost,.lan".into()),
        },
        ..env::fixed()
    };
    let text = "[tunnels.t]\nhost = [\"h.lan\", \"public.example.com\"]\nlocal = [\"1:h:2\"]\nproxy = \"env\"\n";
    let c = parse_with_env(Path::new("t.toml"), text, &env).unwrap();
    let proxy = c.tunnels["t"].proxy.proxy.as_ref().unwrap();
    assert_eq!(proxy.route("h.lan"), None);
    assert!(
        matches!(proxy.route("public.example.com"), Some(ProxyRoute::Url(u)) if u.port == 3128)
    );
    let broken = env::Env {
        proxy_vars: crate::proxy::ProxyVars {
            proxy: Some(("ALL_PROXY".into(), "ftp://p:21".into())),
            no_proxy: None,
        },
        ..env::fixed()
    };
    let errs = parse_with_env(Path::new("t.toml"), text, &broken).unwrap_err();
    assert!(
        errs.errors[0]
            .to_string()
            .starts_with("t.toml:4:9: tunnel \"t\": proxy = \"env\": $ALL_PROXY: proxy \"ftp://p:21\": unknown scheme"),
        "{errs}"
    );
}
