//! The module graph's cycles: strongly connected components, a shortest cycle through
//! each, and a description naming one reference per edge.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

/// An edge of the module graph with the first reference that makes it.
pub(super) type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The strongly connected components of two or more modules (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}

/// A shortest cycle through the first module of `component`, as a list of modules that
/// starts and ends with it.
fn shortest_cycle(graph: &Graph, component: &[String]) -> Vec<String> {
    let start = &component[0];
    let inside: BTreeSet<&String> = component.iter().collect();
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            if w == start {
                let mut path = vec![start.clone()];
                let mut at = v;
                while at != start {
                    path.push(at.clone());
                    at = came_from[at];
                }
                path.push(start.clone());
                path.reverse();
                return path;
            }
            if inside.contains(w) && !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    unreachable!("a strongly connected component has a cycle through each member")
}

/// Each cycle of the crate's module graph, with an example reference for each edge that
/// takes part in it.
pub(super) fn describe_cycles(krate: &str, graph: &Graph) -> Vec<String> {
    cycles(graph)
        .iter()
        .map(|component| {
            let mut text = format!("{krate}: {}", shortest_cycle(graph, component).join(" -> "));
            for from in component {
                for (to, example) in &graph[from] {
                    if component.contains(to) {
                        let _ = write!(text, "\n    {from} -> {to}: {example}");
                    }
                }
            }
            text
        })
        .collect()
}

/// A graph of the given edges, each with a made-up reference.
fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry((*a).to_owned())
            .or_default()
            .insert((*b).to_owned(), format!("{a}.rs:1"));
    }
    g
}

#[test]
fn the_cycle_finder_finds_cycles_and_nothing_else() {
    let acyclic = graph_of(&[("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")]);
    assert!(cycles(&acyclic).is_empty());
    assert!(describe_cycles("k", &acyclic).is_empty());

    let g = graph_of(&[
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("d", "a"),
        ("e", "f"),
        ("f", "e"),
        ("f", "g"),
    ]);
    assert_eq!(cycles(&g), [vec!["a", "b", "c"], vec!["e", "f"]]);
    assert_eq!(
        shortest_cycle(&g, &["a".into(), "b".into(), "c".into()]),
        ["a", "b", "c", "a"]
    );
    let described = describe_cycles("k", &g);
    assert_eq!(
        described[1],
        "k: e -> f -> e\n    e -> f: e.rs:1\n    f -> e: f.rs:1"
    );
    assert!(described[0].starts_with("k: a -> b -> c -> a\n"));
    assert_eq!(described[0].lines().count(), 4, "{}", described[0]);
}
