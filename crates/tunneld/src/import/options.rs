//! ssh options (`-o Keyword=value` and ssh_config lines) mapped onto a [`Draft`].
//!
//! Every keyword ssh knows is either mapped to the tunneld key that means the same, or
//! left out with a note saying why: [`apply`] never drops an option silently.

use super::draft::{Draft, Sourced, first};

/// Options with no tunneld equivalent, and why each is not needed or not possible.
/// Keywords are lower-case, as ssh compares them.
const NOT_IMPORTED: &[(&[&str], &str)] = &[
    (
        &["addressfamily"],
        "tunneld has no address family setting; it connects to the addresses the host name resolves to",
    ),
    (
        &["batchmode", "numberofpasswordprompts"],
        "tunneld never prompts",
    ),
    (
        &["bindaddress", "bindinterface"],
        "tunneld does not choose the local source address",
    ),
    (
        &[
            "ciphers",
            "macs",
            "kexalgorithms",
            "hostkeyalgorithms",
            "pubkeyacceptedalgorithms",
            "pubkeyacceptedkeytypes",
            "casignaturealgorithms",
            "hostbasedacceptedalgorithms",
            "hostbasedkeytypes",
            "requiredrsasize",
        ],
        "tunneld negotiates its own algorithm list",
    ),
    (&["compression"], "tunneld does not compress"),
    (
        &["connectionattempts"],
        "tunneld retries forever, with backoff (backoff, stable_after)",
    ),
    (
        &["controlmaster", "controlpath", "controlpersist"],
        "no connection sharing: each tunnel is one SSH connection of its own",
    ),
    (
        &["forwardagent", "identityagent"],
        "tunneld never forwards the agent; it uses the ssh-agent at $SSH_AUTH_SOCK of its own environment",
    ),
    (
        &[
            "forwardx11",
            "forwardx11timeout",
            "forwardx11trusted",
            "xauthlocation",
        ],
        "tunneld never forwards X11",
    ),
    (
        &[
            "gssapiauthentication",
            "gssapidelegatecredentials",
            "gssapikeyexchange",
            "gssapiclientidentity",
            "gssapiserveridentity",
            "gssapirenewalforcesrekey",
            "gssapitrustdns",
            "hostbasedauthentication",
            "enablesshkeysign",
            "kbdinteractiveauthentication",
            "kbdinteractivedevices",
            "challengeresponseauthentication",
            "passwordauthentication",
            "preferredauthentications",
            "pubkeyauthentication",
        ],
        "tunneld authenticates with keys only (identity_file, certificates, ssh-agent)",
    ),
    (
        &["identitiesonly"],
        "tunneld also offers the keys of an ssh-agent at $SSH_AUTH_SOCK; leave SSH_AUTH_SOCK unset for the service to offer identity_file alone",
    ),
    (
        &["addkeystoagent", "usekeychain"],
        "tunneld adds no keys to an agent",
    ),
    (
        &["pkcs11provider", "securitykeyprovider"],
        "hardware tokens are used through an ssh-agent, not directly",
    ),
    (
        &[
            "checkhostip",
            "hashknownhosts",
            "verifyhostkeydns",
            "visualhostkey",
            "fingerprinthash",
            "knownhostscommand",
            "nohostauthenticationforlocalhost",
        ],
        "tunneld checks host keys against known_hosts only",
    ),
    (
        &["hostkeyalias"],
        "tunneld looks the host key up under the host name ([host]:port off port 22); write the known_hosts line under that name",
    ),
    (
        &["revokedhostkeys"],
        "put @revoked lines in a known_hosts file instead",
    ),
    (&["ipqos"], "tunneld does not set IP type of service"),
    (
        &["tcpkeepalive"],
        "tunneld detects dead peers with its heartbeats (server_alive_interval)",
    ),
    (
        &[
            "canonicaldomains",
            "canonicalizefallbacklocal",
            "canonicalizehostname",
            "canonicalizemaxdots",
            "canonicalizepermittedcnames",
        ],
        "tunneld does not canonicalize host names; write the full name in host",
    ),
    (
        &["escapechar"],
        "no interactive session, no escape character",
    ),
    (
        &["localcommand", "permitlocalcommand", "proxyusefdpass"],
        "tunneld runs no local commands",
    ),
    (
        &[
            "remotecommand",
            "requesttty",
            "sessiontype",
            "stdinnull",
            "sendenv",
            "setenv",
        ],
        "tunneld opens no session and runs no remote command",
    ),
    (
        &["forkafterauthentication"],
        "tunneld runs in the foreground under systemd; it does not fork",
    ),
    (
        &["loglevel", "logverbose", "syslogfacility"],
        "tunneld's logging is set by [daemon] log_level (or RUST_LOG)",
    ),
    (
        &["rekeylimit"],
        "the server drives rekeying (its RekeyLimit); tunneld rekeys by itself only past 128 GiB",
    ),
    (
        &["tunnel", "tunneldevice"],
        "tun/tap device forwarding is not supported",
    ),
    (
        &[
            "obscurekeystroketiming",
            "channeltimeout",
            "enableescapecommandline",
        ],
        "applies to interactive sessions only",
    ),
    (
        &[
            "tag",
            "ignoreunknown",
            "protocol",
            "useprivilegedport",
            "useroaming",
        ],
        "has no effect on a tunnel",
    ),
];

