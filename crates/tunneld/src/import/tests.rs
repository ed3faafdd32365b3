//! Table-driven tests of the mapping: command lines and ssh_config files in, the exact
//! keys and the notes out; every result must also pass tunneld's own parser.

use std::path::Path;

use super::cmdline;
use super::draft::{duration, quote, table_name};
use super::options::convtime;
use super::ssh_config::{SshConfig, split_line};

/// Where the import runs: relative paths are resolved against it.
const CWD: &str = "/home/alice/work";

/// The key lines (and the table line) of a rendered import, without comments.
fn keys(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn notes(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("# not imported: "))
        .collect()
}

/// Imports one command line, given as words.
fn import_words(words: &[String]) -> Result<String, String> {
    let imported = cmdline::parse(words)?;
    let name = table_name(&imported.draft.alias);
    Ok(imported
        .draft
        .render(&name, &imported.header, Path::new(CWD)))
}

/// Asserts that tunneld's own parser accepts the text.
fn assert_valid(input: &str, out: &str) {
    if let Err(e) = tunneld_config::parse(Path::new("imported.toml"), out) {
        panic!("{input}\n{out}\nrefused: {e:?}");
    }
}

struct Case {
    line: &'static str,
    keys: &'static [&'static str],
    /// Substrings, each of which some note must contain.
    notes: &'static [&'static str],
}

