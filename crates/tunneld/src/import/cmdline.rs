//! ssh and autossh command lines, read as ssh reads its arguments (`ssh.c`): options,
//! clustered or not, before and after the destination; the first non-option after the
//! destination starts the remote command.

use super::draft::{Draft, Sourced, first};
use super::options;
use super::ssh_config::split_line;

/// ssh's options that take an argument (OpenSSH 9).
const WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOoPpQRSWw";
/// ssh's options that take none.
const FLAGS: &str = "46AaCfGgKkMNnqsTtVvXxYy";

const EXAMPLE: &str = "tunneld import -- autossh -M 0 -N -R 2222:localhost:22 user@host";

/// A command line turned into a draft, with the line itself for the table's header.
pub(crate) struct Imported {
    pub draft: Draft,
    pub header: Vec<String>,
}

/// Reads an ssh or autossh command line: separate words, or the whole line as one word
/// (split as a POSIX shell would, backslash-newline continuations included).
///
/// # Errors
/// Input that is not an ssh or autossh command line with a destination and a forward,
/// or an option ssh itself would refuse.
pub(crate) fn parse(args: &[String]) -> Result<Imported, String> {
    let words = words(args)?;
    let line = shell_words(&words);
    let mut draft = Draft::default();
    let mut rest = words.as_slice();
    while let Some((name, value)) = rest.first().and_then(|w| assignment(w)) {
        env_note(&mut draft, name, value);
        rest = &rest[1..];
    }
    let Some((program, rest)) = rest.split_first() else {
        return Err(format!(
            "no command line given; for example: {EXAMPLE}, or tunneld import --ssh-config ~/.ssh/config"
        ));
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    if name != "ssh" && name != "autossh" {
        return Err(format!(
            "\"{program}\" is not ssh or autossh; give an ssh or autossh command line, e.g. {EXAMPLE}"
        ));
    }
    Reader {
        draft,
        autossh: name == "autossh",
        has_destination: false,
    }
    .read(rest)
    .map(|draft| Imported {
        draft,
        header: vec![format!("imported from: {line}")],
    })
}

/// The words of the command line.
fn words(args: &[String]) -> Result<Vec<String>, String> {
    match args {
        [one] if one.contains(char::is_whitespace) => {
            let joined = one.replace("\\\r\n", " ").replace("\\\n", " ");
            shlex::split(&joined).ok_or_else(|| {
                "the command line has an unclosed quote or ends in a backslash".to_owned()
            })
        }
        _ => Ok(args.to_vec()),
    }
}

/// Words as a shell would take them back: quoted only where a shell would read them
/// otherwise (`-o ServerAliveInterval=30` stays as it is, unlike with `shlex::try_join`).
fn shell_words(words: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(safe) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `NAME=value` before the program, as a shell reads it.
fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let starts = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (starts && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some((name, value))
}

struct Reader {
    draft: Draft,
    autossh: bool,
    /// The destination has been read.
    has_destination: bool,
}

impl Reader {
    fn read(mut self, words: &[String]) -> Result<Draft, String> {
        let mut i = 0;
        let mut options_ended = false;
        while i < words.len() {
            let w = &words[i];
            i += 1;
            if !options_ended && w == "--" {
                options_ended = true;
            } else if !options_ended && w.len() > 1 && w.starts_with('-') {
                self.cluster(w, words, &mut i)?;
            } else if !self.has_destination {
                self.destination(w)?;
            } else {
                let command = shell_words(&words[i - 1..]);
                self.draft.skip(
                    &format!("remote command `{command}`"),
                    "tunneld runs no remote command; it keeps the forwards open",
                );
                break;
            }
        }
        if !self.has_destination {
            return Err(format!(
                "no destination: the command line names no [user@]host; for example: {EXAMPLE}"
            ));
        }
        if !self.draft.has_forwards() {
            return Err(
                "the command line has no -L, -R or -D forward: there is nothing for tunneld to keep open"
                    .to_owned(),
            );
        }
        Ok(self.draft)
    }

    /// One word of options, `-f`, `-fNT`, `-L8080:web:80` or `-L` with the next word.
    fn cluster(&mut self, word: &str, words: &[String], next: &mut usize) -> Result<(), String> {
        let letters: Vec<char> = word[1..].chars().collect();
        for (j, &c) in letters.iter().enumerate() {
            if WITH_ARGUMENT.contains(c) || (self.autossh && c == 'M') {
                let attached: String = letters[j + 1..].iter().collect();
                let arg = if attached.is_empty() {
                    let arg = words
                        .get(*next)
                        .ok_or_else(|| format!("option -{c} needs an argument"))?;
                    *next += 1;
                    arg.clone()
                } else {
                    attached
                };
                return self.with_argument(c, &arg);
            }
            if !FLAGS.contains(c) {
                return Err(format!("unknown option -{c}: ssh would refuse it"));
            }
            self.flag(c);
        }
        Ok(())
    }

    fn flag(&mut self, c: char) {
        let why = match c {
            'g' => {
                // ssh sets this outright, whatever -o or ssh_config say.
                self.draft.gateway_ports = Some(true);
                return;
            }
            '4' | '6' => {
                "tunneld has no address family setting; it connects to the addresses the host name resolves to"
            }
            'A' => "tunneld never forwards the agent",
            'a' => "implied: tunneld never forwards the agent",
            'C' => "tunneld does not compress",
            'f' => "tunneld runs in the foreground under systemd; it does not fork",
            'G' => "prints ssh's configuration and exits; it opens no tunnel",
            'K' | 'k' => "tunneld authenticates with keys only (no GSSAPI)",
            'M' => "no connection sharing: each tunnel is one SSH connection of its own",
            'N' => "implied: tunneld never runs a remote command",
            'n' => "implied: tunneld reads no standard input",
            'q' | 'v' | 'y' => "tunneld's logging is set by [daemon] log_level (or RUST_LOG)",
            's' => "tunneld requests no subsystem",
            'T' => "implied: tunneld never requests a terminal",
            't' => "tunneld never requests a terminal",
            'V' => "prints ssh's version and exits",
            _ => "tunneld never forwards X11",
        };
        self.draft.skip(&format!("-{c}"), why);
    }

    fn with_argument(&mut self, c: char, arg: &str) -> Result<(), String> {
        if c == 'o' {
            return self.option(arg);
        }
        let origin = format!("-{c} {arg}");
        let d = &mut self.draft;
        let sourced = || Sourced {
            value: arg.to_owned(),
            origin: origin.clone(),
        };
        match c {
            'L' => d.local.push(sourced()),
            'R' => d.remote.push(sourced()),
            'D' => d.dynamic.push(sourced()),
            'i' => d.identity_files.push(sourced()),
            'J' => d.set_jump(arg.to_owned(), "-J"),
            'l' => first(&mut d.user, arg.to_owned()),
            'p' => first(
                &mut d.port,
                options::port(arg).map_err(|e| format!("-p: {e}"))?,
            ),
            _ => d.skip(&origin, argument_not_imported(c)),
        }
        Ok(())
    }

    /// `-o Keyword=value`, `-o "Keyword value"`, `-oKeyword=value`.
    fn option(&mut self, text: &str) -> Result<(), String> {
        let origin = format!("-o {text}");
        let (keyword, args) = split_line(text)
            .map_err(|e| format!("{origin}: {e}"))?
            .ok_or_else(|| format!("-o \"{text}\": no option"))?;
        options::apply(&mut self.draft, &keyword, &args, &origin)
            .map_err(|e| format!("{origin}: {e}"))
    }

    /// `[user@]host` or `ssh://[user@]host[:port]`.
    fn destination(&mut self, dest: &str) -> Result<(), String> {
        let (user, host, port) = match dest.strip_prefix("ssh://") {
            Some(uri) => parse_uri(uri)?,
            None => {
                let (user, host) = match dest.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, dest),
                };
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                (user, host, None)
            }
        };
        if user == Some("") {
            return Err(format!("destination \"{dest}\" has an empty user name"));
        }
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!("destination \"{dest}\" is not [user@]host"));
        }
        let d = &mut self.draft;
        if let Some(user) = user {
            first(&mut d.user, user.to_owned());
        }
        if let Some(port) = port {
            let port = options::port(port).map_err(|e| format!("destination \"{dest}\": {e}"))?;
            first(&mut d.port, port);
        }
        d.alias = host.to_owned();
        self.has_destination = true;
        Ok(())
    }
}

