//! What the layout checks read from one file: its `mod` declarations, its references to
//! `crate::` and `super::`, and its `use` declarations, leaving out `#[cfg(test)]` items.

use super::tokens::{Kind, Token, item_end, matching, tokenize};

/// A `mod name;` declaration: the module's name, its `#[path]` if any, and whether it is
/// compiled for tests only.
#[derive(Debug, PartialEq)]
pub(super) struct ModDecl {
    pub(super) name: String,
    pub(super) path: Option<String>,
    pub(super) test: bool,
}

/// A path that names something in the crate from a file: `crate::first` or, `supers` levels
/// up, `super::first`.
#[derive(Debug, PartialEq)]
pub(super) struct Reference {
    pub(super) supers: usize,
    pub(super) first: String,
    pub(super) line: usize,
}

/// What the layout checks need from one file.
#[derive(Debug, Default)]
pub(super) struct Scanned {
    /// `#![cfg(test)]`: the whole file is test code.
    pub(super) test_only: bool,
    pub(super) mods: Vec<ModDecl>,
    pub(super) references: Vec<Reference>,
    /// `use` declarations: each name brought in and the first segment of its path.
    pub(super) uses: Vec<(String, String)>,
}

/// Scans a file's tokens, leaving out `#[cfg(test)]` items (their `mod x;` is recorded).
pub(super) fn scan(text: &str) -> Scanned {
    let tokens = tokenize(text);
    let mut out = Scanned::default();
    let mut attrs: Vec<&[Token]> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        // Attributes: outer ones apply to what follows; `#![cfg(test)]` to the whole file.
        if t.is_punct('#') {
            let inner = tokens.get(i + 1).is_some_and(|n| n.is_punct('!'));
            let open = if inner { i + 2 } else { i + 1 };
            if tokens.get(open).is_some_and(|n| n.is_punct('[')) {
                let close = matching(&tokens, open);
                let body = tokens.get(open + 1..close).unwrap_or_default();
                if inner {
                    out.test_only |= is_cfg_test(body);
                } else {
                    attrs.push(body);
                }
                i = close + 1;
                continue;
            }
        }
        let test = attrs.iter().any(|a| is_cfg_test(a));
        let path = attrs.iter().find_map(|a| path_attr(a));
        attrs.clear();
        if let Some((name, end)) = mod_decl(&tokens, i) {
            out.mods.push(ModDecl { name, path, test });
            i = end + 1;
            continue;
        }
        if test {
            i = item_end(&tokens, i) + 1;
            continue;
        }
        if t.is_ident("use") {
            // Recorded for the crate root's re-exports; its references are scanned below.
            let end = item_end(&tokens, i);
            let tree = tokens.get(i + 1..end).unwrap_or_default();
            use_tree(tree, None, None, &mut out.uses);
        }
        if let Some((supers, after)) = crate_path(&tokens, i) {
            for (first, line) in first_segments(&tokens, after) {
                out.references.push(Reference {
                    supers,
                    first,
                    line,
                });
            }
            i = after;
            continue;
        }
        i += 1;
    }
    out
}

fn is_cfg_test(attr: &[Token]) -> bool {
    let texts: Vec<&str> = attr.iter().map(|t| t.text.as_str()).collect();
    texts == ["cfg", "(", "test", ")"]
}

/// `path = "..."`
fn path_attr(attr: &[Token]) -> Option<String> {
    match attr {
        [p, eq, s] if p.is_ident("path") && eq.is_punct('=') && s.kind == Kind::Str => {
            Some(s.text.clone())
        }
        _ => None,
    }
}

/// `[pub[(...)]] mod name;` starting at `i`: the name and the index of the `;`.
fn mod_decl(tokens: &[Token], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    if tokens[j].is_ident("pub") {
        j += 1;
        if tokens.get(j)?.is_punct('(') {
            j = matching(tokens, j) + 1;
        }
    }
    let (kw, name, semi) = (tokens.get(j)?, tokens.get(j + 1)?, tokens.get(j + 2)?);
    (kw.is_ident("mod") && name.kind == Kind::Ident && semi.is_punct(';'))
        .then(|| (name.text.clone(), j + 2))
}

/// At `crate::` or a chain of `super::` (not part of a longer path, not `pub(crate)`):
/// how many `super`s (0 for `crate`) and the index after the last `::`.
fn crate_path(tokens: &[Token], i: usize) -> Option<(usize, usize)> {
    if i > 0 && tokens[i - 1].kind == Kind::PathSep {
        return None;
    }
    let sep = |j: usize| tokens.get(j).is_some_and(|t| t.kind == Kind::PathSep);
    if tokens[i].is_ident("crate") && sep(i + 1) {
        return Some((0, i + 2));
    }
    let mut j = i;
    let mut supers = 0;
    while tokens.get(j).is_some_and(|t| t.is_ident("super")) && sep(j + 1) {
        supers += 1;
        j += 2;
    }
    (supers > 0).then_some((supers, j))
}

/// The first segment after `crate::` at `at`: one name, or each of a `{...}` group's.
fn first_segments(tokens: &[Token], at: usize) -> Vec<(String, usize)> {
    let Some(t) = tokens.get(at) else {
        return Vec::new();
    };
    if t.kind == Kind::Ident {
        return vec![(t.text.clone(), t.line)];
    }
    if !t.is_punct('{') {
        return Vec::new();
    }
    let close = matching(tokens, at);
    let mut names = Vec::new();
    let mut j = at + 1;
    let mut element_start = true;
    while j < close {
        let t = &tokens[j];
        if element_start && t.kind == Kind::Ident && t.text != "self" {
            names.push((t.text.clone(), t.line));
        }
        element_start = false;
        match t.kind {
            Kind::Punct(',') => element_start = true,
            Kind::Punct('(' | '[' | '{') => j = matching(tokens, j),
            _ => {}
        }
        j += 1;
    }
    names
}

