//! The book check: what the book in `docs/` says about the code must be
//! true of the code. Host tests only (`cargo test`, which `cargo xtask test`
//! runs); each `book_check_*` test reads the repository and fails with
//! every problem it found, each naming the file and the missing item.
//!
//! | check | source of truth | what the book must do |
//! | --- | --- | --- |
//! | bug-replay switches | `Bug::name` in `kernel/mm/src/bugs.rs` | name every switch in code (`` `name` `` or `` `bug=name` ``) |
//! | kernel arguments | `KNOWN_ARGS` in the file of `kernel/src` that defines it | give every key a table row (`` | `key` | ``); the "Known arguments" table lists no other key |
//! | paths | the files of the repository | every path a "Where to look" section names exists, and every other path into the repository's directories too |
//! | module tables | `pub mod x;` in each crate's `lib.rs` and each module folder's root (`mod.rs`, or `x.rs` beside `x/`) | (the code's own doc) every public module has a row in the file's `//! | module | ... |` table, and every row names a module |
//! | links | the chapters in `docs/src` | every link of `SUMMARY.md` and of the chapters reaches a chapter (and a heading, when it names one); every chapter is in `SUMMARY.md` |
//!
//! The checks are pure functions over text (a chapter is its file name and
//! its text; the repository is a [`Tree`]), so the unit tests below feed each
//! one a small example that must fail. Source files are read with a small
//! tokenizer ([`tokens`]) that knows Rust's comments, strings and
//! characters: enough to find string literals, not a parser.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One chapter: its file name relative to `docs/src` and its text.
#[derive(Debug, Clone)]
pub struct Chapter {
    pub name: String,
    pub text: String,
}

/// The files of a repository, as paths relative to its root with `/`
/// separators; directories are implied by the files in them.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    files: BTreeSet<String>,
}

impl Tree {
    /// A tree of exactly these files.
    pub fn from_files<I: IntoIterator<Item = S>, S: Into<String>>(files: I) -> Tree {
        Tree { files: files.into_iter().map(Into::into).collect() }
    }

    /// Every file under `root`, except the build outputs and version control
    /// (`target`, `.git`, `docs/book`).
    pub fn read(root: &Path) -> Tree {
        fn walk(root: &Path, dir: &Path, files: &mut BTreeSet<String>) {
            let Ok(entries) = fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                if BUILD_OUTPUTS.iter().any(|o| rel == o.trim_end_matches('/')) || rel == ".git" {
                    continue;
                }
                if path.is_dir() {
                    walk(root, &path, files);
                } else {
                    files.insert(rel);
                }
            }
        }
        let mut files = BTreeSet::new();
        walk(root, root, &mut files);
        Tree { files }
    }

    /// True when `rel` is a file of the tree, or a directory holding one.
    pub fn exists(&self, rel: &str) -> bool {
        let rel = rel.trim_end_matches('/');
        let dir = format!("{rel}/");
        self.files.contains(rel)
            || self.files.range(dir.clone()..).next().is_some_and(|f| f.starts_with(&dir))
    }

    /// True when `rel` is a directory of the tree (the root is `""`).
    pub fn is_dir(&self, rel: &str) -> bool {
        let rel = rel.trim_end_matches('/');
        rel.is_empty() || (!self.files.contains(rel) && self.exists(rel))
    }

    /// The names of the entries (files and directories) directly in `dir`.
    pub fn entries(&self, dir: &str) -> BTreeSet<String> {
        let dir = dir.trim_end_matches('/');
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        self.files
            .iter()
            .filter_map(|f| f.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect()
    }

    /// The files under `dir` (recursively) whose names end with `suffix`.
    pub fn files_under<'a>(&'a self, dir: &str, suffix: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.files.iter().filter(move |f| f.starts_with(&prefix) && f.ends_with(suffix))
    }
}

/// Paths the book may name that are made by a build, not kept in the
/// repository.
pub const BUILD_OUTPUTS: &[&str] = &["target/", "docs/book/"];

// ------------------------------------------------------------ Rust source

use crate::rustsrc::{tokens, Token};

