//! A tunnel being imported: the settings ssh would use, gathered with ssh's precedence
//! (the first value of an option wins; forwards and identity files add up), then printed
//! as one `[tunnels.NAME]` table with a comment line for everything left out.
//!
//! Paths and forwards are kept as written until [`Draft::render`], because ssh expands
//! `%h`, `%p`, `%r` ... only once every option is known.

use std::fmt::Write as _;
use std::path::Path;

/// A value and where it came from (`-L 8080:web:80`, `line 12: LocalForward ...`), so that a
/// value that cannot be imported is named in its comment as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sourced {
    pub value: String,
    pub origin: String,
}

/// Everything about one tunnel that ssh would use, before it is written out.
#[derive(Debug, Default, Clone)]
pub(crate) struct Draft {
    /// The host as the user names it (`ssh ALIAS`, `Host ALIAS`): the table name and `%n`.
    pub alias: String,
    /// `HostName`: the server actually connected to; the alias when absent.
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Vec<Sourced>,
    pub certificate_files: Vec<Sourced>,
    /// `UserKnownHostsFile` (one option, several files).
    pub user_known_hosts: Option<Vec<Sourced>>,
    /// `GlobalKnownHostsFile` (one option, several files).
    pub global_known_hosts: Option<Vec<Sourced>>,
    /// Already in tunneld's words: `yes`, `accept-new` or `no`; or `ask`, which is noted
    /// and not written.
    pub strict_host_key_checking: Option<&'static str>,
    /// `yes` or `no` (`ask` imports as `no`).
    pub update_host_keys: Option<&'static str>,
    /// Seconds; 0 is ssh's "no heartbeats", which tunneld does not have.
    pub server_alive_interval: Option<u64>,
    pub server_alive_count_max: Option<u32>,
    /// Seconds; 0 is ssh's "system default".
    pub connect_timeout: Option<u64>,
    pub gateway_ports: Option<bool>,
    pub local: Vec<Sourced>,
    pub remote: Vec<Sourced>,
    pub dynamic: Vec<Sourced>,
    pub proxy_jump: Option<String>,
    /// `ProxyCommand`: its words as parsed, and where it came from. ssh takes whichever
    /// of it and `ProxyJump` comes first.
    pub proxy_command: Option<(Vec<String>, String)>,
    pub permit_remote_open: Option<Vec<String>>,
    pub stream_local_bind_unlink: Option<bool>,
    /// Octal, as written (`"0177"`).
    pub stream_local_bind_mask: Option<String>,
    /// Comment lines: each option that was not imported, and why.
    pub notes: Vec<String>,
}

/// tunneld's own defaults for the two heartbeat keys, named in comments.
const TUNNELD_ALIVE_DEFAULTS: &str = "every 10s, 3 unanswered end the session";

/// Sets `slot` unless an earlier value already did: ssh's "first obtained value wins".
pub(crate) fn first<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

impl Draft {
    /// A draft for the host the user calls `alias`.
    pub fn new(alias: &str) -> Draft {
        Draft {
            alias: alias.to_owned(),
            ..Draft::default()
        }
    }

