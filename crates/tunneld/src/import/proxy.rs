//! ssh's `ProxyCommand` in tunneld's words: the classic `nc -X connect -x proxy:port %h %p`
//! and its SOCKS form become `proxy = "…"`, `ssh -W %h:%p jump` becomes `proxy_jump`, and
//! any other command is kept as `proxy_command` (which runs it the way ssh does).

/// What a `ProxyCommand` becomes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Translated {
    /// `proxy = "…"`: the command only reached an HTTP or SOCKS5 proxy.
    Proxy(String),
    /// `proxy_jump = "…"`: the command was `ssh -W %h:%p HOST`.
    Jump(String),
    /// `proxy_command = "…"`, `%n` already replaced by the alias.
    Command(String),
    /// Not imported, and why.
    Unsupported(String),
}

/// The arguments as one shell command line: words with spaces or quotes in them quoted.
fn shell_join(args: &[String]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// Translates the `ProxyCommand` words of the host ssh calls `alias`.
pub(crate) fn translate(args: &[String], alias: &str) -> Translated {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(proxy) = netcat_proxy(&words) {
        return Translated::Proxy(proxy);
    }
    match words.as_slice() {
        ["ssh", "-W", "%h:%p", jump]
        | ["ssh", "-q", "-W", "%h:%p", jump]
        | ["ssh", "-W", "%h:%p", "-q", jump]
            if !jump.starts_with('-') =>
        {
            return Translated::Jump((*jump).to_owned());
        }
        _ => {}
    }
    // %n is the alias here, as ssh expands it; the others stay for tunneld to expand.
    let keep = |t| match t {
        'n' => Some(alias.to_owned()),
        'h' | 'p' | 'r' | '%' => Some(format!("%{t}")),
        _ => None,
    };
    match tunneld_config::substitute_tokens(&shell_join(args), keep) {
        Ok(command) => Translated::Command(command),
        Err(Some(t)) => Translated::Unsupported(format!(
            "tunneld expands only %h, %p, %r, %n and %% in proxy_command, not %{t}"
        )),
        Err(None) => Translated::Unsupported(
            "the command ends in a lone '%', which tunneld's proxy_command refuses".to_owned(),
        ),
    }
}

/// `nc [-X connect|5] -x HOST[:PORT] %h %p` (netcat-openbsd) as a proxy URL. Without `-X`
/// nc speaks SOCKS5 and sends the host name to the proxy: `socks5h://`.
fn netcat_proxy(words: &[&str]) -> Option<String> {
    let (first, rest) = words.split_first()?;
    if *first != "nc" && *first != "netcat" {
        return None;
    }
    let mut protocol = "5";
    let mut proxy = None;
    let mut rest = rest.iter();
    let mut tail = Vec::new();
    while let Some(word) = rest.next() {
        match *word {
            "-X" => protocol = rest.next()?,
            "-x" => proxy = Some(*rest.next()?),
            w if w.starts_with('-') => return None,
            w => tail.push(w),
        }
    }
    if tail != ["%h", "%p"] {
        return None;
    }
    let proxy = proxy?;
    let (scheme, default_port) = match protocol {
        "connect" => ("http", 3128),
        "5" => ("socks5h", 1080),
        _ => return None,
    };
    let with_port = match proxy.rsplit_once(':') {
        Some((_, port)) if !proxy.ends_with(']') && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            proxy.to_owned()
        }
        Some(_) if !proxy.starts_with('[') && proxy.matches(':').count() > 1 => {
            format!("[{proxy}]:{default_port}")
        }
        _ => format!("{proxy}:{default_port}"),
    };
    Some(format!("{scheme}://{with_port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn netcat_forms_become_proxy_urls() {
        for (line, proxy) in [
            (
                "nc -X connect -x proxy.corp:3128 %h %p",
                "http://proxy.corp:3128",
            ),
            (
                "nc -X connect -x proxy.corp %h %p",
                "http://proxy.corp:3128",
            ),
            ("nc -x 10.0.0.1:1080 %h %p", "socks5h://10.0.0.1:1080"),
            ("nc -X 5 -x socks %h %p", "socks5h://socks:1080"),
            (
                "nc -X 5 -x [2001:db8::1]:9050 %h %p",
                "socks5h://[2001:db8::1]:9050",
            ),
        ] {
            assert_eq!(
                translate(&words(line), "a"),
                Translated::Proxy(proxy.into()),
                "{line}"
            );
        }
        // SOCKS4, a proxy user (nc would prompt for a password), other words: a command.
        for line in [
            "nc -X 4 -x p:1080 %h %p",
            "nc -X connect -x p:3128 -P bob %h %p",
            "nc -X connect -x p:3128 %h 22",
        ] {
            assert!(
                matches!(translate(&words(line), "a"), Translated::Command(_)),
                "{line}"
            );
        }
    }

    #[test]
    fn other_commands_are_kept_with_their_quoting() {
        assert_eq!(
            translate(&words("ssh -W %h:%p gw"), "a"),
            Translated::Jump("gw".into())
        );
        let args = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "exec socat - PROXY:p:%h:%p,proxyport=3128 # %n's".to_owned(),
        ];
        assert_eq!(
            translate(&args, "box"),
            Translated::Command(
                "sh -c 'exec socat - PROXY:p:%h:%p,proxyport=3128 # box'\\''s'".into()
            )
        );
        assert!(matches!(
            translate(&words("corkscrew p 3128 %h %p %d"), "a"),
            Translated::Unsupported(why) if why.contains("not %d")
        ));
    }
}