/// Splits tokens at each `sep` outside brackets.
fn split_top(tokens: &[Token], sep: char) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut from = 0;
    let mut j = 0;
    while j < tokens.len() {
        match tokens[j].kind {
            Kind::Punct(c) if c == sep => {
                parts.push(&tokens[from..j]);
                from = j + 1;
            }
            Kind::Punct('(' | '[' | '{') => j = matching(tokens, j),
            _ => {}
        }
        j += 1;
    }
    parts.push(&tokens[from.min(tokens.len())..]);
    parts
}

/// Walks the tree of a `use` declaration, recording each name it brings in with the first
/// segment of its path: `use a::b::{self, c, d as e}` gives b, c and e from a. `first` and
/// `parent` are the first and last segments of the path leading to a nested group.
fn use_tree(
    tree: &[Token],
    first: Option<&str>,
    parent: Option<&str>,
    uses: &mut Vec<(String, String)>,
) {
    let mut j = 0;
    let mut first = first.map(str::to_owned);
    let mut last = parent.map(str::to_owned);
    // Leading `crate::` and `self::` only say where the path starts.
    while let [a, sep, ..] = &tree[j..] {
        if (a.is_ident("crate") || a.is_ident("self")) && sep.kind == Kind::PathSep {
            j += 2;
        } else {
            break;
        }
    }
    while j < tree.len() {
        let t = &tree[j];
        match &t.kind {
            Kind::Ident if t.text == "as" => {
                if let (Some(alias), Some(f)) = (tree.get(j + 1), &first)
                    && alias.text != "_"
                {
                    uses.push((alias.text.clone(), f.clone()));
                }
                return;
            }
            // `{self}` brings in the module the group hangs from.
            Kind::Ident if t.text == "self" => {}
            Kind::Ident => {
                if first.is_none() {
                    first = Some(t.text.clone());
                }
                last = Some(t.text.clone());
            }
            Kind::Punct('{') => {
                let close = matching(tree, j);
                for part in split_top(tree.get(j + 1..close).unwrap_or_default(), ',') {
                    use_tree(part, first.as_deref(), last.as_deref(), uses);
                }
                return;
            }
            _ => {}
        }
        j += 1;
    }
    if let (Some(name), Some(f)) = (last, first)
        && name != f
    {
        uses.push((name, f));
    }
}

#[test]
fn comments_strings_and_test_code_are_not_references() {
    let text = r##"//! The raw layer; [`resolve`](crate::resolve) turns it into the model.
/// See [`crate::b`] and [crate::b2].
// crate::c
/* crate::d /* nested crate::e */ still crate::e2 */
const S: &str = "crate::f \" crate::f2";
const R: &str = r#"crate::g " crate::g2"#;
const C: char = '"'; use crate::h;
#[cfg(test)]
mod tests { use crate::i; }
#[cfg(test)]
#[allow(unused)]
use crate::{j, jj};
use crate::{k, l::m, self, n::{o, p as q}};
pub(crate) fn x<'a>(y: &'a str) -> u8 { crate::r::f(y); super::s::t(); 0 }
#[cfg(test)]
pub(crate) mod testkeys;
#[path = "other_tests.rs"]
#[cfg(test)]
mod tests2;
pub mod u;
"##;
    let s = scan(text);
    let refs: Vec<(usize, &str, usize)> = s
        .references
        .iter()
        .map(|r| (r.supers, r.first.as_str(), r.line))
        .collect();
    assert_eq!(
        refs,
        [
            (0, "h", 7),
            (0, "k", 13),
            (0, "l", 13),
            (0, "n", 13),
            (0, "r", 14),
            (1, "s", 14)
        ]
    );
    let mods: Vec<(&str, Option<&str>, bool)> = s
        .mods
        .iter()
        .map(|m| (m.name.as_str(), m.path.as_deref(), m.test))
        .collect();
    assert_eq!(
        mods,
        [
            ("testkeys", None, true),
            ("tests2", Some("other_tests.rs"), true),
            ("u", None, false)
        ]
    );
    assert!(!s.test_only);
    assert!(scan("//! Tests.\n#![cfg(test)]\nuse crate::a;").test_only);
}

#[test]
fn root_reexports_are_followed_to_their_module() {
    let s = scan(
        "pub use session::{Config, Session as Handle, connect};\n\
         pub use error::Error;\nuse env::Env;\npub use a::b::{self, c};\n",
    );
    let uses: Vec<(&str, &str)> = s
        .uses
        .iter()
        .map(|(n, f)| (n.as_str(), f.as_str()))
        .collect();
    assert_eq!(
        uses,
        [
            ("Config", "session"),
            ("Handle", "session"),
            ("connect", "session"),
            ("Error", "error"),
            ("Env", "env"),
            ("b", "a"),
            ("c", "a")
        ]
    );
}

#[test]
fn a_test_only_item_ends_where_the_item_ends() {
    let text = r###"struct S {
    #[cfg(test)]
    a: crate::x::A,
    b: crate::y::B,
}
#[cfg(test)]
fn f<A, B>(a: A, b: B) -> (A, B) where A: Copy, B: Copy { crate::z::g(); (a, b) }
fn h() { let q = '\''; let r = br#"crate::q"#; crate::w::g(q, r); }
#[cfg(test)]
const T: crate::v::T = crate::v::T { a: 1 };
fn k() { match 1 { #[cfg(test)] 0 => crate::u::f(), _ => crate::t::f() } }
"###;
    let firsts: Vec<String> = scan(text).references.into_iter().map(|r| r.first).collect();
    assert_eq!(firsts, ["y", "w", "t"]);
}
