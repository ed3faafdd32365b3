//! ssh_config files: `Host` blocks, resolved for one host as `ssh HOST` resolves them.
//!
//! Why not a parser crate: ssh2-config (0.9, the maintained one) keeps the directives it
//! does not model (LocalForward, DynamicForward, StrictHostKeyChecking, ...) in a map by
//! name, so a block's second `LocalForward` replaces its first, and an option repeated in
//! a block keeps its last value where ssh takes the first; it does not know `Match`, so
//! the lines under a `Match` are added to the `Host` block before it; and it expands `~`
//! for the user running the import rather than leaving it to the daemon's user. Each of
//! these would change what is imported, so this module reads the small part of the format
//! that matters here: keyword lines with ssh's quoting, and `Host` and `Match` sections.

use super::draft::Draft;
use super::options;

/// A parsed file: its sections in file order.
#[derive(Debug)]
pub(crate) struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, PartialEq)]
enum Section {
    /// Lines before the first `Host` or `Match`: they apply to every host.
    Global,
    /// `Host` patterns, as written.
    Host(Vec<String>),
    /// `Match` criteria, as written; never evaluated.
    Match(String),
}

#[derive(Debug)]
struct Block {
    /// Line of the `Host` or `Match` keyword (0 for the global section).
    line: usize,
    section: Section,
    lines: Vec<Line>,
}

/// One `Keyword args...` line.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    keyword: String,
    args: Vec<String>,
}

impl Line {
    fn origin(&self) -> String {
        format!(
            "line {}: {} {}",
            self.number,
            self.keyword,
            self.args.join(" ")
        )
    }

    fn is_forward(&self) -> bool {
        ["localforward", "remoteforward", "dynamicforward"]
            .contains(&self.keyword.to_ascii_lowercase().as_str())
    }
}

/// One imported tunnel: the draft and the comment lines that say where it came from.
#[derive(Debug)]
pub(crate) struct Found {
    pub draft: Draft,
    pub header: Vec<String>,
}

/// Splits a configuration line as ssh does (`readconf.c`): a keyword, then `=` or
/// whitespace, then arguments with double or single quotes and backslash escapes, up to
/// a `#` that starts an argument. `None` for blank and comment lines.
///
/// # Errors
/// Unbalanced quotes, or a keyword without an argument.
pub(crate) fn split_line(text: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let t = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{c}');
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let end = t
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(t.len());
    let keyword = &t[..end];
    let rest = t[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    if keyword.is_empty() {
        return Err(format!("\"{t}\" has no keyword"));
    }
    let args = argv_split(rest)?;
    if args.is_empty() {
        return Err(format!("no argument after keyword \"{keyword}\""));
    }
    Ok(Some((keyword.to_owned(), args)))
}

/// OpenSSH's `argv_split` with comments: whitespace-separated words; `"` and `'` quote;
/// `\` escapes a quote, a backslash, or (outside quotes) a space; `#` starts a comment.
fn argv_split(s: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            }
            chars.next();
            match (c, quote) {
                ('\\', q) => match chars.peek() {
                    Some(&n) if n == '\'' || n == '"' || n == '\\' || (q.is_none() && n == ' ') => {
                        arg.push(n);
                        chars.next();
                    }
                    _ => arg.push('\\'),
                },
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, _) => arg.push(c),
            }
        }
        if quote.is_some() {
            return Err("invalid quotes".to_owned());
        }
        args.push(arg);
    }
}

/// ssh's `match_pattern`: `*` any run, `?` any one character; compared without case, as
/// ssh lower-cases the host name it matches.
fn wildcard(pattern: &str, text: &str) -> bool {
    tunneld_config::wildcard::matches_str(&pattern.to_lowercase(), &text.to_lowercase())
}

/// Whether a `Host` line applies to `host`: some pattern matches and no negated one does.
fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if wildcard(neg, host) => return false,
            Some(_) => {}
            None => hit |= wildcard(p, host),
        }
    }
    hit
}

/// The names in a `Host` line that are one host each (no wildcard, not negated).
fn concrete(patterns: &[String]) -> Vec<&str> {
    patterns
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with('!') && !p.contains(['*', '?']))
        .collect()
}