/// The index just past the bracket that closes the one at `open`
/// (`(`, `[` or `{`), or the end.
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// The names of the bug-replay switches: the string literals of the body
/// of `fn name` in the source of `mm::bugs`.
pub fn bug_switch_names(bugs_rs: &str) -> Result<Vec<String>, String> {
    let toks = tokens(bugs_rs);
    let at = toks
        .windows(3)
        .position(|w| {
            w[0] == Token::Ident("fn".into())
                && w[1] == Token::Ident("name".into())
                && w[2] == Token::Punct('(')
        })
        .ok_or("no `fn name(` (the switches' names)")?;
    let open = (at..toks.len()).find(|&k| toks[k] == Token::Punct('{')).ok_or("`fn name` has no body")?;
    let names: Vec<String> = toks[open..matching(&toks, open)]
        .iter()
        .filter_map(|t| if let Token::Str(s) = t { Some(s.clone()) } else { None })
        .collect();
    if names.is_empty() {
        return Err("`fn name` returns no string literal".into());
    }
    Ok(names)
}

/// The keys of the `KNOWN_ARGS` table in `src` (the first string of each
/// tuple), or `None` when `src` does not define the table.
pub fn known_arg_keys(src: &str) -> Option<Result<Vec<String>, String>> {
    let toks = tokens(src);
    let at = toks.windows(2).position(|w| {
        matches!(&w[0], Token::Ident(k) if k == "const" || k == "static")
            && w[1] == Token::Ident("KNOWN_ARGS".into())
    })?;
    let Some(eq) = (at..toks.len()).find(|&k| toks[k] == Token::Punct('=')) else {
        return Some(Err("`KNOWN_ARGS` has no value".into()));
    };
    let Some(open) = (eq..toks.len()).find(|&k| toks[k] == Token::Punct('[')) else {
        return Some(Err("`KNOWN_ARGS` is not an array".into()));
    };
    let end = matching(&toks, open);
    let mut keys = Vec::new();
    let mut k = open + 1;
    while k < end {
        if toks[k] == Token::Punct('(') {
            let close = matching(&toks, k);
            match toks.get(k + 1) {
                Some(Token::Str(key)) => keys.push(key.clone()),
                other => {
                    return Some(Err(format!("a `KNOWN_ARGS` entry does not start with a string: {other:?}")))
                }
            }
            k = close;
        } else {
            k += 1;
        }
    }
    Some(Ok(keys))
}

/// The public file modules (`pub mod x;`) a Rust file declares, and every
/// module it declares at all (for the reverse check), in order.
pub fn declared_modules(src: &str) -> (Vec<String>, BTreeSet<String>) {
    let toks = tokens(src);
    let (mut public, mut all) = (Vec::new(), BTreeSet::new());
    for (k, w) in toks.windows(2).enumerate() {
        if let (Token::Ident(m), Token::Ident(name)) = (&w[0], &w[1]) {
            if m == "mod" {
                all.insert(name.clone());
                let is_pub = k > 0 && toks[k - 1] == Token::Ident("pub".into());
                if is_pub && toks.get(k + 2) == Some(&Token::Punct(';')) {
                    public.push(name.clone());
                }
            }
        }
    }
    (public, all)
}

