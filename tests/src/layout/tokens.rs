//! Rust source as tokens: identifiers, `::`, punctuation and string literals, without
//! comments; and where an item or a bracket ends.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Ident,
    /// A string literal's contents (raw or escaped as written).
    Str,
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) text: String,
    pub(super) line: usize,
}

impl Token {
    pub(super) fn is_ident(&self, name: &str) -> bool {
        self.kind == Kind::Ident && self.text == name
    }

    pub(super) fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The tokens of Rust source that matter for module references: identifiers, `::`,
/// punctuation and string literals, each with its line. Comments (doc comments included)
/// and character literals are dropped; numbers and lifetimes come out as harmless pieces.
pub(super) fn tokenize(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Counts the newlines in c[from..to] into `line`.
    let lines_in = |from: usize, to: usize| c[from..to].iter().filter(|&&x| x == '\n').count();
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let start = i;
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += lines_in(start, i);
        } else if let Some((prefix, hashes)) = raw_string_start(&c, i) {
            // r"...", r#"..."#, br"...", cr#"..."#
            let start = i;
            let open = i + prefix + hashes + 1;
            let mut j = open;
            let content_end = loop {
                if j >= c.len() {
                    break c.len();
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    break j;
                }
                j += 1;
            };
            tokens.push(Token {
                kind: Kind::Str,
                text: c[open..content_end].iter().collect(),
                line,
            });
            i = (content_end + 1 + hashes).min(c.len());
            line += lines_in(start, i);
        } else if ch == '"' {
            let start = i;
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let content_end = j.min(c.len());
            tokens.push(Token {
                kind: Kind::Str,
                text: c[start + 1..content_end].iter().collect(),
                line,
            });
            i = (content_end + 1).min(c.len());
            line += lines_in(start, i);
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), else a lifetime or label.
            if next == Some('\\') {
                // Past the escaped character, which may itself be a quote.
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if is_ident_char(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let mut word: String = c[start..i].iter().collect();
            // A raw identifier (r#type) is the identifier itself.
            if word == "r"
                && c.get(i) == Some(&'#')
                && c.get(i + 1).is_some_and(|&x| is_ident_char(x))
            {
                let s = i + 1;
                i = s;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                word = c[s..i].iter().collect();
            }
            tokens.push(Token {
                kind: Kind::Ident,
                text: word,
                line,
            });
        } else if ch == ':' && next == Some(':') {
            tokens.push(Token {
                kind: Kind::PathSep,
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                kind: Kind::Punct(ch),
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// When a raw string literal starts at `i` (`r"`, `r#"`, `br"`, `cr#"`, ...): the length of
/// its prefix (`r`, `br`) and its number of `#`s.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && is_ident_char(c[i - 1]) {
        return None;
    }
    let prefix = match (c[i], c.get(i + 1)) {
        ('r', _) => 1,
        ('b' | 'c', Some('r')) => 2,
        _ => return None,
    };
    let mut j = i + prefix;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((prefix, j - i - prefix))
}

/// The index of the token that closes the bracket opened at `open`.
pub(super) fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// The last token of the item, statement, field or match arm that starts at `start`: its
/// `;` or `,`, the `}` closing its body, or the token before the bracket that encloses it.
pub(super) fn item_end(tokens: &[Token], start: usize) -> usize {
    let keyword = tokens[start..]
        .iter()
        .find(|t| {
            t.kind == Kind::Ident
                && !matches!(t.text.as_str(), "pub" | "crate" | "super" | "self" | "in")
        })
        .map_or("", |t| t.text.as_str());
    // Items whose `{ }` may sit inside them, before their `;`.
    let semicolon_item = matches!(keyword, "use" | "const" | "static" | "type" | "let");
    // Items and statements may hold a `,` outside brackets (`fn f<A, B>()`); fields, match
    // arms and expressions end at one.
    let comma_ends = !matches!(
        keyword,
        "use"
            | "const"
            | "static"
            | "type"
            | "let"
            | "fn"
            | "struct"
            | "enum"
            | "union"
            | "impl"
            | "trait"
            | "mod"
            | "macro_rules"
            | "extern"
            | "unsafe"
            | "async"
    );
    let mut j = start;
    while j < tokens.len() {
        match tokens[j].kind {
            Kind::Punct(';') => return j,
            Kind::Punct(',') if comma_ends => return j,
            Kind::Punct('{') if !semicolon_item => return matching(tokens, j),
            Kind::Punct('(' | '[' | '{') => j = matching(tokens, j),
            Kind::Punct(')' | ']' | '}') => return j.saturating_sub(1).max(start),
            _ => {}
        }
        j += 1;
    }
    tokens.len().saturating_sub(1)
}
