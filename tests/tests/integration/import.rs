//! `tunneld import` as a process: real-world autossh and ssh command lines and ssh_config
//! files in; each result, unedited, must pass the real `tunneld check`, and its resolved
//! values must be what ssh would have used.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tunneld_config::{Listen, LocalBind, StrictHostKeyChecking, TunnelConfig};

use crate::harness::tunneld_bin;

/// A temporary working directory for one import, and the directory `~/` stands for.
struct Home {
    dir: tempfile::TempDir,
    /// Where `~/` leads, for `tunneld check` and for this process alike (the children
    /// inherit its environment).
    tilde: PathBuf,
    /// The working directory as the kernel names it: relative paths are made absolute
    /// against it.
    cwd: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        Home {
            dir,
            tilde: tilde(),
            cwd,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `tunneld ARGS` with the test folder as working directory.
    fn tunneld(&self, args: &[&str]) -> Output {
        Command::new(tunneld_bin())
            .args(args)
            .env("USER", "importer")
            .current_dir(self.path())
            .output()
            .unwrap()
    }

    /// `tunneld import ARGS`, which must succeed without warnings; its stdout.
    fn import(&self, args: &[&str]) -> String {
        let mut all = vec!["import"];
        all.extend_from_slice(args);
        let out = self.tunneld(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "import {args:?}: {stderr}");
        assert!(stderr.is_empty(), "import {args:?} warned: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes the imported tables, as they are, after a `[daemon]` table into a config
    /// file; runs the real `tunneld check` on it and returns its stdout and the file's
    /// tunnels as tunneld resolves them.
    fn check(&self, imported: &str) -> (String, Vec<TunnelConfig>) {
        let path = self.path().join("tunneld.toml");
        let socket = self.path().join("tunneld.sock");
        let text = format!("[daemon]\nsocket = \"{}\"\n\n{imported}", socket.display());
        std::fs::write(&path, &text).unwrap();
        let out = self.tunneld(&["check", "-c", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "tunneld check refused:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = tunneld_config::load(&path).unwrap();
        (
            String::from_utf8(out.stdout).unwrap(),
            config.tunnels.into_values().collect(),
        )
    }
}

/// The directory tunneld expands `~/` to in this environment.
fn tilde() -> PathBuf {
    let text = "[tunnels.t]\nhost = \"h\"\ndynamic = \"1\"\nidentity_file = \"~/k\"\n";
    let config = tunneld_config::parse(Path::new("tilde.toml"), text).unwrap();
    let key = &config.tunnels["t"].identity_files[0];
    key.parent().unwrap().to_path_buf()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One command line as people run it, what `tunneld check` must then print for its
/// tunnel, the comments that must be there, and checks of the resolved values.
struct Case {
    /// The command line as words, as a shell passes them (or one word: the whole line).
    words: &'static [&'static str],
    summary: &'static str,
    notes: &'static [&'static str],
    values: fn(&TunnelConfig, &Home),
}

const COMMAND_LINES: &[Case] = &[
    // The classic: a box behind NAT keeps its sshd reachable on a VPS.
    Case {
        words: &[
            "autossh",
            "-M",
            "0",
            "-f",
            "-N",
            "-o",
            "ServerAliveInterval 30",
            "-o",
            "ServerAliveCountMax 3",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "2222:localhost:22",
            "tunnel@vps.example.com",
        ],
        summary: "vps.example.com: tunnel@vps.example.com:22  -R 2222:localhost:22",
        notes: &[
            "-M 0: autossh's monitor is not needed",
            "-f: ",
            "-N: ",
            "-o ExitOnForwardFailure=yes: ",
        ],
        values: |t, _| {
            assert_eq!(t.server_alive_interval, secs(30));
            assert_eq!(t.server_alive_count_max, 3);
        },
    },
    // A SOCKS proxy through a host.
    Case {
        words: &[
            "ssh",
            "-D",
            "1080",
            "-C",
            "-q",
            "-N",
            "-f",
            "user@proxy.example.org",
        ],
        summary: "proxy.example.org: user@proxy.example.org:22  -D 1080",
        notes: &["-C: tunneld does not compress", "-q: "],
        values: |t, _| {
            assert_eq!(t.dynamic[0].bind, LocalBind::Loopback);
            assert_eq!(t.dynamic[0].port, 1080);
        },
    },
    // Several services behind a bastion, with bind addresses.
    Case {
        words: &[
            "ssh",
            "-N",
            "-L",
            "127.0.0.1:5432:db.internal:5432",
            "-L",
            "0.0.0.0:8080:web.internal:80",
            "-L",
            "[::1]:6379:cache.internal:6379",
            "ops@bastion.example.com",
        ],
        summary: "bastion.example.com: ops@bastion.example.com:22  -L 127.0.0.1:5432:db.internal:5432  -L 0.0.0.0:8080:web.internal:80  -L [::1]:6379:cache.internal:6379",
        notes: &["-N: "],
        values: |t, _| {
            assert_eq!(
                t.local[2].listen,
                Listen::Tcp {
                    bind: LocalBind::Addr("::1".into()),
                    port: 6379
                }
            );
        },
    },
    // Through a jump host.
    Case {
        words: &[
            "ssh",
            "-J",
            "admin@jump.example.com:2222",
            "-N",
            "-L",
            "3389:win.internal:3389",
            "admin@gateway.internal",
        ],
        summary: "gateway.internal: admin@gateway.internal:22  -L 3389:win.internal:3389  via admin@jump.example.com:2222",
        notes: &[],
        values: |t, _| {
            let hop = &t.proxy_jump[0];
            assert_eq!(
                (hop.user.as_deref(), hop.host.as_str(), hop.port),
                (Some("admin"), "jump.example.com", 2222)
            );
        },
    },
    // Through an HTTP proxy, as OpenSSH users write it.
    Case {
        words: &[
            "ssh",
            "-o",
            "ProxyCommand=nc -X connect -x proxy.corp:3128 %h %p",
            "-N",
            "-R",
            "2222:localhost:22",
            "tunnel@public.example.com",
        ],
        summary: "public.example.com: tunnel@public.example.com:22  -R 2222:localhost:22  through proxy http://proxy.corp:3128",
        notes: &[],
        values: |t, _| {
            let Some(tunneld_config::Proxy::Url(url)) = &t.proxy.proxy else {
                panic!("{:?}", t.proxy);
            };
            assert_eq!((url.host.as_str(), url.port), ("proxy.corp", 3128));
        },
    },
    // An ssh:// destination with its port.
    Case {
        words: &[
            "ssh",
            "-N",
            "-R",
            "8080:localhost:80",
            "ssh://deploy@edge.example.com:2200",
        ],
        summary: "edge.example.com: deploy@edge.example.com:2200  -R 8080:localhost:80",
        notes: &[],
        values: |t, _| assert_eq!(t.hosts[0].port, 2200),
    },
    // -p and several -i; autossh's old-style monitor port.
    Case {
        words: &[
            "autossh",
            "-M",
            "20000",
            "-N",
            "-p",
            "443",
            "-i",
            "/etc/tunnel/id_ed25519",
            "-i",
            "~/.ssh/id_rsa",
            "-R",
            "0.0.0.0:10022:localhost:22",
            "box@relay.example.com",
        ],
        summary: "relay.example.com: box@relay.example.com:443  -R 0.0.0.0:10022:localhost:22",
        notes: &["-M 20000: autossh's monitor is not needed"],
        values: |t, home| {
            assert_eq!(
                t.identity_files,
                [
                    PathBuf::from("/etc/tunnel/id_ed25519"),
                    home.tilde.join(".ssh/id_rsa")
                ]
            );
        },
    },
    // IPv6 server and target.
    Case {
        words: &[
            "ssh",
            "-6",
            "-N",
            "-L",
            "8443:[2001:db8::443]:443",
            "ops@2001:db8::1",
        ],
        summary: "2001-db8--1: ops@[2001:db8::1]:22  -L 8443:[2001:db8::443]:443",
        notes: &["-6: tunneld has no address family setting"],
        values: |t, _| assert_eq!(t.hosts[0].host, "2001:db8::1"),
    },
    // Unix sockets: a remote Docker socket here, the local gpg-agent there.
    Case {
        words: &[
            "ssh",
            "-nNT",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-L",
            "/tmp/docker.sock:/var/run/docker.sock",
            "-R",
            "/run/user/1000/gnupg/S.gpg-agent:/home/me/.gnupg/S.gpg-agent.extra",
            "me@docker-host.example.com",
        ],
        summary: "docker-host.example.com: me@docker-host.example.com:22  -L /tmp/docker.sock:/var/run/docker.sock  -R /run/user/1000/gnupg/S.gpg-agent:/home/me/.gnupg/S.gpg-agent.extra",
        notes: &["-n: ", "-T: "],
        values: |t, _| {
            assert!(t.stream_local_bind_unlink);
            assert_eq!(t.local[0].listen, Listen::Unix("/tmp/docker.sock".into()));
        },
    },
    // A reverse SOCKS proxy, limited to one destination.
    Case {
        words: &[
            "ssh",
            "-N",
            "-R",
            "1080",
            "-o",
            "PermitRemoteOpen=localhost:22",
            "helper@vps.example.com",
        ],
        summary: "vps.example.com: helper@vps.example.com:22  -R 1080",
        notes: &[],
        values: |t, _| {
            assert!(t.remote[0].target.is_none());
            assert!(t.permit_remote_open.allows("localhost", 22));
            assert!(!t.permit_remote_open.allows("localhost", 23));
        },
    },
    // Options after the destination, -o with '=' and with a space.
    Case {
        words: &[
            "autossh",
            "-M",
            "0",
            "u@h.example.com",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax 2",
            "-N",
            "-R",
            "9000:localhost:9000",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
        ],
        summary: "h.example.com: u@h.example.com:22  -R 9000:localhost:9000",
        notes: &[],
        values: |t, _| {
            assert_eq!(t.server_alive_interval, secs(15));
            assert_eq!(t.server_alive_count_max, 2);
            assert_eq!(t.strict_host_key_checking, StrictHostKeyChecking::No);
            assert_eq!(
                t.known_hosts,
                [
                    PathBuf::from("/dev/null"),
                    PathBuf::from("/etc/ssh/ssh_known_hosts")
                ]
            );
        },
    },
    // The "keep the session busy" remote command.
    Case {
        words: &[
            "autossh",
            "-M",
            "0",
            "-R",
            "5000:localhost:5000",
            "pi@home.example.net",
            "while true; do echo alive; sleep 60; done",
        ],
        summary: "home.example.net: pi@home.example.net:22  -R 5000:localhost:5000",
        notes: &[
            "remote command `'while true; do echo alive; sleep 60; done'`: tunneld runs no remote command",
        ],
        values: |_, _| {},
    },
    // -g, -l, a connect timeout.
    Case {
        words: &[
            "ssh",
            "-g",
            "-l",
            "tunnel",
            "-o",
            "ConnectTimeout=10",
            "-N",
            "-L",
            "8000:intranet:80",
            "office.example.com",
        ],
        summary: "office.example.com: tunnel@office.example.com:22  -L 8000:intranet:80",
        notes: &[],
        values: |t, _| {
            assert!(t.gateway_ports);
            assert_eq!(
                t.local[0].listen,
                Listen::Tcp {
                    bind: LocalBind::Any,
                    port: 8000
                }
            );
            assert_eq!(t.connect_timeout, secs(10));
        },
    },
    // The whole line as one argument, with autossh's environment in front.
    Case {
        words: &[
            "AUTOSSH_GATETIME=0 AUTOSSH_POLL=60 autossh -M 0 -N -D 127.0.0.1:1080 -o ServerAliveInterval=60 socks@gw.example.com",
        ],
        summary: "gw.example.com: socks@gw.example.com:22  -D 127.0.0.1:1080",
        notes: &["AUTOSSH_GATETIME=0: no starting gate", "AUTOSSH_POLL=60: "],
        values: |t, _| assert_eq!(t.server_alive_interval, secs(60)),
    },
    // ssh_config options given with -o, relative key paths as ssh opens them.
    Case {
        words: &[
            "ssh",
            "-o",
            "HostName=198.51.100.20",
            "-o",
            "Port=2022",
            "-o",
            "IdentityFile=keys/ci",
            "-o",
            "CertificateFile=/keys/ci-cert.pub",
            "-o",
            "ProxyJump=jump.example.com",
            "-o",
            "LocalForward 9200 localhost:9200",
            "-N",
            "-T",
            "ci@search",
        ],
        summary: "search: ci@198.51.100.20:2022  -L 9200:localhost:9200  via jump.example.com:22",
        notes: &[],
        values: |t, home| {
            assert_eq!(t.identity_files, [home.cwd.join("keys/ci")]);
            assert_eq!(t.certificate_files, [PathBuf::from("/keys/ci-cert.pub")]);
            assert_eq!(t.proxy_jump[0].host, "jump.example.com");
        },
    },
];

#[test]
fn command_lines_import_into_files_that_pass_check() {
    let mut checked = 0;
    for case in COMMAND_LINES {
        let home = Home::new();
        let mut words = vec!["--"];
        words.extend_from_slice(case.words);
        let out = home.import(&words);
        assert_eq!(out.matches("[tunnels.").count(), 1, "{out}");
        for note in case.notes {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("# not imported: ") && l.contains(note)),
                "{:?}: no comment with {note:?}:\n{out}",
                case.words
            );
        }
        let (summary, tunnels) = home.check(&out);
        assert!(
            summary.lines().any(|l| l == case.summary),
            "{:?}: expected {:?} in\n{summary}\nfrom\n{out}",
            case.words,
            case.summary
        );
        assert_eq!(tunnels.len(), 1);
        (case.values)(&tunnels[0], &home);
        checked += 1;
    }
    assert_eq!(checked, 15);
}

#[test]
fn name_option_names_the_table() {
    let home = Home::new();
    let out = home.import(&[
        "--name",
        "home-ssh",
        "--",
        "ssh",
        "-N",
        "-R",
        "2222:localhost:22",
        "u@vps.example.com",
    ]);
    let (summary, _) = home.check(&out);
    assert!(
        summary.contains("home-ssh: u@vps.example.com:22  -R 2222:localhost:22"),
        "{summary}"
    );
}

/// A typical ~/.ssh/config: defaults in `Host *` at the end, keys under `~`, a jump host,
/// a Match block, hosts without forwards.
const USER_CONFIG: &str = r#"
Host home-nas nas
    HostName nas.example.net
    Port 2222
    RemoteForward 8022 localhost:22
    RemoteForward 8443 localhost:443

Host db-tunnel
    HostName db.internal
    User postgres
    ProxyJump jump@bastion.example.com
    LocalForward 15432 localhost:5432
    IdentityFile ~/.ssh/db_ed25519

Host github.com
    IdentityFile ~/.ssh/github

Match host db-tunnel exec "nc -z vpn.internal 22"
    ProxyJump none

Host *
    User me
    IdentityFile ~/.ssh/id_ed25519
    ServerAliveInterval 30
    ServerAliveCountMax 4
    StrictHostKeyChecking accept-new
    ControlMaster auto
    ControlPath ~/.ssh/cm-%r@%h:%p
"#;

/// Global options first, Unix sockets, IPv6, reverse SOCKS, an Include.
const SERVER_CONFIG: &str = r#"
Include ~/.ssh/config.d/*
UserKnownHostsFile ~/.ssh/known_hosts_tunnels
ConnectTimeout 20

Host relay
    HostName 2001:db8::22
    User tunnel
    RemoteForward 1080
    PermitRemoteOpen localhost:22 localhost:80
    GatewayPorts yes
    DynamicForward 0.0.0.0:1081

Host docker
    HostName docker.example.com
    LocalForward /tmp/docker-%n.sock /var/run/docker.sock
    StreamLocalBindUnlink yes
    StreamLocalBindMask 0117
    ForwardAgent yes
"#;

fn write(home: &Home, name: &str, text: &str) -> String {
    let path = home.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn by_name<'a>(tunnels: &'a [TunnelConfig], name: &str) -> &'a TunnelConfig {
    tunnels
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tunnel {name}"))
}

#[test]
fn ssh_config_blocks_with_forwards_import_and_pass_check() {
    let home = Home::new();
    let file = write(&home, "config", USER_CONFIG);
    let out = home.import(&["--ssh-config", &file]);
    assert_eq!(out.matches("[tunnels.").count(), 2, "{out}");
    let (summary, tunnels) = home.check(&out);
    assert!(
        summary.contains(
            "home-nas: me@nas.example.net:2222  -R 8022:localhost:22  -R 8443:localhost:443"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("db-tunnel: postgres@db.internal:22  -L 15432:localhost:5432"),
        "{summary}"
    );
    assert!(summary.contains("ok, 2 tunnels"), "{summary}");

    let nas = by_name(&tunnels, "home-nas");
    assert_eq!(nas.identity_files, [home.tilde.join(".ssh/id_ed25519")]);
    assert_eq!(nas.server_alive_interval, secs(30));
    assert_eq!(nas.server_alive_count_max, 4);
    assert_eq!(
        nas.strict_host_key_checking,
        StrictHostKeyChecking::AcceptNew
    );
    let db = by_name(&tunnels, "db-tunnel");
    assert_eq!(
        db.identity_files,
        [
            home.tilde.join(".ssh/db_ed25519"),
            home.tilde.join(".ssh/id_ed25519")
        ]
    );
    let hop = &db.proxy_jump[0];
    assert_eq!(
        (hop.user.as_deref(), hop.host.as_str()),
        (Some("jump"), "bastion.example.com")
    );

    for comment in [
        "Match host db-tunnel exec nc -z vpn.internal 22: Match blocks are not evaluated",
        "Host github.com: no LocalForward, RemoteForward or DynamicForward",
        "ControlMaster auto: no connection sharing",
        "ControlPath ~/.ssh/cm-%r@%h:%p: no connection sharing",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("# not imported: ") && l.contains(comment)),
            "{comment:?}\n{out}"
        );
    }
}

#[test]
fn ssh_config_global_options_sockets_and_ipv6_pass_check() {
    let home = Home::new();
    let file = write(&home, "servers", SERVER_CONFIG);
    let out = home.import(&["--ssh-config", &file]);
    let (summary, tunnels) = home.check(&out);
    assert!(
        summary.contains("relay: tunnel@[2001:db8::22]:22  -R 1080  -D 0.0.0.0:1081"),
        "{summary}"
    );
    assert!(summary.contains("docker: importer@docker.example.com:22  -L /tmp/docker-docker.sock:/var/run/docker.sock"), "{summary}");
    let relay = by_name(&tunnels, "relay");
    assert!(relay.gateway_ports);
    assert!(relay.permit_remote_open.allows("localhost", 80));
    assert!(!relay.permit_remote_open.allows("db", 5432));
    assert_eq!(relay.connect_timeout, secs(20));
    assert_eq!(
        relay.known_hosts,
        [
            home.tilde.join(".ssh/known_hosts_tunnels"),
            PathBuf::from("/etc/ssh/ssh_known_hosts")
        ]
    );
    let docker = by_name(&tunnels, "docker");
    assert!(docker.stream_local_bind_unlink);
    assert_eq!(docker.stream_local_bind_mask, 0o117);
    for comment in [
        "Include ~/.ssh/config.d/*: not followed",
        "ForwardAgent yes: tunneld never forwards the agent",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("# not imported: ") && l.contains(comment)),
            "{comment:?}\n{out}"
        );
    }
}

#[test]
fn ssh_config_hosts_named_take_wildcard_blocks_as_ssh_does() {
    let home = Home::new();
    let text =
        "Host *.lab\n    User pi\n    DynamicForward 1090\n\nHost *\n    ServerAliveInterval 5\n";
    let file = write(&home, "lab", text);
    // Both would listen on port 1090: the import warns, and tunneld check refuses.
    let both = home.tunneld(&["import", "--ssh-config", &file, "pi4.lab", "pi5.lab"]);
    assert!(both.status.success());
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("tunneld import: warning: tunneld check will refuse this")
            && stderr.contains("would listen on the same address"),
        "{stderr}"
    );
    let path = home.path().join("tunneld.toml");
    std::fs::write(&path, &both.stdout).unwrap();
    let refused = home.tunneld(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(78));
    // One at a time, each passes.
    let out = home.import(&["--ssh-config", &file, "pi4.lab"]);
    let (summary, tunnels) = home.check(&out);
    assert!(
        summary.contains("pi4.lab: pi@pi4.lab:22  -D 1090"),
        "{summary}"
    );
    assert_eq!(tunnels[0].server_alive_interval, secs(5));
}

#[test]
fn input_that_is_not_a_tunnel_is_refused_clearly() {
    let home = Home::new();
    let missing = home.path().join("missing").display().to_string();
    let file = write(&home, "config", USER_CONFIG);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--", "scp", "-P", "22", "file", "host:"],
            2,
            "\"scp\" is not ssh or autossh",
        ),
        (
            &["--", "autossh", "-M", "0", "-f", "-N"],
            2,
            "no destination",
        ),
        (&["--", "ssh", "user@host"], 2, "no -L, -R or -D forward"),
        (&["--", "ssh", "-L"], 2, "option -L needs an argument"),
        (&["ssh -R 2222:localhost:22 'u@h"], 2, "unclosed quote"),
        (&[], 2, "no command line given"),
        (
            &["--name", "a b", "--", "ssh", "-D", "1", "h"],
            2,
            "--name \"a b\"",
        ),
        (&["--ssh-config", &missing], 1, "cannot read"),
        (
            &["--ssh-config", &file, "nowhere"],
            2,
            "no Host block matches \"nowhere\"",
        ),
    ];
    for (args, code, want) in cases {
        let mut all = vec!["import"];
        all.extend_from_slice(args);
        let out = home.tunneld(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.starts_with("tunneld import: "), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