/// Why an option with an argument is not imported (those that are never reach here).
fn argument_not_imported(c: char) -> &'static str {
    match c {
        'M' => {
            "autossh's monitor is not needed: tunneld sends keepalive@openssh.com heartbeats (server_alive_interval, server_alive_count_max)"
        }
        'F' => {
            "ssh_config files are not read for a command line; for that file's settings for this host: tunneld import --ssh-config FILE HOST"
        }
        'B' | 'b' => "tunneld does not choose the local source address",
        'c' | 'm' => "tunneld negotiates its own algorithm list",
        'E' => "tunneld logs to the journal or stderr",
        'e' => "no interactive session, no escape character",
        'I' => "hardware tokens are used through an ssh-agent, not directly",
        'O' | 'S' => "no connection sharing: each tunnel is one SSH connection of its own",
        'P' => "tags (Match tagged) are not evaluated",
        'Q' => "queries ssh's algorithms and exits; it opens no tunnel",
        'W' => "stdio forwarding carries ssh's own standard input; tunneld forwards ports",
        _ => "tun/tap device forwarding is not supported",
    }
}

/// The part of `ssh://[user@]host[:port]` after the scheme.
fn parse_uri(uri: &str) -> Result<(Option<&str>, &str, Option<&str>), String> {
    let uri = uri.strip_suffix('/').unwrap_or(uri);
    if uri.contains('/') {
        return Err(format!("ssh://{uri}: an ssh:// destination takes no path"));
    }
    let (user, rest) = match uri.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, uri),
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(after) => {
            let (host, tail) = after
                .split_once(']')
                .ok_or_else(|| format!("ssh://{uri}: '[' without ']'"))?;
            match tail {
                "" => (host, None),
                t => (
                    host,
                    Some(
                        t.strip_prefix(':')
                            .ok_or_else(|| format!("ssh://{uri}: ']' must be followed by :port"))?,
                    ),
                ),
            }
        }
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    Ok((user, host, port))
}

