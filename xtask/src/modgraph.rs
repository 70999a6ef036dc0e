//! The module graph of the portwatch crate and of its binary, read from
//! their `use` paths, and the layering rules they must keep: no cycles
//! between top-level modules nor between sibling modules (the binary's
//! included: `cli::tui::app` and `cli::tui::draw` are siblings), `sys`
//! depending only on plain data, and the binary never reaching into `sys`.
//! `cargo xtask modgraph` prints it; a test checks it on every
//! `cargo xtask test`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use anyhow::{Context as _, Result};

/// Module path (`sys::bpf`; `cli::tui::app` in the binary) -> the modules
/// it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads every `.rs` file under `src` (the crate root `lib.rs`, the binary
/// under `cli/`).
pub fn read(src: &Path) -> Result<Graph> {
    let mut files = Vec::new();
    collect(src, src, &mut files)?;
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    // `crate::Engine` names engine through the root's `pub use`.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for (_, text) in files.iter().filter(|(m, _)| m.is_empty()) {
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            let mut paths = Vec::new();
            expand(rest, &[], &mut paths);
            for p in paths {
                if let (Some(name), Some(module)) = (p.last(), resolve(&modules, &p)) {
                    reexports.insert(name.clone(), module);
                }
            }
        }
    }
    let mut graph = Graph::new();
    for (module, text) in &files {
        let deps = graph.entry(module.clone()).or_default();
        for path in referenced_paths(module, text) {
            let target = resolve(&modules, &path)
                .filter(|t| !t.is_empty())
                .or_else(|| reexports.get(path.first()?).cloned());
            if let Some(target) = target
                && &target != module
            {
                deps.insert(target);
            }
        }
    }
    Ok(graph)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root)?.with_extension("");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts
            .last()
            .is_some_and(|p| p == "mod" || p == "main" || p == "lib")
        {
            parts.pop();
        }
        let text = fs::read_to_string(&path)?;
        out.push((parts.join("::"), text));
    }
    Ok(())
}

/// The crate-absolute module paths that `text` names: `crate::a::b`,
/// `portwatch::a::b` (from the binary), `super::x`, including each item of
/// a `use crate::{a, b::{c, d}}` group. Comments are skipped.
fn referenced_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    // In the binary (under cli/), `crate::` is the binary's root.
    let crate_root = if here.first().is_some_and(|m| m == "cli") {
        vec!["cli".to_string()]
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", crate_root),
        ("portwatch::", Vec::new()),
        ("super::", here[..here.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            // `foo_crate::` or `self.crate::` are not this prefix.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            expand(rest, &base, &mut out);
        }
    }
    out
}

/// Appends the paths at the start of `rest` (after a `prefix::`).
fn expand(rest: &str, base: &[String], out: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        for item in split_group(inner) {
            expand(item, base, out);
        }
        return;
    }
    let mut path = base.to_vec();
    let mut s = rest;
    loop {
        let ident: String = s
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        path.push(ident.clone());
        s = &s[ident.len()..];
        match s.strip_prefix("::") {
            Some(next) if next.trim_start().starts_with('{') => {
                for item in split_group(&next.trim_start()[1..]) {
                    expand(item, &path, out);
                }
                return;
            }
            Some(next) => s = next,
            None => break,
        }
    }
    if path.len() > base.len() {
        out.push(path);
    }
}