const COMMAND_LINES: &[Case] = &[
    Case {
        line: "autossh -M 0 -f -N -o ServerAliveInterval=30 -o ServerAliveCountMax=3 -o ExitOnForwardFailure=yes -R 2222:localhost:22 u@vps.example.com",
        keys: &[
            "[tunnels.\"vps.example.com\"]",
            "host = \"vps.example.com\"",
            "user = \"u\"",
            "remote = [\"2222:localhost:22\"]",
            "server_alive_interval = \"30s\"",
            "server_alive_count_max = 3",
        ],
        notes: &[
            "-M 0: autossh's monitor is not needed",
            "-f: tunneld runs in the foreground",
            "-N: implied",
            "-o ExitOnForwardFailure=yes: not needed",
        ],
    },
    Case {
        line: "ssh -fNT -D 1080 -p 2222 -i ~/.ssh/id_ed25519 -i /etc/keys/b proxy@192.0.2.5",
        keys: &[
            "[tunnels.\"192.0.2.5\"]",
            "host = \"192.0.2.5\"",
            "port = 2222",
            "user = \"proxy\"",
            "identity_file = [\"~/.ssh/id_ed25519\", \"/etc/keys/b\"]",
            "dynamic = [\"1080\"]",
        ],
        notes: &["-f:", "-N:", "-T: implied"],
    },
    Case {
        line: "ssh -N -g -L 0.0.0.0:8080:intranet.lan:80 -L '[::1]:5432:db.lan:5432' -L127.0.0.1:9000:localhost:9000 ops@bastion.example.com",
        keys: &[
            "[tunnels.\"bastion.example.com\"]",
            "host = \"bastion.example.com\"",
            "user = \"ops\"",
            "local = [\"0.0.0.0:8080:intranet.lan:80\", \"[::1]:5432:db.lan:5432\", \"127.0.0.1:9000:localhost:9000\"]",
            "gateway_ports = true",
        ],
        notes: &["-N:"],
    },
    Case {
        line: "ssh -J jump@gw.example.com:2200,second.example.com -N -L 3306:db.internal:3306 admin@app.internal",
        keys: &[
            "[tunnels.\"app.internal\"]",
            "host = \"app.internal\"",
            "user = \"admin\"",
            "proxy_jump = \"jump@gw.example.com:2200,second.example.com\"",
            "local = [\"3306:db.internal:3306\"]",
        ],
        notes: &[],
    },
    Case {
        line: "ssh ssh://deploy@[2001:db8::10]:2022 -N -R 8443:localhost:443",
        keys: &[
            "[tunnels.2001-db8--10]",
            "host = \"[2001:db8::10]\"",
            "port = 2022",
            "user = \"deploy\"",
            "remote = [\"8443:localhost:443\"]",
        ],
        notes: &["-N:"],
    },
    Case {
        line: "ssh -o 'ServerAliveInterval 15' -o 'UserKnownHostsFile /dev/null' -o StrictHostKeyChecking=no -oConnectTimeout=1m -N -R 0:localhost:80 h.example.com",
        keys: &[
            "[tunnels.\"h.example.com\"]",
            "host = \"h.example.com\"",
            "known_hosts = [\"/dev/null\", \"/etc/ssh/ssh_known_hosts\"]",
            "strict_host_key_checking = \"no\"",
            "remote = [\"0:localhost:80\"]",
            "server_alive_interval = \"15s\"",
            "connect_timeout = \"1m\"",
        ],
        notes: &[],
    },
    Case {
        line: "ssh -o UpdateHostKeys=no -o UpdateHostKeys=yes -N -R 0:localhost:22 h",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "update_host_keys = \"no\"",
            "remote = [\"0:localhost:22\"]",
        ],
        notes: &["-N:"],
    },
    Case {
        line: "ssh -o UpdateHostKeys=ask -N -R 0:localhost:22 h",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "update_host_keys = \"no\"",
            "remote = [\"0:localhost:22\"]",
        ],
        notes: &["-o UpdateHostKeys=ask: a daemon cannot ask", "-N:"],
    },
    Case {
        line: "ssh -N -L /tmp/docker.sock:/var/run/docker.sock -R /run/user/1000/S.gpg-agent:/home/me/.gnupg/S.gpg-agent.extra -o StreamLocalBindUnlink=yes me@dev.example.com",
        keys: &[
            "[tunnels.\"dev.example.com\"]",
            "host = \"dev.example.com\"",
            "user = \"me\"",
            "local = [\"/tmp/docker.sock:/var/run/docker.sock\"]",
            "remote = [\"/run/user/1000/S.gpg-agent:/home/me/.gnupg/S.gpg-agent.extra\"]",
            "stream_local_bind_unlink = true",
        ],
        notes: &[],
    },
    Case {
        line: "ssh -N -R 1080 -R 127.0.0.1:1081 -o 'PermitRemoteOpen=localhost:22 198.51.100.5:*' u@h",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "user = \"u\"",
            "remote = [\"1080\", \"127.0.0.1:1081\"]",
            "permit_remote_open = [\"localhost:22\", \"198.51.100.5:*\"]",
        ],
        notes: &[],
    },
    Case {
        line: "autossh -M 20000 -t u@h -R 2222:localhost:22 'while true; do sleep 60; done'",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "user = \"u\"",
            "remote = [\"2222:localhost:22\"]",
        ],
        notes: &[
            "-M 20000: autossh's monitor",
            "-t: tunneld never requests a terminal",
            "remote command `'while true; do sleep 60; done'`: tunneld runs no remote command",
        ],
    },
    Case {
        line: "ssh -4 -C -vv -l backup -p 2200 -L 8080:localhost:80 -N host.example.com",
        keys: &[
            "[tunnels.\"host.example.com\"]",
            "host = \"host.example.com\"",
            "port = 2200",
            "user = \"backup\"",
            "local = [\"8080:localhost:80\"]",
        ],
        notes: &[
            "-4: tunneld has no address family setting",
            "-C: tunneld does not compress",
            "-v: tunneld's logging",
        ],
    },
    Case {
        line: "ssh -o HostName=203.0.113.7 -o User=svc -o Port=2022 -o IdentityFile=/k/id -o CertificateFile=/k/id-cert.pub -o ProxyJump=gw -o 'LocalForward 8080 web:80' -o 'RemoteForward 9090 localhost:9090' -o 'DynamicForward 1080' -o GatewayPorts=yes -o StreamLocalBindMask=0117 -o GlobalKnownHostsFile=/etc/ssh/hosts -N office",
        keys: &[
            "[tunnels.office]",
            "host = \"203.0.113.7\"",
            "port = 2022",
            "user = \"svc\"",
            "identity_file = \"/k/id\"",
            "certificate_file = \"/k/id-cert.pub\"",
            "known_hosts = [\"~/.ssh/known_hosts\", \"/etc/ssh/hosts\"]",
            "proxy_jump = \"gw\"",
            "local = [\"8080:web:80\"]",
            "remote = [\"9090:localhost:9090\"]",
            "dynamic = [\"1080\"]",
            "gateway_ports = true",
            "stream_local_bind_mask = \"0117\"",
        ],
        notes: &[],
    },
    Case {
        line: "ssh -p 2201 -p 2202 -l a b@h -o User=c -o ServerAliveInterval=5 -o ServerAliveInterval=9 -D 1080",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "port = 2201",
            "user = \"a\"",
            "dynamic = [\"1080\"]",
            "server_alive_interval = \"5s\"",
        ],
        notes: &[],
    },
    Case {
        line: "AUTOSSH_GATETIME=0 AUTOSSH_POLL=30 /usr/bin/autossh -M 0 -N -R 2222:localhost:22 u@h",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "user = \"u\"",
            "remote = [\"2222:localhost:22\"]",
        ],
        notes: &[
            "AUTOSSH_GATETIME=0: no starting gate",
            "AUTOSSH_POLL=30: tunneld sends heartbeats",
        ],
    },
    Case {
        line: "ssh -o ServerAliveInterval=0 -o StrictHostKeyChecking=ask -o StrictHostKeyChecking=no -o ControlMaster=auto -o ForwardAgent=yes -o Bogus=1 -A -X -N -D 1080 h",
        keys: &["[tunnels.h]", "host = \"h\"", "dynamic = [\"1080\"]"],
        notes: &[
            "ServerAliveInterval 0: turns ssh's heartbeats off",
            "-o StrictHostKeyChecking=ask: a daemon cannot ask",
            "-o ControlMaster=auto: no connection sharing",
            "-o ForwardAgent=yes: tunneld never forwards the agent",
            "-o Bogus=1: not an ssh option tunneld knows",
            "-A: tunneld never forwards the agent",
            "-X: tunneld never forwards X11",
        ],
    },
    Case {
        line: "ssh -F /home/me/.ssh/other -o 'ProxyCommand=ssh -W %h:%p gw' -N -L 8080 -L 9090:web:80 -i keys/id h",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "identity_file = \"/home/alice/work/keys/id\"",
            "proxy_jump = \"gw\"",
            "local = [\"9090:web:80\"]",
        ],
        notes: &[
            "-F /home/me/.ssh/other: ssh_config files are not read",
            "-L 8080: invalid local forward \"8080\"",
        ],
    },
    Case {
        line: "ssh -o 'ProxyCommand nc -X connect -x proxy.corp:3128 %h %p' -J gw -N -R 2222:localhost:22 h",
        keys: &[
            "[tunnels.h]",
            "host = \"h\"",
            "proxy = \"http://proxy.corp:3128\"",
            "remote = [\"2222:localhost:22\"]",
        ],
        notes: &["-J: a ProxyCommand came first, and ssh uses only the first of the two"],
    },
    Case {
        line: "ssh -o 'ProxyCommand=socat - \"PROXY:proxy.corp:%h:%p,proxyport=3128\"' -N -L 1:h:2 box",
        keys: &[
            "[tunnels.box]",
            "host = \"box\"",
            "proxy_command = \"socat - PROXY:proxy.corp:%h:%p,proxyport=3128\"",
            "local = [\"1:h:2\"]",
        ],
        notes: &[],
    },
    Case {
        line: "ssh -o ConnectTimeout=90 -o ServerAliveInterval=1h -o ServerAliveCountMax=0 -D '*:1080' -- jump.example.com uptime",
        keys: &[
            "[tunnels.\"jump.example.com\"]",
            "host = \"jump.example.com\"",
            "dynamic = [\"*:1080\"]",
            "server_alive_interval = \"1h\"",
            "connect_timeout = \"1m30s\"",
        ],
        notes: &[
            "ServerAliveCountMax 0: tunneld needs at least 1",
            "remote command `uptime`",
        ],
    },
];