/// The arguments of a one-value option.
fn one<'a>(keyword: &str, args: &'a [String]) -> Result<&'a str, String> {
    match args {
        [v] => Ok(v),
        [] => Err(format!("{keyword} needs a value")),
        _ => Err(format!("{keyword} takes one value, not {}", args.join(" "))),
    }
}

/// ssh's yes/no (also true/false), case-insensitive.
fn flag(keyword: &str, args: &[String]) -> Result<bool, String> {
    let v = one(keyword, args)?;
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{keyword} must be yes or no, not \"{v}\"")),
    }
}

/// A server port as ssh takes it: 1-65535, digits only.
pub(crate) fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("bad port \"{s}\"; use 1-65535")),
    }
}

/// ssh's time format (`convtime`): `30`, `30s`, `5m`, `1h30m`, `2d`, `1w`; plain numbers are
/// seconds.
pub(crate) fn convtime(s: &str) -> Result<u64, String> {
    let bad = || format!("bad time value \"{s}\" (write seconds, or e.g. 30s, 5m, 1h30m)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (mult, used) = match rest.chars().next() {
            None => (1, 0),
            Some('s' | 'S') => (1, 1),
            Some('m' | 'M') => (60, 1),
            Some('h' | 'H') => (3_600, 1),
            Some('d' | 'D') => (86_400, 1),
            Some('w' | 'W') => (604_800, 1),
            Some(_) => return Err(bad()),
        };
        rest = &rest[used..];
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A forward option's arguments joined into `-L`/`-R`/`-D` syntax: ssh_config writes
/// `LocalForward 8080 web:80` for `-L 8080:web:80`.
fn forward_spec(keyword: &str, args: &[String]) -> Result<String, String> {
    match args {
        [one] => Ok(one.clone()),
        [listen, target] => Ok(format!("{listen}:{target}")),
        _ => Err(format!("{keyword} takes [bind:]port and host:hostport")),
    }
}

fn sourced(values: &[String], origin: &str) -> Vec<Sourced> {
    values
        .iter()
        .map(|v| Sourced {
            value: v.clone(),
            origin: origin.to_owned(),
        })
        .collect()
}

/// Applies one ssh option, as ssh would: the first value of each option wins, forwards
/// and identity files add up. `origin` names the option in notes (`-o ForwardAgent=yes`,
/// `line 7: ForwardAgent yes`).
///
/// # Errors
/// A value ssh itself would refuse (`Port abc`, `ServerAliveInterval x`).
pub(crate) fn apply(
    d: &mut Draft,
    keyword: &str,
    args: &[String],
    origin: &str,
) -> Result<(), String> {
    let k = keyword.to_ascii_lowercase();
    match k.as_str() {
        "hostname" => first(&mut d.host_name, one(keyword, args)?.to_owned()),
        "port" => first(&mut d.port, port(one(keyword, args)?)?),
        "user" => first(&mut d.user, one(keyword, args)?.to_owned()),
        "identityfile" => d.identity_files.extend(sourced(args, origin)),
        "certificatefile" => d.certificate_files.extend(sourced(args, origin)),
        "userknownhostsfile" => first(&mut d.user_known_hosts, sourced(args, origin)),
        "globalknownhostsfile" => first(&mut d.global_known_hosts, sourced(args, origin)),
        "stricthostkeychecking" => strict(d, keyword, args, origin)?,
        "updatehostkeys" => update_host_keys(d, keyword, args, origin)?,
        "serveraliveinterval" => {
            first(&mut d.server_alive_interval, convtime(one(keyword, args)?)?);
        }
        "serveralivecountmax" => {
            let v = one(keyword, args)?;
            let n = v
                .parse::<u32>()
                .map_err(|_| format!("{keyword} must be a number, not \"{v}\""))?;
            first(&mut d.server_alive_count_max, n);
        }
        "connecttimeout" => match one(keyword, args)? {
            "none" => d.skip(
                origin,
                "tunneld always has a connect timeout (connect_timeout, default 15s)",
            ),
            v => first(&mut d.connect_timeout, convtime(v)?),
        },
        "proxyjump" => d.set_jump(one(keyword, args)?.to_owned(), origin),
        "proxycommand" => d.set_proxy_command(args, origin),
        "localforward" => d.local.push(Sourced {
            value: forward_spec(keyword, args)?,
            origin: origin.to_owned(),
        }),
        "remoteforward" => d.remote.push(Sourced {
            value: forward_spec(keyword, args)?,
            origin: origin.to_owned(),
        }),
        "dynamicforward" => d.dynamic.push(Sourced {
            value: one(keyword, args)?.to_owned(),
            origin: origin.to_owned(),
        }),
        "gatewayports" => first(&mut d.gateway_ports, flag(keyword, args)?),
        "permitremoteopen" => first(&mut d.permit_remote_open, args.to_vec()),
        "streamlocalbindunlink" => first(&mut d.stream_local_bind_unlink, flag(keyword, args)?),
        "streamlocalbindmask" => {
            let v = one(keyword, args)?;
            match u32::from_str_radix(v, 8) {
                Ok(m) if m <= 0o777 => first(&mut d.stream_local_bind_mask, v.to_owned()),
                _ => return Err(format!("{keyword} must be an octal mask, not \"{v}\"")),
            }
        }
        "exitonforwardfailure" => d.skip(
            origin,
            "not needed: a refused forward is retried on its own while the session and the other forwards carry on (the tunnel shows degraded)",
        ),
        "clearallforwardings" => d.skip(
            origin,
            "ignored: the forwards given are imported (with it, ssh would open none)",
        ),
        "host" | "match" => d.skip(origin, "only meaningful in an ssh_config file"),
        "include" => d.skip(
            origin,
            "not followed; import that file on its own with tunneld import --ssh-config FILE",
        ),
        _ => {
            let why = NOT_IMPORTED
                .iter()
                .find(|(keys, _)| keys.contains(&k.as_str()))
                .map_or("not an ssh option tunneld knows", |(_, why)| *why);
            d.skip(origin, why);
        }
    }
    Ok(())
}

/// `UpdateHostKeys`: `yes` or `no`; `ask` needs a person, so it imports as `no` (what
/// ssh does with `ask` when it cannot ask), noted.
fn update_host_keys(
    d: &mut Draft,
    keyword: &str,
    args: &[String],
    origin: &str,
) -> Result<(), String> {
    let v = one(keyword, args)?;
    let value = match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => "yes",
        "no" | "false" => "no",
        "ask" => {
            if d.update_host_keys.is_none() {
                d.skip(
                    origin,
                    "a daemon cannot ask; imported as update_host_keys = \"no\" (\"yes\" learns the keys the server proves without asking)",
                );
            }
            "no"
        }
        _ => return Err(format!("{keyword} must be yes, no or ask, not \"{v}\"")),
    };
    first(&mut d.update_host_keys, value);
    Ok(())
}

/// `StrictHostKeyChecking`, in OpenSSH's words; `ask` cannot be asked by a daemon.
fn strict(d: &mut Draft, keyword: &str, args: &[String], origin: &str) -> Result<(), String> {
    let v = one(keyword, args)?;
    let value = match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => "yes",
        "accept-new" => "accept-new",
        "no" | "off" | "false" => "no",
        "ask" => {
            if d.strict_host_key_checking.is_none() {
                d.skip(
                    origin,
                    "a daemon cannot ask; tunneld's default \"yes\" refuses unknown keys, as ssh without a terminal does",
                );
                // Later values must not win over this one, as in ssh.
                d.strict_host_key_checking = Some("ask");
            }
            return Ok(());
        }
        _ => {
            return Err(format!(
                "{keyword} must be yes, accept-new, no or ask, not \"{v}\""
            ));
        }
    };
    first(&mut d.strict_host_key_checking, value);
    Ok(())
}