/// Notes for `NAME=value` before the program: autossh reads its settings from there.
fn env_note(d: &mut Draft, name: &str, value: &str) {
    let why = match name {
        "AUTOSSH_GATETIME" => {
            "no starting gate in tunneld: a server that is down at boot is waited for, forever"
        }
        "AUTOSSH_POLL" | "AUTOSSH_FIRST_POLL" | "AUTOSSH_PORT" => {
            "tunneld sends heartbeats every server_alive_interval and cuts a dead path after server_alive_interval x server_alive_count_max"
        }
        "AUTOSSH_MAXSTART" => "tunneld never gives up",
        "AUTOSSH_MAXLIFETIME" => "tunneld keeps a healthy session as long as it lives",
        "AUTOSSH_LOGFILE" | "AUTOSSH_LOGLEVEL" | "AUTOSSH_DEBUG" => {
            "tunneld logs to the journal or stderr; [daemon] log_level (or RUST_LOG) sets the level"
        }
        "AUTOSSH_PATH" => "tunneld speaks SSH itself and runs no ssh binary",
        "AUTOSSH_PIDFILE" => "systemd tracks the daemon",
        "SSH_AUTH_SOCK" => {
            "tunneld uses the ssh-agent at $SSH_AUTH_SOCK of its own environment; set it for the service (systemctl edit tunneld)"
        }
        _ => "environment variables of the command are not imported",
    };
    d.skip(&format!("{name}={value}"), why);
}