/// The top-level items of a `{a, b::{c, d}, e}` group (after its `{`).
fn split_group(inner: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&inner[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// The longest prefix of `path` that is a module.
fn resolve(modules: &BTreeSet<String>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The graph between top-level modules (the crate root, which declares
/// and re-exports them all, left out).
pub fn top_level(graph: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    let mut out = Graph::new();
    for (m, deps) in graph.iter().filter(|(m, _)| !m.is_empty()) {
        let entry = out.entry(top(m)).or_default();
        for d in deps {
            if top(d) != top(m) {
                entry.insert(top(d));
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one (as the list of its modules).
pub fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(graph, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

/// For each directory module, the graph between its child modules (edges
/// to and from the parent's `mod.rs`, which re-exports them, left out).
pub fn sibling_graphs(graph: &Graph) -> BTreeMap<String, Graph> {
    let parent = |m: &str| m.rsplit_once("::").map(|(p, _)| p.to_string());
    let mut out: BTreeMap<String, Graph> = BTreeMap::new();
    for (m, deps) in graph {
        let Some(p) = parent(m) else { continue };
        let siblings = out.entry(p.clone()).or_default();
        let entry = siblings.entry(m.clone()).or_default();
        for d in deps {
            if parent(d).as_deref() == Some(p.as_str()) {
                entry.insert(d.clone());
            }
        }
    }
    out
}

/// Every rule the layout must keep; an empty list when it does.
pub fn violations(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let top = top_level(graph);
    if let Some(c) = find_cycle(&top) {
        out.push(format!("a cycle between modules: {}", c.join(" -> ")));
    }
    for (dir, g) in sibling_graphs(graph) {
        if let Some(c) = find_cycle(&g) {
            out.push(format!("a cycle inside {dir}: {}", c.join(" -> ")));
        }
    }
    // `sys` is the OS boundary: it may use plain data, nothing above it.
    let plain = [
        "error",
        "event",
        "safe_text",
        "report",
        "container",
        "socket",
        "process",
        "facts",
        "netns_facts",
        "owner",
    ];
    for d in top.get("sys").into_iter().flatten() {
        if !plain.contains(&d.as_str()) {
            out.push(format!("sys uses {d}, which sits above it"));
        }
    }
    if top.get("cli").is_some_and(|d| d.contains("sys")) {
        out.push("the binary reaches into sys".into());
    }
    out
}

/// `cargo xtask modgraph`: prints the top-level graph and the checks.
pub fn print(src: &Path) -> Result<()> {
    let graph = read(src)?;
    for (m, deps) in top_level(&graph) {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("{m} -> {}", deps.join(", "));
    }
    let problems = violations(&graph);
    if problems.is_empty() {
        println!("no cycles; sys uses only plain data; the binary does not reach into sys");
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grouped_and_nested_use_paths() {
        let text = "use crate::{\n    error::Result, // crate::output is only a comment\n    event::{Listener, Proto},\n    sys::{Host, fake::World},\n};\nfn f() { super::sibling::g(); crate::table::T::new(); }\n";
        let mut got = referenced_paths("engine::ebpf", text);
        got.sort();
        let want: Vec<Vec<String>> = vec![
            vec!["engine", "sibling", "g"],
            vec!["error", "Result"],
            vec!["event", "Listener"],
            vec!["event", "Proto"],
            vec!["sys", "Host"],
            vec!["sys", "fake", "World"],
            vec!["table", "T", "new"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn finds_cycles() {
        let g = |edges: &[(&str, &str)]| {
            let mut g = Graph::new();
            for (a, b) in edges {
                g.entry(a.to_string()).or_default().insert(b.to_string());
                g.entry(b.to_string()).or_default();
            }
            g
        };
        assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
        assert_eq!(
            find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        // The module checks below rest on this finding a planted cycle.
        let mut layered = g(&[("sys", "event"), ("engine", "sys")]);
        assert!(violations(&layered).is_empty());
        layered
            .entry("sys".into())
            .or_default()
            .insert("engine".into());
        assert_eq!(
            violations(&layered).len(),
            2,
            "a cycle, and sys above event"
        );
    }

    #[test]
    fn the_portwatch_modules_form_a_one_way_graph() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../portwatch/src");
        let graph = read(&root).unwrap();
        assert!(graph.contains_key("sys::bpf") && graph.contains_key("cli::tui::app"));
        assert_eq!(violations(&graph), Vec::<String>::new());
    }
}