/// The module names in the first column of the module tables of a file's
/// own doc comment: the `//!` tables whose header's first cell is `module`
/// (`//! | module | what |`, then rows `//! | [`x`] | ... |`).
pub fn module_table(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    // Some(true) inside a module table, Some(false) inside another table.
    let mut table: Option<bool> = None;
    for line in src.lines() {
        let Some(doc) = line.trim_start().strip_prefix("//!").map(str::trim) else {
            table = None;
            continue;
        };
        let Some(first) = doc.strip_prefix('|').and_then(|r| r.split('|').next()).map(str::trim) else {
            table = None;
            continue;
        };
        match table {
            None => table = Some(first.eq_ignore_ascii_case("module")),
            Some(false) => {}
            Some(true) if first.starts_with('-') => {}
            Some(true) => {
                // `[`x`](link)`, `[`x`]`, `` `x` ``, `crate::a::x`: the name x.
                let cell = match (first.find("]("), first.starts_with('[')) {
                    (Some(end), true) => &first[..end + 1],
                    _ => first,
                };
                let bare: String = cell.chars().filter(|c| !matches!(c, '[' | ']' | '`')).collect();
                let name = bare.rsplit("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// Problems of one file's module table: public modules without a row, and
/// rows that name no module of the file.
pub fn module_table_problems(file: &str, src: &str) -> Vec<String> {
    let (public, all) = declared_modules(src);
    if public.is_empty() {
        return Vec::new();
    }
    let table = module_table(src);
    let mut problems = Vec::new();
    if table.is_empty() {
        problems.push(format!(
            "{file}: no module table in its doc comment (`//! | module | what |`) for its public modules {}",
            public.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        ));
        return problems;
    }
    for m in &public {
        if !table.contains(m) {
            problems.push(format!("{file}: public module `{m}` is missing from the module table"));
        }
    }
    for row in &table {
        if !all.contains(row) {
            problems.push(format!("{file}: the module table lists `{row}`, which the file does not declare"));
        }
    }
    problems
}

/// The files whose module tables are checked: each member crate's
/// `src/lib.rs`, and the root of every module folder under its `src/`
/// (`x/mod.rs`, or `x.rs` beside a folder `x/`).
pub fn module_roots(tree: &Tree, members: &[String]) -> Vec<String> {
    let mut roots = BTreeSet::new();
    for member in members {
        let src = format!("{}/src", member.trim_end_matches('/'));
        let lib = format!("{src}/lib.rs");
        if tree.exists(&lib) {
            roots.insert(lib);
        }
        for f in tree.files_under(&src, ".rs") {
            let folder_root = f.ends_with("/mod.rs")
                || f.strip_suffix(".rs").is_some_and(|dir| tree.files_under(dir, ".rs").next().is_some());
            if folder_root {
                roots.insert(f.clone());
            }
        }
    }
    roots.into_iter().collect()
}

/// The `members` of a workspace manifest.
pub fn workspace_members(cargo_toml: &str) -> Vec<String> {
    let Some(start) = cargo_toml.find("members") else { return Vec::new() };
    let rest = &cargo_toml[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else { return Vec::new() };
    rest[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

// ------------------------------------------------------------ Markdown

/// A part of a chapter under one heading (the part before the first
/// heading has level 0 and no heading). `body` is the text outside fenced
/// code blocks.
#[derive(Debug, Clone)]
pub struct Section {
    pub heading: String,
    pub level: usize,
    pub body: String,
}

/// The heading of a line (`## Text` → (2, "Text")), if it is one.
fn heading(line: &str) -> Option<(usize, String)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    let rest = &line[level..];
    (1..=6)
        .contains(&level)
        .then_some(())
        .filter(|()| rest.starts_with(' '))
        .map(|()| (level, rest.trim().trim_end_matches('#').trim().to_string()))
}

/// The sections of a chapter, fenced code left out.
pub fn sections(text: &str) -> Vec<Section> {
    let mut out = vec![Section { heading: String::new(), level: 0, body: String::new() }];
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(open) = &fence {
            if trimmed.starts_with(open.as_str()) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(trimmed.chars().take_while(|&c| c == '`' || c == '~').collect());
            continue;
        }
        if let Some((level, text)) = heading(line) {
            out.push(Section { heading: text, level, body: String::new() });
        } else if let Some(s) = out.last_mut() {
            s.body.push_str(line);
            s.body.push('\n');
        }
    }
    out
}

/// The inline code spans of `text` (a span may cross a line end, which
/// reads as a space), and `text` with every span blanked out.
pub fn code_spans(text: &str) -> (Vec<String>, String) {
    let chars: Vec<char> = text.chars().collect();
    let mut spans = Vec::new();
    let mut rest = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            rest.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        let start = i + run;
        let mut k = start;
        let close = loop {
            if k >= chars.len() {
                break None;
            }
            if chars[k] == '`' {
                let n = chars[k..].iter().take_while(|&&c| c == '`').count();
                if n == run {
                    break Some(k);
                }
                k += n;
            } else {
                k += 1;
            }
        };
        match close {
            Some(end) => {
                let span: String =
                    chars[start..end].iter().map(|&c| if c == '\n' { ' ' } else { c }).collect();
                spans.push(span.trim().to_string());
                rest.push(' ');
                i = end + run;
            }
            None => {
                rest.extend(&chars[i..start]);
                i = start;
            }
        }
    }
    (spans, rest)
}

/// The heading ids mdBook gives a chapter's headings: the heading's text
/// (code marks and link targets dropped), lower case, spaces as `-`,
/// characters other than letters, digits, `_` and `-` dropped; a repeated
/// id gets `-1`, `-2`, ...
pub fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for s in sections(text).into_iter().filter(|s| s.level > 0) {
        let plain = link_texts(&s.heading);
        let id: String = plain
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_lowercase().next().unwrap_or(c))
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let n = seen.entry(id.clone()).or_insert(0);
        ids.insert(if *n == 0 { id } else { format!("{id}-{n}") });
        *n += 1;
    }
    ids
}

/// `text` with each link `[words](target)` replaced by its words.
fn link_texts(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else { break };
        let Some(close) = rest[mid..].find(')').map(|c| mid + c) else { break };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..mid]);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The targets of the Markdown links in `text` (outside code).
pub fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for s in sections(text) {
        let (_, prose) = code_spans(&s.body);
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("").to_string();
            if !target.is_empty() {
                targets.push(target);
            }
            rest = &after[end..];
        }
    }
    targets
}