    /// Records an option that is not imported (once: `-vvv` needs one line).
    pub fn skip(&mut self, origin: &str, why: &str) {
        let note = format!("{origin}: {why}");
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// `-J` or `ProxyJump`, unless a `ProxyCommand` came first.
    pub fn set_jump(&mut self, jump: String, origin: &str) {
        if self.proxy_command.is_some() || self.proxy_jump.is_some() {
            if self.proxy_jump.is_none() {
                self.skip(
                    origin,
                    "a ProxyCommand came first, and ssh uses only the first of the two",
                );
            }
            return;
        }
        self.proxy_jump = Some(jump);
    }

    /// `ProxyCommand`, unless a `ProxyJump` came first; `none` is ssh's "no command".
    pub fn set_proxy_command(&mut self, args: &[String], origin: &str) {
        if self.proxy_jump.is_some() || self.proxy_command.is_some() {
            if self.proxy_command.is_none() {
                self.skip(
                    origin,
                    "a ProxyJump came first, and ssh uses only the first of the two",
                );
            }
            return;
        }
        self.proxy_command = Some((args.to_vec(), origin.to_owned()));
    }

    /// True when some forward was given (valid or not).
    pub fn has_forwards(&self) -> bool {
        !(self.local.is_empty() && self.remote.is_empty() && self.dynamic.is_empty())
    }

    /// The server to connect to: `HostName` (with `%h` and `%%` expanded), else the alias.
    fn host(&self) -> String {
        match &self.host_name {
            Some(h) => h.replace("%h", &self.alias).replace("%%", "%"),
            None => self.alias.clone(),
        }
    }

    /// The `[tunnels.NAME]` table, with `# ` comment lines for every option left out.
    /// `header` lines (without `# `) come first, to say where the table came from.
    /// Relative paths are made absolute against `cwd`, where ssh would have opened them.
    pub fn render(&self, name: &str, header: &[String], cwd: &Path) -> String {
        let mut notes = Vec::new();
        let mut keys: Vec<(&str, String)> = Vec::new();
        let tokens = Tokens {
            alias: &self.alias,
            host: self.host(),
            port: self.port.unwrap_or(22),
            user: self.user.as_deref(),
            cwd,
        };

        let host = tokens.host.clone();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        keys.push(("host", quote(&host)));
        if let Some(port) = self.port {
            keys.push(("port", port.to_string()));
        }
        if let Some(user) = &self.user {
            keys.push(("user", quote(user)));
        }
        let identities = tokens.paths(&self.identity_files, &mut notes);
        if !identities.is_empty() {
            keys.push(("identity_file", one_or_list(&identities)));
        }
        let certificates = tokens.paths(&self.certificate_files, &mut notes);
        if !certificates.is_empty() {
            keys.push(("certificate_file", one_or_list(&certificates)));
        }
        if let Some(files) = self.known_hosts(&tokens, &mut notes) {
            keys.push(("known_hosts", one_or_list(&files)));
        }
        // "ask" stays in the draft only so that later values lose to it, as in ssh.
        if let Some(strict) = self.strict_host_key_checking.filter(|s| *s != "ask") {
            keys.push(("strict_host_key_checking", quote(strict)));
        }
        if let Some(update) = self.update_host_keys {
            keys.push(("update_host_keys", quote(update)));
        }
        if let Some(jump) = &self.proxy_jump {
            keys.push(("proxy_jump", quote(jump)));
        }
        if let Some((words, origin)) = &self.proxy_command
            && words != &["none"]
        {
            use super::proxy::Translated;
            match super::proxy::translate(words, &self.alias) {
                Translated::Proxy(url) => keys.push(("proxy", quote(&url))),
                Translated::Jump(jump) => keys.push(("proxy_jump", quote(&jump))),
                Translated::Command(c) => keys.push(("proxy_command", quote(&c))),
                Translated::Unsupported(why) => {
                    notes.push(format!("{origin}: {why}"));
                }
            }
        }
        for (key, list) in [
            ("local", &self.local),
            ("remote", &self.remote),
            ("dynamic", &self.dynamic),
        ] {
            let specs = tokens.forwards(key, list, &mut notes);
            if !specs.is_empty() {
                keys.push((key, list_of(&specs)));
            }
        }
        if let Some(g) = self.gateway_ports {
            keys.push(("gateway_ports", g.to_string()));
        }
        if let Some(permit) = &self.permit_remote_open {
            keys.push(("permit_remote_open", list_of(permit)));
        }
        if let Some(unlink) = self.stream_local_bind_unlink {
            keys.push(("stream_local_bind_unlink", unlink.to_string()));
        }
        if let Some(mask) = &self.stream_local_bind_mask {
            keys.push(("stream_local_bind_mask", quote(mask)));
        }
        self.timers(&mut keys, &mut notes);

        let mut out = String::new();
        for line in header {
            let _ = writeln!(out, "# {}", one_line(line));
        }
        let _ = writeln!(out, "[tunnels.{}]", table_key(name));
        for (key, value) in keys {
            let _ = writeln!(out, "{key} = {value}");
        }
        for note in self.notes.iter().chain(&notes) {
            let _ = writeln!(out, "# not imported: {}", one_line(note));
        }
        out
    }

    /// `known_hosts`: ssh reads its user files and its global files, so setting either
    /// one means naming both to tunneld (whose own default is the same pair).
    fn known_hosts(&self, tokens: &Tokens<'_>, notes: &mut Vec<String>) -> Option<Vec<String>> {
        if self.user_known_hosts.is_none() && self.global_known_hosts.is_none() {
            return None;
        }
        let default = |path: &str| {
            vec![Sourced {
                value: path.to_owned(),
                origin: "default".to_owned(),
            }]
        };
        let user = self
            .user_known_hosts
            .clone()
            .unwrap_or_else(|| default("~/.ssh/known_hosts"));
        let global = self
            .global_known_hosts
            .clone()
            .unwrap_or_else(|| default("/etc/ssh/ssh_known_hosts"));
        let files: Vec<Sourced> = user
            .into_iter()
            .chain(global)
            .filter(|f| f.value != "none")
            .collect();
        Some(tokens.paths(&files, notes))
    }

    /// Heartbeats and the connect timeout; ssh's 0 values have no tunneld equivalent.
    fn timers(&self, keys: &mut Vec<(&str, String)>, notes: &mut Vec<String>) {
        match self.server_alive_interval {
            Some(0) => notes.push(format!(
                "ServerAliveInterval 0: turns ssh's heartbeats off; tunneld always sends them ({TUNNELD_ALIVE_DEFAULTS} unless set)"
            )),
            Some(secs) => keys.push(("server_alive_interval", quote(&duration(secs)))),
            None => {}
        }
        match self.server_alive_count_max {
            Some(0) => notes.push(
                "ServerAliveCountMax 0: tunneld needs at least 1 unanswered heartbeat to end a session (default 3)".to_owned(),
            ),
            Some(n) => keys.push(("server_alive_count_max", n.to_string())),
            None => {}
        }
        match self.connect_timeout {
            Some(0) => notes.push(
                "ConnectTimeout 0: ssh's \"no timeout but the system's\"; tunneld always has one (connect_timeout, default 15s)".to_owned(),
            ),
            Some(secs) => keys.push(("connect_timeout", quote(&duration(secs)))),
            None => {}
        }
    }
}

/// What ssh's `%` tokens stand for in this tunnel, for paths and Unix socket forwards.
struct Tokens<'a> {
    alias: &'a str,
    host: String,
    port: u16,
    user: Option<&'a str>,
    cwd: &'a Path,
}