#[test]
fn command_lines_map_to_exact_keys_and_notes() {
    for case in COMMAND_LINES {
        // The whole line as one argument, and as the words a shell would pass.
        let one =
            import_words(&[case.line.to_owned()]).unwrap_or_else(|e| panic!("{}: {e}", case.line));
        let words = shlex::split(case.line).unwrap();
        let split = import_words(&words).unwrap();
        assert_eq!(one, split, "{}", case.line);
        assert_eq!(keys(&one), case.keys, "{}\n{one}", case.line);
        let found = notes(&one);
        for want in case.notes {
            assert!(
                found.iter().any(|n| n.contains(want)),
                "{}: no note with {want:?} in\n{one}",
                case.line
            );
        }
        let header = one.lines().next().unwrap();
        assert!(
            header.starts_with("# imported from: "),
            "{}: header\n{one}",
            case.line
        );
        if !case.line.contains(['\'', '~', '[', '*']) {
            // Words that need no quotes are shown as written (a literal `~`, `[` or `*` needs them).
            assert_eq!(header, format!("# imported from: {}", case.line));
        }
        assert_valid(case.line, &one);
    }
}

#[test]
fn every_skipped_flag_has_a_note() {
    // One note per flag or option that is not mapped: nothing is dropped silently.
    let line = "ssh -46AaCfKkMNnqsTtVvXxYy -B eth0 -b 192.0.2.1 -c aes128-ctr -E log -e none -F cfg -I lib.so -m hmac-sha2-256 -O check -P tag -Q cipher -S ctl -W h:1 -w 0:0 -D 1 h";
    let out = import_words(&[line.to_owned()]).unwrap();
    let found = notes(&out);
    for flag in "46AaCfKkMNnqsTtVvXxYy".chars() {
        let origin = format!("-{flag}: ");
        assert!(
            found.iter().any(|n| n.starts_with(&origin)),
            "{flag}\n{out}"
        );
    }
    for opt in [
        "-B", "-b", "-c", "-E", "-e", "-F", "-I", "-m", "-O", "-P", "-Q", "-S", "-W", "-w",
    ] {
        let origin = format!("{opt} ");
        assert!(found.iter().any(|n| n.starts_with(&origin)), "{opt}\n{out}");
    }
    assert_eq!(found.len(), 21 + 14, "{out}");
}

