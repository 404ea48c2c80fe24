//! The layering check of `kernel/src`: its top-level units (each file and
//! each folder directly under `kernel/src`, the crate root `lib.rs` aside)
//! must not import each other in a cycle, and production units must not
//! import the in-guest tests or the benchmarks.
//!
//! The check reads the source as text; it does not compile it. A unit
//! imports another when its code (comments and string literals removed)
//! names it as `crate::other`, `$crate::other`, inside a `use crate::{..}`
//! group, through `super::` from a top-level file, or uses a macro the
//! other unit exports (`#[macro_export]`, such as `println!`). The crate
//! root is the composition root: it may name every unit, and it is not a
//! unit itself.
//!
//! The host test [`tests::kernel_src_has_no_import_cycle`] runs the check
//! over the real tree (`cargo test -p xtask`, part of `cargo xtask test`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::rustsrc::{tokens, Token};

/// Units that only tests and benchmarks may import.
pub const TEST_ONLY_UNITS: &[&str] = &["tests", "bench"];

/// One source file of a unit, as text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to `kernel/src`, with `/` separators (`vm/space.rs`).
    pub path: String,
    pub text: String,
}

/// Why a tree fails the check; each line names files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// Reads every `.rs` file under `root`.
pub fn read_tree(root: &Path) -> std::io::Result<Vec<SourceFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> =
            fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("walk stays under root");
                let rel =
                    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.push(SourceFile { path: rel, text: fs::read_to_string(&path)? });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// The unit a file belongs to: its first path component without `.rs`;
/// `None` for the crate root.
fn unit_of(path: &str) -> Option<String> {
    if path == "lib.rs" {
        return None;
    }
    let first = path.split('/').next().unwrap_or(path);
    Some(first.strip_suffix(".rs").unwrap_or(first).to_string())
}

/// The module path of a file below the crate root (`vm/space.rs` ->
/// `["vm", "space"]`, `vm/mod.rs` -> `["vm"]`, `lib.rs` -> `[]`).
fn module_path(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(String::from).collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.strip_suffix(".rs").unwrap_or(other).to_string()),
    }
    parts
}

/// True when `toks[i..]` starts with `::`.
fn path_sep_at(toks: &[Token], i: usize) -> bool {
    toks.get(i) == Some(&Token::Punct(':')) && toks.get(i + 1) == Some(&Token::Punct(':'))
}

/// The names a path reaches from `toks[i]` on: one identifier, or the
/// first identifier of each item of a `{a, b::c, d::{e}}` group.
fn heads_at(toks: &[Token], i: usize) -> Vec<String> {
    match toks.get(i) {
        Some(Token::Ident(id)) => vec![id.clone()],
        Some(Token::Punct('{')) => {
            let mut heads = Vec::new();
            let mut depth = 0;
            let mut start = true;
            for t in &toks[i + 1..] {
                match t {
                    Token::Punct('{') => depth += 1,
                    Token::Punct('}') if depth == 0 => break,
                    Token::Punct('}') => depth -= 1,
                    Token::Punct(',') if depth == 0 => start = true,
                    Token::Ident(id) if start => {
                        heads.push(id.clone());
                        start = false;
                    }
                    _ => start = false,
                }
            }
            heads
        }
        _ => Vec::new(),
    }
}

/// The top-level names a file's code reaches from the crate root:
/// `crate::x` (also `$crate::x` and groups), and `super::` chains that
/// climb to the root.
fn root_names(path: &str, toks: &[Token]) -> BTreeSet<String> {
    let depth = module_path(path).len();
    let mut names = BTreeSet::new();
    for i in 0..toks.len() {
        let Token::Ident(id) = &toks[i] else { continue };
        if !path_sep_at(toks, i + 1) {
            continue;
        }
        if id == "crate" {
            names.extend(heads_at(toks, i + 3));
        } else if id == "super" && !(i >= 2 && path_sep_at(toks, i - 2)) {
            // The first `super` of a chain: count how far it climbs.
            let mut j = i;
            let mut climbs = 0;
            while toks.get(j) == Some(&Token::Ident("super".into())) && path_sep_at(toks, j + 1) {
                climbs += 1;
                j += 3;
            }
            if climbs >= depth {
                names.extend(heads_at(toks, j));
            }
        }
    }
    names
}

/// Macros exported at the crate root (`#[macro_export] macro_rules! m`),
/// by the unit that defines them.
fn exported_macros(files: &[(String, Vec<Token>)]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (path, toks) in files {
        let Some(unit) = unit_of(path) else { continue };
        let mut exported = false;
        for (i, t) in toks.iter().enumerate() {
            match t {
                Token::Ident(id) if id == "macro_export" => exported = true,
                Token::Ident(id) if id == "macro_rules" && exported => {
                    if let Some(Token::Ident(name)) = toks.get(i + 2) {
                        map.insert(name.clone(), unit.clone());
                    }
                    exported = false;
                }
                _ => {}
            }
        }
    }
    map
}