// ------------------------------------------------------------ the checks

/// Check (a): every bug-replay switch is named in code somewhere in the
/// book, as `` `name` `` or `` `bug=name` ``.
pub fn undocumented_bug_switches(names: &[String], bugs_file: &str, chapters: &[Chapter]) -> Vec<String> {
    let spans: BTreeSet<String> =
        chapters.iter().flat_map(|c| sections(&c.text)).flat_map(|s| code_spans(&s.body).0).collect();
    names
        .iter()
        .filter(|n| !spans.contains(*n) && !spans.contains(&format!("bug={n}")))
        .map(|n| format!("docs/src: the bug-replay switch `{n}` ({bugs_file}) is not named in the book"))
        .collect()
}

/// The first cells of the table rows of `body` whose first cell is one
/// code span (`` | `x` | ... ``).
fn first_cell_spans(body: &str) -> Vec<String> {
    body.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .filter_map(|cell| {
            let cell = cell.trim();
            let (spans, rest) = code_spans(cell);
            (spans.len() == 1 && rest.trim().is_empty()).then(|| spans[0].clone())
        })
        .collect()
}

/// Check (b): every known kernel argument has a table row in the book
/// (`` | `key` | ``), and the table under a "Known arguments" heading
/// lists no key the kernel does not know.
pub fn kernel_arg_problems(keys: &[String], args_file: &str, chapters: &[Chapter]) -> Vec<String> {
    let mut problems = Vec::new();
    let rows: BTreeSet<String> =
        chapters.iter().flat_map(|c| sections(&c.text)).flat_map(|s| first_cell_spans(&s.body)).collect();
    for key in keys {
        if !rows.contains(key) {
            problems.push(format!(
                "docs/src: the kernel argument `{key}` ({args_file}) has no table row (`| `{key}` | ... |`) in the book"
            ));
        }
    }
    let mut tables = 0;
    for c in chapters {
        for s in sections(&c.text).iter().filter(|s| s.heading.to_lowercase().contains("known arguments")) {
            tables += 1;
            for row in first_cell_spans(&s.body) {
                if !keys.contains(&row) {
                    problems.push(format!(
                        "docs/src/{}: the known-arguments table lists `{row}`, which is not in `KNOWN_ARGS` ({args_file})",
                        c.name
                    ));
                }
            }
        }
    }
    if tables == 0 {
        problems.push("docs/src: no chapter has a \"Known arguments\" section".into());
    }
    problems
}

/// A code span that names a path: no spaces, a `/` in it, relative
/// (not `/...`, `./...` or `../...`), not a URL, a Rust path or a
/// `key=value`.
pub fn is_path_like(span: &str) -> bool {
    !span.is_empty()
        && span.contains('/')
        && !span.chars().any(char::is_whitespace)
        && !span.starts_with('/')
        && !span.starts_with("./")
        && !span.starts_with("../")
        && !span.contains("://")
        && !span.contains("::")
        && !span.contains('=')
        && span.chars().all(|c| c.is_alphanumeric() || "_-./*{},".contains(c))
}

/// The paths `pattern` stands for: `{a,b}` gives each choice, and a `*`
/// component each directory entry at that place (`arch/*/src/mmu.rs`: the
/// file of every arch).
pub fn expand(pattern: &str, tree: &Tree) -> Vec<String> {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}')) {
        if open < close {
            return pattern[open + 1..close]
                .split(',')
                .flat_map(|choice| {
                    expand(&format!("{}{}{}", &pattern[..open], choice.trim(), &pattern[close + 1..]), tree)
                })
                .collect();
        }
    }
    let parts: Vec<&str> = pattern.split('/').collect();
    if let Some(star) = parts.iter().position(|p| *p == "*") {
        let dir = parts[..star].join("/");
        let rest = parts[star + 1..].join("/");
        return tree
            .entries(&dir)
            .into_iter()
            .map(|e| if dir.is_empty() { e } else { format!("{dir}/{e}") })
            .filter(|head| tree.is_dir(head))
            .flat_map(|head| {
                expand(&if rest.is_empty() { head.clone() } else { format!("{head}/{rest}") }, tree)
            })
            .collect();
    }
    vec![pattern.to_string()]
}