#[test]
fn bad_command_lines_are_refused_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no command line given"),
        (
            &["scp", "-P", "22", "file", "host:"],
            "\"scp\" is not ssh or autossh",
        ),
        (&["autossh -M 0 -N -f"], "no destination"),
        (&["ssh", "-N", "u@h"], "no -L, -R or -D forward"),
        (&["ssh", "-L"], "option -L needs an argument"),
        (&["ssh", "-Z", "-L", "1:a:2", "h"], "unknown option -Z"),
        (
            &["ssh", "-p", "abc", "-D", "1", "h"],
            "-p: bad port \"abc\"",
        ),
        (&["ssh", "-o", "Port=0", "-D", "1", "h"], "bad port \"0\""),
        (
            &["ssh", "-o", "ServerAliveInterval=abc", "-D", "1", "h"],
            "bad time value",
        ),
        (
            &["ssh", "-o", "GatewayPorts=maybe", "-D", "1", "h"],
            "must be yes or no",
        ),
        (&["ssh -L 'x h"], "unclosed quote"),
        (&["ssh", "-D", "1080", "@h"], "empty user name"),
        (&["ssh", "-D", "1080", "ssh://h/path"], "takes no path"),
        (&["ssh", "-D", "1080", "ssh://h:http"], "bad port \"http\""),
    ];
    for (words, want) in cases {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        let err = match cmdline::parse(&words) {
            Ok(i) => panic!("{words:?} was imported: {:?}", i.draft),
            Err(e) => e,
        };
        assert!(err.contains(want), "{words:?}: {err}");
    }
}

#[test]
fn config_lines_split_as_ssh_splits_them() {
    /// A line, and the keyword and arguments it holds.
    type Split<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);
    let ok: &[Split] = &[
        ("Host=foo", Some(("Host", &["foo"]))),
        (
            "  LocalForward  8080 \"web:80\" # a comment",
            Some(("LocalForward", &["8080", "web:80"])),
        ),
        (
            "IdentityFile \"~/My Keys/id\"",
            Some(("IdentityFile", &["~/My Keys/id"])),
        ),
        ("User = bob", Some(("User", &["bob"]))),
        (
            "PermitRemoteOpen a:1 'b:2'",
            Some(("PermitRemoteOpen", &["a:1", "b:2"])),
        ),
        ("IdentityFile /a\\ b", Some(("IdentityFile", &["/a b"]))),
        ("# comment", None),
        ("   ", None),
    ];
    for (line, want) in ok {
        let got = split_line(line).unwrap();
        let want = want.map(|(k, a)| {
            (
                k.to_owned(),
                a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
        });
        assert_eq!(got, want, "{line:?}");
    }
    for (line, want) in [("User", "no argument"), ("User \"bob", "invalid quotes")] {
        let err = split_line(line).unwrap_err();
        assert!(err.contains(want), "{line:?}: {err}");
    }
}