impl SshConfig {
    /// Parses the text of an ssh_config file.
    ///
    /// # Errors
    /// The line number and what is wrong with it (ssh refuses such a file too).
    pub fn parse(text: &str) -> Result<SshConfig, (usize, String)> {
        let mut blocks = vec![Block {
            line: 0,
            section: Section::Global,
            lines: Vec::new(),
        }];
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let Some((keyword, args)) = split_line(raw).map_err(|e| (number, e))? else {
                continue;
            };
            let section = match keyword.to_ascii_lowercase().as_str() {
                "host" => Section::Host(args),
                "match" => Section::Match(args.join(" ")),
                _ => {
                    let block = blocks.last_mut().expect("the global block is always there");
                    block.lines.push(Line {
                        number,
                        keyword,
                        args,
                    });
                    continue;
                }
            };
            blocks.push(Block {
                line: number,
                section,
                lines: Vec::new(),
            });
        }
        Ok(SshConfig { blocks })
    }

    /// The tunnels to import: the hosts named, or else one per `Host` block that has a
    /// forward of its own. Also returns notes about what was not imported and why.
    ///
    /// # Errors
    /// A named host that no `Host` block matches, or a value ssh would refuse.
    pub fn import(&self, hosts: &[String]) -> Result<(Vec<Found>, Vec<String>), String> {
        let mut notes = self.match_notes();
        let aliases = if hosts.is_empty() {
            self.hosts_with_forwards(&mut notes)
        } else {
            for h in hosts {
                if !self.named_by_some_block(h) {
                    return Err(format!("no Host block matches \"{h}\""));
                }
            }
            hosts.to_vec()
        };
        let found = aliases
            .iter()
            .map(|alias| self.resolve(alias))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((found, notes))
    }

    /// True when a `Host` line other than a bare `Host *` applies to `host`.
    fn named_by_some_block(&self, host: &str) -> bool {
        self.blocks.iter().any(|b| match &b.section {
            Section::Host(p) => p.iter().any(|x| x != "*") && host_matches(p, host),
            _ => false,
        })
    }

    /// The first concrete name of each `Host` block with a forward of its own.
    fn hosts_with_forwards(&self, notes: &mut Vec<String>) -> Vec<String> {
        let mut chosen: Vec<String> = Vec::new();
        let mut without = Vec::new();
        for b in &self.blocks {
            let Section::Host(patterns) = &b.section else {
                continue;
            };
            let names = concrete(patterns);
            let has_forward = b.lines.iter().any(Line::is_forward);
            match names.first() {
                Some(name) if !has_forward => without.push(name.to_string()),
                Some(name) if !chosen.iter().any(|c| c == name) => chosen.push(name.to_string()),
                Some(_) => {}
                None if has_forward => notes.push(format!(
                    "line {}: Host {}: has forwards but names no single host; import it for one with tunneld import --ssh-config FILE HOST",
                    b.line,
                    patterns.join(" ")
                )),
                None => {}
            }
        }
        if !without.is_empty() {
            notes.push(format!(
                "Host {}: no LocalForward, RemoteForward or DynamicForward of their own; name them to import them anyway",
                without.join(", ")
            ));
        }
        chosen
    }

    /// One note per `Match` block: its criteria are not evaluated.
    fn match_notes(&self) -> Vec<String> {
        self.blocks
            .iter()
            .filter_map(|b| match &b.section {
                Section::Match(criteria) => {
                    let keywords: Vec<&str> = b.lines.iter().map(|l| l.keyword.as_str()).collect();
                    Some(format!(
                        "line {}: Match {criteria}: Match blocks are not evaluated; their options are not imported ({})",
                        b.line,
                        if keywords.is_empty() { "none".to_owned() } else { keywords.join(", ") }
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// What `ssh alias` would use: every applying block's lines in file order, first
    /// value wins.
    fn resolve(&self, alias: &str) -> Result<Found, String> {
        let mut draft = Draft::new(alias);
        let mut used = Vec::new();
        for b in &self.blocks {
            let applies = match &b.section {
                Section::Global => true,
                Section::Host(p) => host_matches(p, alias),
                Section::Match(_) => false,
            };
            if !applies {
                continue;
            }
            if let Section::Host(p) = &b.section {
                used.push(format!("Host {} (line {})", p.join(" "), b.line));
            }
            for line in &b.lines {
                options::apply(&mut draft, &line.keyword, &line.args, &line.origin())
                    .map_err(|e| format!("line {}: {e}", line.number))?;
            }
        }
        let header = vec![format!("ssh {alias}: {}", used.join(", "))];
        Ok(Found { draft, header })
    }
}