impl Tokens<'_> {
    /// Expands ssh's `%` tokens, `${HOME}` and a leading `%d`, and leaves `~/` for tunneld
    /// to expand for the user it runs as (ssh expands it for the user running ssh).
    ///
    /// # Errors
    /// Why the value has no exact equivalent in tunneld's configuration.
    fn expand(&self, s: &str) -> Result<String, String> {
        let s = match s.strip_prefix("${HOME}") {
            Some(rest) => format!("~{rest}"),
            None => s.to_owned(),
        };
        if s.contains("${") {
            return Err(
                "environment variables are not expanded by tunneld; write the value".into(),
            );
        }
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') if out.is_empty() => out.push('~'),
                Some('h') => out.push_str(&self.host),
                Some('n') => out.push_str(self.alias),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => match self.user {
                    Some(user) => out.push_str(user),
                    None => return Err("%r needs a user, and none is set; write the value".into()),
                },
                Some(t) => {
                    return Err(format!(
                        "the token %{t} has no equivalent in tunneld's configuration; write the value"
                    ));
                }
                None => return Err("a '%' at the end is not a token".into()),
            }
        }
        if out.starts_with('~') && !(out == "~" || out.starts_with("~/")) {
            return Err("tunneld expands only \"~/\"; write the full path".into());
        }
        Ok(out)
    }

    /// Expanded paths; relative ones made absolute as ssh would open them.
    fn paths(&self, list: &[Sourced], notes: &mut Vec<String>) -> Vec<String> {
        let mut out = Vec::new();
        for item in list {
            match self.expand(&item.value) {
                Ok(p) if p.starts_with('/') || p.starts_with('~') => out.push(p),
                Ok(p) => out.push(self.cwd.join(p).display().to_string()),
                Err(why) => notes.push(format!("{}: {why}", item.origin)),
            }
        }
        out
    }

    /// Forward specifications that tunneld accepts; the others become notes with the reason.
    fn forwards(&self, kind: &str, list: &[Sourced], notes: &mut Vec<String>) -> Vec<String> {
        let mut out = Vec::new();
        for item in list {
            let spec = if item.value.contains('%') {
                match self.expand(&item.value) {
                    Ok(s) => s,
                    Err(why) => {
                        notes.push(format!("{}: {why}", item.origin));
                        continue;
                    }
                }
            } else {
                item.value.clone()
            };
            let checked = match kind {
                "local" => tunneld_config::forward::parse_local(&spec, false).map(|_| ()),
                "remote" => tunneld_config::forward::parse_remote(&spec).map(|_| ()),
                _ => tunneld_config::forward::parse_dynamic(&spec, false).map(|_| ()),
            };
            match checked {
                Ok(()) => out.push(spec),
                Err(why) => notes.push(format!("{}: {why}", item.origin)),
            }
        }
        out
    }
}

/// Seconds as a tunneld duration: `"30s"`, `"1m30s"`, `"2h"`.
pub(crate) fn duration(secs: u64) -> String {
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list_of(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn one_or_list(items: &[String]) -> String {
    match items {
        [one] => quote(one),
        _ => list_of(items),
    }
}

/// Text for a comment line: a newline in user input would end the comment early.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A table name tunneld accepts (`[A-Za-z0-9_.-]+`) from a host alias.
pub(crate) fn table_name(alias: &str) -> String {
    let name: String = alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "tunnel".to_owned()
    } else {
        name.to_owned()
    }
}

/// A tunnel name as a TOML key: quoted when it has a '.', which would otherwise nest tables.
pub(crate) fn table_key(name: &str) -> String {
    if name.contains('.') {
        quote(name)
    } else {
        name.to_owned()
    }
}

/// True for a name tunneld accepts as a table key.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