/// The macros `toks` invokes (`name!`).
fn macro_uses(toks: &[Token]) -> BTreeSet<String> {
    toks.windows(2)
        .filter_map(|w| match w {
            [Token::Ident(name), Token::Punct('!')] => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Unit -> units it imports, each with one file that shows it.
pub type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The import graph between the units of `files`.
pub fn import_graph(files: &[SourceFile]) -> Graph {
    let code: Vec<(String, Vec<Token>)> = files.iter().map(|f| (f.path.clone(), tokens(&f.text))).collect();
    let units: BTreeSet<String> = files.iter().filter_map(|f| unit_of(&f.path)).collect();
    let macros = exported_macros(&code);
    let mut graph: Graph = units.iter().map(|u| (u.clone(), BTreeMap::new())).collect();
    for (path, toks) in &code {
        let Some(from) = unit_of(path) else { continue };
        let mut targets: BTreeSet<String> =
            root_names(path, toks).into_iter().map(|n| macros.get(&n).cloned().unwrap_or(n)).collect();
        targets.extend(macro_uses(toks).iter().filter_map(|m| macros.get(m).cloned()));
        for to in targets {
            if to != from && units.contains(&to) {
                graph
                    .get_mut(&from)
                    .expect("every unit has a node")
                    .entry(to)
                    .or_insert_with(|| path.clone());
            }
        }
    }
    graph
}

/// Strongly connected components with more than one unit (Tarjan).
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph[v].keys() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().expect("v is on the stack");
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Every violation of the rules in `files` (see the module doc).
pub fn check(files: &[SourceFile]) -> Vec<Violation> {
    let graph = import_graph(files);
    let mut out = Vec::new();
    for comp in cycles(&graph) {
        let edges: Vec<String> = comp
            .iter()
            .flat_map(|from| {
                graph[from]
                    .iter()
                    .filter(|(to, _)| comp.contains(to))
                    .map(move |(to, file)| format!("{from} -> {to} (in {file})"))
            })
            .collect();
        out.push(Violation(format!("import cycle between {}: {}", comp.join(", "), edges.join("; "))));
    }
    for (from, tos) in &graph {
        if TEST_ONLY_UNITS.contains(&from.as_str()) {
            continue;
        }
        for (to, file) in tos {
            if TEST_ONLY_UNITS.contains(&to.as_str()) {
                out.push(Violation(format!("production code imports `{to}`: {file}")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Vec<SourceFile> {
        files.iter().map(|(p, t)| SourceFile { path: p.to_string(), text: t.to_string() }).collect()
    }

    #[test]
    fn kernel_src_has_no_import_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
        let files = read_tree(&root).expect("kernel/src is readable");
        assert!(files.len() > 10, "found only {} files under {}", files.len(), root.display());
        let violations = check(&files);
        assert!(
            violations.is_empty(),
            "kernel/src breaks its layering:\n{}",
            violations.iter().map(|v| v.0.as_str()).collect::<Vec<_>>().join("\n")
        );
    }

    /// The one violation the tree `files` has.
    fn only_violation(files: &[(&str, &str)]) -> String {
        let v = check(&tree(files));
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].0.clone()
    }

    #[test]
    fn a_cycle_through_a_folder_is_named_with_its_files() {
        let v = only_violation(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            ("a.rs", "use crate::b::thing;"),
            ("b/mod.rs", "pub mod inner;"),
            ("b/inner.rs", "fn f() { crate::c::g() }"),
            ("c.rs", "use crate::{a, b};"),
        ]);
        assert!(v.starts_with("import cycle between a, b, c") && v.contains("b -> c (in b/inner.rs)"), "{v}");
    }

    #[test]
    fn a_layered_tree_passes_and_comments_and_strings_do_not_count() {
        let files = tree(&[
            ("lib.rs", "pub mod low; pub mod high; fn main() { high::run(); tests::run() }"),
            ("low.rs", "//! see [`crate::high`]\nfn f() { let s = \"crate::high\"; /* crate::high */ }"),
            ("high.rs", "use crate::low;"),
            ("tests/mod.rs", "use crate::high;"),
        ]);
        assert_eq!(check(&files), vec![]);
    }

    #[test]
    fn production_importing_tests_or_bench_fails() {
        let v = only_violation(&[
            ("init.rs", "fn f() { crate::tests::run(); }"),
            ("bench/mod.rs", "use crate::tests::kit;"),
            ("tests/mod.rs", "pub mod kit;"),
            ("tests/kit.rs", ""),
        ]);
        assert_eq!(v, "production code imports `tests`: init.rs");
    }

    #[test]
    fn super_from_a_top_level_file_and_exported_macros_count() {
        let v = only_violation(&[
            (
                "console.rs",
                "#[macro_export]\nmacro_rules! println { () => {} }\nfn f() { super::sync::x(); }",
            ),
            ("sync.rs", "fn g() { println!(); }"),
            ("vm/mod.rs", "pub mod space;"),
            ("vm/space.rs", "use super::mod_item;"),
        ]);
        assert!(v.starts_with("import cycle between console, sync"), "{v}");
    }

    #[test]
    fn lifetimes_chars_and_nested_groups_are_read_right() {
        let files = tree(&[
            ("a.rs", "fn f<'a>(x: &'a str) -> char { crate::b::y(); '{' }"),
            ("b.rs", "use crate::{c::{d, e}, a as _};"),
            ("c.rs", ""),
        ]);
        let graph = import_graph(&files);
        assert_eq!(graph["a"].keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(graph["b"].keys().collect::<Vec<_>>(), ["a", "c"]);
    }
}