/// Check (c): the paths the book names exist. Under a "Where to look"
/// heading every path-like code span must; elsewhere, those that start with
/// a top-level entry of the repository (the others name things outside it,
/// such as fw_cfg files). Build outputs ([`BUILD_OUTPUTS`]) are skipped.
pub fn path_problems(chapters: &[Chapter], tree: &Tree) -> Vec<String> {
    let top = tree.entries("");
    let mut problems = Vec::new();
    for c in chapters {
        let mut seen = BTreeSet::new();
        for s in sections(&c.text) {
            let where_to_look = s.heading.to_lowercase().contains("where to look");
            for span in code_spans(&s.body).0 {
                if !is_path_like(&span)
                    || BUILD_OUTPUTS.iter().any(|o| span.starts_with(o.trim_end_matches('/')))
                {
                    continue;
                }
                let first = span.split('/').next().unwrap_or("");
                if !where_to_look && !top.contains(first) {
                    continue;
                }
                let expanded = expand(&span, tree);
                let missing: Vec<&String> = expanded.iter().filter(|p| !tree.exists(p)).collect();
                if (expanded.is_empty() || !missing.is_empty()) && seen.insert(span.clone()) {
                    let which = if expanded.len() > 1 && !missing.is_empty() {
                        format!(
                            " ({} missing)",
                            missing.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    } else {
                        String::new()
                    };
                    let place = if where_to_look { "Where to look" } else { s.heading.as_str() };
                    problems.push(format!(
                        "docs/src/{}: `{span}` (section \"{place}\") does not exist in the repository{which}",
                        c.name
                    ));
                }
            }
        }
    }
    problems
}

/// Check (d) over a repository: every checked file's module table.
pub fn module_problems(
    tree: &Tree,
    members: &[String],
    read: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    module_roots(tree, members)
        .iter()
        .flat_map(|f| match read(f) {
            Some(src) => module_table_problems(f, &src),
            None => vec![format!("{f}: cannot be read")],
        })
        .collect()
}

/// Check (e): links. `summary` is `SUMMARY.md`; every link in it and in the
/// chapters that names a chapter must name one that exists, with a heading
/// of that id when it has a `#fragment`; every chapter is in the summary.
pub fn link_problems(summary: &str, chapters: &[Chapter]) -> Vec<String> {
    let by_name: BTreeMap<&str, &Chapter> = chapters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut problems = Vec::new();
    let summary_links = link_targets(summary);
    for target in &summary_links {
        let file = target.split('#').next().unwrap_or("");
        if !by_name.contains_key(file) {
            problems.push(format!("docs/src/SUMMARY.md: links to `{target}`, which is not a chapter"));
        }
    }
    for c in chapters {
        if !summary_links.iter().any(|t| t.split('#').next() == Some(c.name.as_str())) {
            problems.push(format!("docs/src/{}: not listed in SUMMARY.md", c.name));
        }
    }
    for c in chapters {
        for target in link_targets(&c.text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((f, frag)) => (f, Some(frag)),
                None => (target.as_str(), None),
            };
            let file = if file.is_empty() { c.name.as_str() } else { file };
            if !file.ends_with(".md") {
                continue;
            }
            match by_name.get(file) {
                None => problems.push(format!("docs/src/{}: links to `{target}`: no such chapter", c.name)),
                Some(to) => {
                    if let Some(frag) = fragment {
                        if !heading_ids(&to.text).contains(frag) {
                            problems.push(format!(
                                "docs/src/{}: links to `{target}`: {file} has no heading with the id `{frag}`",
                                c.name
                            ));
                        }
                    }
                }
            }
        }
    }
    problems
}

// ------------------------------------------------------------ the repository