const SSH_CONFIG: &str = "\
# Global options apply to every host.
ServerAliveInterval 20

Host web web.example.com
    HostName 192.0.2.80
    User deploy
    LocalForward 8080 localhost:80
    LocalForward [::1]:8443 localhost:443
    IdentityFile ~/.ssh/web_ed25519
    ForwardAgent yes

Host db
    HostName db.internal
    ProxyJump bastion.example.com

Host nas
    RemoteForward 2222 localhost:22
    RemoteForward 1080
    Port 2200
    IdentityFile %d/.ssh/nas_%h

Match host nas exec \"test -f /tmp/x\"
    User matched
    LocalForward 9999 localhost:9

Host *.corp
    DynamicForward 1081

Host *
    User fallback
    IdentityFile ~/.ssh/id_ed25519
    StrictHostKeyChecking accept-new
    ServerAliveCountMax 5
    ControlMaster auto
";

#[test]
fn ssh_config_blocks_with_forwards_become_tunnels() {
    let config = SshConfig::parse(SSH_CONFIG).unwrap();
    let (found, global) = config.import(&[]).unwrap();
    let aliases: Vec<&str> = found.iter().map(|f| f.draft.alias.as_str()).collect();
    assert_eq!(aliases, ["web", "nas"]);
    let want: &[&[&str]] = &[
        &[
            "[tunnels.web]",
            "host = \"192.0.2.80\"",
            "user = \"deploy\"",
            "identity_file = [\"~/.ssh/web_ed25519\", \"~/.ssh/id_ed25519\"]",
            "strict_host_key_checking = \"accept-new\"",
            "local = [\"8080:localhost:80\", \"[::1]:8443:localhost:443\"]",
            "server_alive_interval = \"20s\"",
            "server_alive_count_max = 5",
        ],
        &[
            "[tunnels.nas]",
            "host = \"nas\"",
            "port = 2200",
            "user = \"fallback\"",
            "identity_file = [\"~/.ssh/nas_nas\", \"~/.ssh/id_ed25519\"]",
            "strict_host_key_checking = \"accept-new\"",
            "remote = [\"2222:localhost:22\", \"1080\"]",
            "server_alive_interval = \"20s\"",
            "server_alive_count_max = 5",
        ],
    ];
    for (f, want) in found.iter().zip(want) {
        let name = table_name(&f.draft.alias);
        let out = f.draft.render(&name, &f.header, Path::new(CWD));
        assert_eq!(&keys(&out), want, "{out}");
        assert!(
            notes(&out)
                .iter()
                .any(|n| n.contains("ControlMaster auto: no connection sharing")),
            "{out}"
        );
        assert_valid(&name, &out);
    }
    let web = found[0]
        .draft
        .render("web", &found[0].header, Path::new(CWD));
    assert!(
        web.contains("# not imported: line 10: ForwardAgent yes: tunneld never forwards the agent"),
        "{web}"
    );
    assert!(
        web.starts_with("# ssh web: Host web web.example.com (line 4), Host * (line 29)\n"),
        "{web}"
    );
    assert_eq!(global.len(), 3, "{global:#?}");
    assert!(
        global[0].starts_with(
            "line 22: Match host nas exec test -f /tmp/x: Match blocks are not evaluated"
        ),
        "{global:#?}"
    );
    assert!(global[0].contains("(User, LocalForward)"), "{global:#?}");
    assert!(
        global[1].starts_with("line 26: Host *.corp: has forwards but names no single host"),
        "{global:#?}"
    );
    assert!(
        global[2].starts_with("Host db: no LocalForward"),
        "{global:#?}"
    );
}

