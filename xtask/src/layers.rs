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

/// `text` with comments, string and character literals blanked out (so
/// that a doc link or a message naming a module is not an import).
pub fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && !prev_is_ident(b, i)
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && is_char_literal(b, i) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            // Copy one whole UTF-8 character.
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// A `'` that opens a character literal rather than a lifetime or label:
/// `'x'` or an escape `'\..'`.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => {
            // 'x' (one ASCII character) or a multi-byte character.
            let mut j = i + 1;
            let mut n = 0;
            while j < b.len() && b[j] != b'\'' && n < 5 {
                j += 1;
                n += 1;
            }
            b.get(j) == Some(&b'\'') && (n == 1 || (n > 1 && b[i + 1] >= 0x80))
        }
        None => false,
    }
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level names a file's code reaches from the crate root.
fn root_names(path: &str, code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // crate::x and $crate::x
    for (at, _) in code.match_indices("crate::") {
        let before = &code[..at];
        if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            names.extend(group_heads(group));
        } else {
            let id = ident_at(rest);
            if !id.is_empty() {
                names.insert(id.to_string());
            }
        }
    }
    // super:: chains that climb to the root.
    let depth = module_path(path).len();
    let mut search = 0;
    while let Some(off) = code[search..].find("super::") {
        let at = search + off;
        search = at + 1;
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // counted with the first `super::` of the chain
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        if climbs >= depth {
            if let Some(group) = rest.strip_prefix('{') {
                names.extend(group_heads(group));
            } else {
                let id = ident_at(rest);
                if !id.is_empty() {
                    names.insert(id.to_string());
                }
            }
        }
    }
    names
}

/// The first identifier of each item of a `{a, b::c, d::{e}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_ascii_alphanumeric() || c == '_') => {
                heads.push(ident_at(&group[i..]).to_string());
                start = false;
            }
            _ => {}
        }
    }
    heads
}

/// Macros exported at the crate root, by the unit that defines them.
fn exported_macros(files: &[(String, String)]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (path, code) in files {
        let Some(unit) = unit_of(path) else { continue };
        let mut rest = code.as_str();
        while let Some(at) = rest.find("#[macro_export]") {
            rest = &rest[at + 1..];
            if let Some(m) = rest.find("macro_rules!") {
                let name = ident_at(rest[m + "macro_rules!".len()..].trim_start());
                if !name.is_empty() {
                    map.insert(name.to_string(), unit.clone());
                }
            }
        }
    }
    map
}

/// Unit -> units it imports, each with one file that shows it.
pub type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The import graph between the units of `files`.
pub fn import_graph(files: &[SourceFile]) -> Graph {
    let code: Vec<(String, String)> = files.iter().map(|f| (f.path.clone(), code_only(&f.text))).collect();
    let units: BTreeSet<String> = files.iter().filter_map(|f| unit_of(&f.path)).collect();
    let macros = exported_macros(&code);
    let mut graph: Graph = units.iter().map(|u| (u.clone(), BTreeMap::new())).collect();
    for (path, text) in &code {
        let Some(from) = unit_of(path) else { continue };
        let mut targets: BTreeSet<String> =
            root_names(path, text).into_iter().filter_map(|n| macros.get(&n).cloned().or(Some(n))).collect();
        for (name, unit) in &macros {
            if text.contains(&format!("{name}!")) {
                targets.insert(unit.clone());
            }
        }
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

    #[test]
    fn a_cycle_through_a_folder_is_named_with_its_files() {
        let files = tree(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            ("a.rs", "use crate::b::thing;"),
            ("b/mod.rs", "pub mod inner;"),
            ("b/inner.rs", "fn f() { crate::c::g() }"),
            ("c.rs", "use crate::{a, b};"),
        ]);
        let v = check(&files);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].0.starts_with("import cycle between a, b, c"), "{v:?}");
        assert!(v[0].0.contains("b -> c (in b/inner.rs)"), "{v:?}");
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
        let files = tree(&[
            ("init.rs", "fn f() { crate::tests::run(); }"),
            ("bench/mod.rs", "use crate::tests::kit;"),
            ("tests/mod.rs", "pub mod kit;"),
            ("tests/kit.rs", ""),
        ]);
        let v = check(&files);
        assert_eq!(v, vec![Violation("production code imports `tests`: init.rs".into())]);
    }

    #[test]
    fn super_from_a_top_level_file_and_exported_macros_count() {
        let files = tree(&[
            (
                "console.rs",
                "#[macro_export]\nmacro_rules! println { () => {} }\nfn f() { super::sync::x(); }",
            ),
            ("sync.rs", "fn g() { println!(); }"),
            ("vm/mod.rs", "pub mod space;"),
            ("vm/space.rs", "use super::mod_item;"),
        ]);
        let v = check(&files);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].0.starts_with("import cycle between console, sync"), "{v:?}");
    }

    #[test]
    fn lifetimes_are_not_char_literals() {
        let code = code_only("fn f<'a>(x: &'a str) -> char { crate::x::y(); 'z' }");
        assert!(code.contains("crate::x::y"), "{code}");
        assert!(!code.contains("'z'"), "{code}");
    }
}