/// The repository this xtask was built in.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The chapters of `docs/src` (every `.md` file but `SUMMARY.md`), and the
/// text of `SUMMARY.md`.
pub fn read_book(root: &Path) -> (String, Vec<Chapter>) {
    let src = root.join("docs").join("src");
    let summary = fs::read_to_string(src.join("SUMMARY.md")).unwrap_or_default();
    let mut chapters: Vec<Chapter> = fs::read_dir(&src)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .filter(|p| p.file_name().is_some_and(|n| n != "SUMMARY.md"))
                .filter_map(|p| {
                    let text = fs::read_to_string(&p).ok()?;
                    Some(Chapter { name: p.file_name()?.to_string_lossy().into_owned(), text })
                })
                .collect()
        })
        .unwrap_or_default();
    chapters.sort_by(|a, b| a.name.cmp(&b.name));
    (summary, chapters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapter(name: &str, text: &str) -> Chapter {
        Chapter { name: name.into(), text: text.into() }
    }

    fn report(what: &str, problems: &[String]) {
        assert!(problems.is_empty(), "{what}: {} problem(s):\n{}", problems.len(), problems.join("\n"));
    }

    // ---- the book against this repository

    #[test]
    fn book_check_bug_switches() {
        let root = repo_root();
        let tree = Tree::read(&root);
        let bugs: Vec<&String> = tree
            .files_under("kernel/mm/src", ".rs")
            .filter(|f| fs::read_to_string(root.join(f)).is_ok_and(|s| s.contains("pub enum Bug ")))
            .collect();
        assert_eq!(bugs.len(), 1, "one file of kernel/mm/src defines `pub enum Bug`: {bugs:?}");
        let names = bug_switch_names(&fs::read_to_string(root.join(bugs[0])).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", bugs[0]));
        let (_, chapters) = read_book(&root);
        report("bug-replay switches", &undocumented_bug_switches(&names, bugs[0], &chapters));
    }

    #[test]
    fn book_check_kernel_args() {
        let root = repo_root();
        let tree = Tree::read(&root);
        let tables: Vec<(String, Result<Vec<String>, String>)> = tree
            .files_under("kernel/src", ".rs")
            .filter_map(|f| Some((f.clone(), known_arg_keys(&fs::read_to_string(root.join(f)).ok()?)?)))
            .collect();
        assert_eq!(
            tables.len(),
            1,
            "exactly one file of kernel/src defines `KNOWN_ARGS`: {:?}",
            tables.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
        let (file, keys) = &tables[0];
        let keys = keys.clone().unwrap_or_else(|e| panic!("{file}: {e}"));
        let (_, chapters) = read_book(&root);
        report("kernel arguments", &kernel_arg_problems(&keys, file, &chapters));
    }

    #[test]
    fn book_check_paths() {
        let root = repo_root();
        let (_, chapters) = read_book(&root);
        report("paths", &path_problems(&chapters, &Tree::read(&root)));
    }

    #[test]
    fn book_check_module_tables() {
        let root = repo_root();
        let members = workspace_members(&fs::read_to_string(root.join("Cargo.toml")).unwrap());
        assert!(members.iter().any(|m| m == "kernel/mm"), "workspace members: {members:?}");
        let problems =
            module_problems(&Tree::read(&root), &members, |f| fs::read_to_string(root.join(f)).ok());
        report("module tables", &problems);
    }

    #[test]
    fn book_check_links() {
        let (summary, chapters) = read_book(&repo_root());
        assert!(chapters.len() > 10, "the book has {} chapters", chapters.len());
        report("links", &link_problems(&summary, &chapters));
    }

    // ---- each check on a small example, failing when it should

    const BUGS_RS: &str = r#"
        /// Doc "with quotes" and a } brace.
        pub enum Bug { A = 0, B = 1 }
        impl Bug {
            pub fn from_name(name: &str) -> Option<Bug> { None } // "not-a-name"
            pub const fn name(self) -> &'static str {
                match self {
                    Bug::A => "switch-a", /* "hidden" */
                    Bug::B => "switch-b",
                }
            }
            pub const fn mistake(self) -> &'static str { "not a name either" }
        }
    "#;

    #[test]
    fn bug_switch_names_are_read_from_fn_name_only() {
        assert_eq!(bug_switch_names(BUGS_RS).unwrap(), ["switch-a", "switch-b"]);
        assert!(bug_switch_names("pub enum Bug {}").is_err());
    }

    #[test]
    fn an_undocumented_bug_switch_is_named() {
        let names = bug_switch_names(BUGS_RS).unwrap();
        let book = [chapter("a.md", "Turn on `bug=switch-a`.\n\n```text\nswitch-b in a code block\n```\n")];
        let problems = undocumented_bug_switches(&names, "bugs.rs", &book);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`switch-b`") && problems[0].contains("bugs.rs"), "{problems:?}");
        let book = [chapter("a.md", "`switch-a` and `switch-b`\n")];
        assert!(undocumented_bug_switches(&names, "bugs.rs", &book).is_empty());
    }

    const CMDLINE_RS: &str = r#"
        pub const KNOWN_ARGS: &[(&str, &str)] = &[
            ("test", "run tests (`all`, or a prefix, \"quoted\")"),
            // ("commented", "out"),
            ("swap_demo", "`0` skips (the) demo"),
        ];
        pub const OTHER: &[(&str, &str)] = &[("not", "a key")];
    "#;

    #[test]
    fn known_arg_keys_are_the_first_strings_of_the_table() {
        assert_eq!(known_arg_keys(CMDLINE_RS).unwrap().unwrap(), ["test", "swap_demo"]);
        assert!(known_arg_keys("pub const OTHER: u8 = 1;").is_none());
    }

    #[test]
    fn an_undocumented_or_unknown_kernel_argument_is_named() {
        let keys = known_arg_keys(CMDLINE_RS).unwrap().unwrap();
        let book = [chapter(
            "running.md",
            "## Known arguments\n\n| key | what |\n| --- | --- |\n| `test` | tests |\n| `seed` | gone |\n",
        )];
        let problems = kernel_arg_problems(&keys, "cmdline.rs", &book);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`swap_demo`") && problems[0].contains("cmdline.rs"), "{problems:?}");
        assert!(problems[1].contains("running.md") && problems[1].contains("`seed`"), "{problems:?}");
        let book = [chapter("r.md", "## Known arguments\n\n| `test` | x |\n| `swap_demo` | y |\n")];
        assert!(kernel_arg_problems(&keys, "cmdline.rs", &book).is_empty());
        let no_table = [chapter("r.md", "| `test` | x |\n| `swap_demo` | y |\n")];
        assert_eq!(kernel_arg_problems(&keys, "cmdline.rs", &no_table).len(), 1);
    }

    fn small_tree() -> Tree {
        Tree::from_files([
            "kernel/mm/src/lib.rs",
            "kernel/mm/src/swap/area.rs",
            "kernel/mm/src/swap/cache.rs",
            "arch/x86_64/src/mmu.rs",
            "arch/aarch64/src/mmu.rs",
            "arch/x86_64/src/fw_cfg.rs",
            "Cargo.toml",
        ])
    }

    #[test]
    fn tree_answers_files_directories_and_entries() {
        let t = small_tree();
        assert!(t.exists("kernel/mm/src/lib.rs") && t.exists("kernel/mm/") && t.exists("Cargo.toml"));
        assert!(!t.exists("kernel/m") && !t.exists("kernel/mm/src/lib"));
        assert!(t.is_dir("arch") && !t.is_dir("Cargo.toml"));
        assert_eq!(t.entries("arch").into_iter().collect::<Vec<_>>(), ["aarch64", "x86_64"]);
        assert_eq!(expand("arch/*/src/mmu.rs", &t), ["arch/aarch64/src/mmu.rs", "arch/x86_64/src/mmu.rs"]);
        assert_eq!(expand("kernel/mm/src/swap/{area,cache}.rs", &t).len(), 2);
    }

    #[test]
    fn a_missing_path_is_named_and_others_pass() {
        let t = small_tree();
        let text = "See `opt/kernel/cmdline` and `kernel/mm/src/gone.rs` in prose.\n\n\
                    ```text\nkernel/mm/src/in_a_block.rs\n```\n\n\
                    ## Where to look\n\n- `kernel/mm/src/lib.rs`, `arch/*/src/mmu.rs`, \
                    `kernel/mm/src/swap/{area,cache}.rs`, `mm::swap`, `cargo test -p mm`,\n  \
                    `kernel/mm/src/swap/`, `target/images/k.img`, `arch/*/src/fw_cfg.rs`,\n  \
                    `knl/src/typo.rs`.\n";
        let problems = path_problems(&[chapter("c.md", text)], &t);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`kernel/mm/src/gone.rs`"), "{problems:?}");
        assert!(
            problems[1].contains("`arch/*/src/fw_cfg.rs`") && problems[1].contains("aarch64"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("`knl/src/typo.rs`") && problems[2].contains("Where to look"),
            "{problems:?}"
        );
    }

    const LIB_RS: &str = "//! The crate.\n//!\n//! | module | what |\n//! | --- | --- |\n\
        //! | [`addr`] | addresses |\n//! | [`old`](crate::old) | gone |\n//! | `sync` | atomics |\n\
        #![no_std]\npub mod addr;\npub mod swap;\npub(crate) mod private;\n#[cfg(test)]\npub mod sync;\n\
        mod tests { pub mod inline {} }\n";

    #[test]
    fn a_module_missing_from_its_table_is_named() {
        assert_eq!(module_table(LIB_RS), ["addr", "old", "sync"]);
        let problems = module_table_problems("kernel/mm/src/lib.rs", LIB_RS);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("kernel/mm/src/lib.rs") && problems[0].contains("`swap` is missing"));
        assert!(problems[1].contains("lists `old`"), "{problems:?}");
        let no_table = module_table_problems("q/src/lib.rs", "//! No table.\npub mod a;\npub mod b;\n");
        assert_eq!(no_table.len(), 1);
        assert!(no_table[0].contains("q/src/lib.rs") && no_table[0].contains("`a`, `b`"), "{no_table:?}");
        assert!(module_table_problems(
            "x.rs",
            "//! | module | x |\n//! | --- | --- |\n//! | [`a`] | x |\npub mod a;\n"
        )
        .is_empty());
        let other_table = "//! | state | flag |\n//! | --- | --- |\n//! | `free` | 0 |\n//!\n//! | module | what |\n//! | [`a`] | x |\npub mod a;\n";
        assert_eq!(module_table(other_table), ["a"]);
        assert!(module_table_problems("x.rs", "mod private;\n").is_empty());
    }

    #[test]
    fn module_roots_are_lib_rs_and_folder_roots() {
        let t = Tree::from_files([
            "kernel/mm/src/lib.rs",
            "kernel/mm/src/swap/mod.rs",
            "kernel/mm/src/swap/area.rs",
            "kernel/src/lib.rs",
            "kernel/src/mm.rs",
            "kernel/src/mm/fault.rs",
            "kernel/src/sched.rs",
            "boot/x86_64/src/main.rs",
        ]);
        let members = workspace_members(
            "[workspace]\nmembers = [\n  \"kernel\",\n  \"kernel/mm\",\n  \"boot/x86_64\",\n]\n",
        );
        assert_eq!(members, ["kernel", "kernel/mm", "boot/x86_64"]);
        assert_eq!(
            module_roots(&t, &members),
            ["kernel/mm/src/lib.rs", "kernel/mm/src/swap/mod.rs", "kernel/src/lib.rs", "kernel/src/mm.rs"]
        );
    }

    #[test]
    fn heading_ids_follow_mdbook() {
        let ids = heading_ids("# Title\n## `cargo xtask bench`\n## Locks and interrupts\n### x86_64\n### x86_64\n```\n## not a heading\n```\n## [Link](x.md): the rest\n");
        for id in
            ["title", "cargo-xtask-bench", "locks-and-interrupts", "x86_64", "x86_64-1", "link-the-rest"]
        {
            assert!(ids.contains(id), "{id} not in {ids:?}");
        }
        assert!(!ids.contains("not-a-heading"));
    }

    #[test]
    fn a_broken_link_or_an_orphan_chapter_is_named() {
        let summary = "# Summary\n\n[Intro](intro.md)\n- [Gone](gone.md)\n";
        let chapters = [
            chapter(
                "intro.md",
                "# Intro\n\nSee [there](other.md#the-part), [here](#intro), [bad](#nope), \
                                 [web](https://x.org/a.md) and `[code](no.md)`.\n",
            ),
            chapter("other.md", "# Other\n\n## The part\n\n[back](intro.md) [missing](none.md)\n"),
        ];
        let problems = link_problems(summary, &chapters);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("SUMMARY.md") && problems[0].contains("gone.md"), "{problems:?}");
        assert!(problems[1].contains("other.md: not listed"), "{problems:?}");
        assert!(problems[2].contains("intro.md") && problems[2].contains("`nope`"), "{problems:?}");
        assert!(problems[3].contains("other.md") && problems[3].contains("none.md"), "{problems:?}");
    }

    #[test]
    fn code_spans_and_tokens_read_the_tricky_cases() {
        let (spans, rest) = code_spans("a `b c` d ``e ` f`` g `unclosed\n");
        assert_eq!(spans, ["b c", "e ` f"]);
        assert!(rest.contains("`unclosed"));
        assert_eq!(code_spans("x `two\nlines` y").0, ["two lines"]);
        let toks = tokens(r##"let c = '"'; let s = r#"raw "q""#; let l: &'static str = "a\"b";"##);
        let strs: Vec<&Token> = toks.iter().filter(|t| matches!(t, Token::Str(_))).collect();
        assert_eq!(strs, [&Token::Str("raw \"q\"".into()), &Token::Str("a\\\"b".into())]);
    }
}