#[test]
fn ssh_config_hosts_named_are_resolved_as_ssh_would() {
    let config = SshConfig::parse(SSH_CONFIG).unwrap();
    let (found, _) = config.import(&["db".into(), "build.corp".into()]).unwrap();
    let db = found[0]
        .draft
        .render("db", &found[0].header, Path::new(CWD));
    assert_eq!(
        keys(&db),
        [
            "[tunnels.db]",
            "host = \"db.internal\"",
            "user = \"fallback\"",
            "identity_file = \"~/.ssh/id_ed25519\"",
            "strict_host_key_checking = \"accept-new\"",
            "proxy_jump = \"bastion.example.com\"",
            "server_alive_interval = \"20s\"",
            "server_alive_count_max = 5",
        ],
        "{db}"
    );
    let corp = found[1]
        .draft
        .render("build.corp", &found[1].header, Path::new(CWD));
    assert!(keys(&corp).contains(&"dynamic = [\"1081\"]"), "{corp}");
    assert_valid("build.corp", &corp);
    let err = config.import(&["nowhere".into()]).unwrap_err();
    assert!(err.contains("no Host block matches \"nowhere\""), "{err}");
}

#[test]
fn ssh_config_errors_name_the_line() {
    let (line, err) = SshConfig::parse("Host a\n  User \"x\n").unwrap_err();
    assert_eq!((line, err.as_str()), (2, "invalid quotes"));
    let config = SshConfig::parse("Host a\n  Port none\n  LocalForward 1 b:2\n").unwrap();
    let err = config.import(&[]).err().unwrap();
    assert!(err.starts_with("line 2: bad port \"none\""), "{err}");
}

#[test]
fn tokens_that_have_no_equivalent_are_noted() {
    let text = "Host t\n  HostName %h.example.com\n  User ops\n  IdentityFile ~/.ssh/%r@%h:%p\n  IdentityFile /keys/%u\n  IdentityFile ${HOME}/k\n  IdentityFile ${XDG}/k\n  CertificateFile ~bob/c\n  LocalForward /tmp/%n.sock /run/%C.sock\n  DynamicForward 1080\n";
    let config = SshConfig::parse(text).unwrap();
    let (found, _) = config.import(&[]).unwrap();
    let out = found[0].draft.render("t", &found[0].header, Path::new(CWD));
    assert_eq!(
        keys(&out),
        [
            "[tunnels.t]",
            "host = \"t.example.com\"",
            "user = \"ops\"",
            "identity_file = [\"~/.ssh/ops@t.example.com:22\", \"~/k\"]",
            "dynamic = [\"1080\"]",
        ],
        "{out}"
    );
    let n = notes(&out);
    assert!(
        n.iter()
            .any(|n| n.starts_with("line 5: IdentityFile /keys/%u: the token %u")),
        "{out}"
    );
    assert!(
        n.iter()
            .any(|n| n.starts_with("line 7: IdentityFile ${XDG}/k: environment variables")),
        "{out}"
    );
    assert!(
        n.iter()
            .any(|n| n.starts_with("line 8: CertificateFile ~bob/c: tunneld expands only")),
        "{out}"
    );
    assert!(
        n.iter()
            .any(|n| n.starts_with("line 9: LocalForward /tmp/%n.sock /run/%C.sock: the token %C")),
        "{out}"
    );
}

#[test]
fn small_helpers() {
    for (secs, want) in [
        (0, "0s"),
        (30, "30s"),
        (90, "1m30s"),
        (3600, "1h"),
        (90061, "1d1h1m1s"),
    ] {
        assert_eq!(duration(secs), want);
        assert_eq!(
            tunneld_config::parse_duration(want).unwrap().as_secs(),
            secs
        );
    }
    for (text, want) in [
        ("30", Some(30)),
        ("30s", Some(30)),
        ("1h30m", Some(5400)),
        ("2W", Some(1_209_600)),
        ("", None),
        ("x", None),
        ("5x", None),
    ] {
        assert_eq!(convtime(text).ok(), want, "{text:?}");
    }
    for (alias, want) in [
        ("web", "web"),
        ("db.example.com", "db.example.com"),
        ("2001:db8::1", "2001-db8--1"),
        ("a b", "a-b"),
        ("::", "tunnel"),
    ] {
        assert_eq!(table_name(alias), want);
    }
    let tricky = "a \"quoted\" \\ path\twith\ncontrols\u{1}";
    let doc = format!("v = {}\n", quote(tricky));
    let parsed: toml::Table = toml::from_str(&doc).unwrap();
    assert_eq!(parsed["v"].as_str(), Some(tricky));
}
