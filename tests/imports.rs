//! The source tree's structure, checked: no two files of `src/` depend on each other
//! through `crate::`/`super::` paths (directly or around a longer loop), and only
//! the configuration and `main.rs` touch the process environment, no file is over
//! 800 lines before its tests, and nothing silences the dead-code lint.
//!
//! A file's dependencies are the files its paths resolve to: `use` items (groups
//! expanded) and paths written inline, with `pub use` re-exports followed to the
//! file that defines the item. A file's own module roots (the `mod.rs` files above
//! it, and `lib.rs`) are not counted: a child naming its module's shared items is not
//! a dependency between parts. Test modules at the end of files are not scanned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["pool", "loaded"]`) → file.
type Modules = BTreeMap<Vec<String>, PathBuf>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code before the file's test module, without comments and string contents.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut in_string = false;
        for c in line.chars() {
            if c == '"' {
                in_string = !in_string;
            }
            if !in_string {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Expand `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
/// A renaming (`e as f`) is kept as `e@f`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// Every `crate::…`/`super::…` path in `code`, as written (`use` trees expanded).
fn paths(code: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    // `use` statements, which may span lines; the flag marks `pub use`.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let is_use = before
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == ')');
        let stmt_end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        if is_use {
            let public = before.trim_end().ends_with("pub") || before.trim_end().ends_with(')');
            for p in expand(&rest[at + 4..stmt_end]) {
                let p = p.split('@').next().unwrap_or_default().to_string();
                if p.starts_with("crate::") || p.starts_with("super::") {
                    found.push((p, public));
                }
            }
        }
        rest = &rest[stmt_end.min(rest.len() - 1) + 1..];
    }
    // Inline paths.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let preceded = code[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            // A path that opens a group (`crate::a::{…}`) is a `use` tree, read above.
            let group = code[end..].starts_with('{');
            if !preceded && !group {
                found.push((code[at..end].trim_end_matches(':').to_string(), false));
            }
            from = end.max(at + 1);
        }
    }
    found
}

/// Turn a path as written in `module` into segments from the crate root.
fn absolute(module: &[String], path: &str) -> Vec<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = Vec::new();
    if segs.first() == Some(&"crate") {
        segs.remove(0);
    } else {
        // `super` is the parent of the file's module; a `mod.rs` is its module.
        base = module.to_vec();
        while segs.first() == Some(&"super") {
            segs.remove(0);
            base.pop();
        }
    }
    base.extend(segs.into_iter().map(String::from));
    base
}

/// The file that defines what `path` names: the deepest module on the path, then
/// through the `pub use` re-exports of a module root.
fn resolve(
    modules: &Modules,
    reexports: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    path: &[String],
    depth: usize,
) -> Option<PathBuf> {
    let mut len = path.len();
    while len > 0 && !modules.contains_key(&path[..len]) {
        len -= 1;
    }
    let module = &path[..len];
    if let (Some(item), Some(map)) = (path.get(len), reexports.get(module)) {
        if let Some(target) = map.get(item) {
            if depth < 8 && target.as_slice() != path {
                let mut target = target.clone();
                target.extend(path[len + 1..].iter().cloned());
                return resolve(modules, reexports, &target, depth + 1);
            }
        }
    }
    modules.get(module).cloned()
}

#[test]
fn no_file_depends_on_itself_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: Modules = files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let is_root = |f: &Path| f.ends_with("mod.rs") || f.ends_with("lib.rs");
    let codes: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|f| (f.clone(), code(&std::fs::read_to_string(f).unwrap())))
        .collect();
    // Module roots' re-exports: item name → absolute path.
    let mut reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        if !is_root(file) {
            continue;
        }
        for (path, public) in paths(&codes[file]) {
            if public {
                let abs = absolute(module, &path);
                if let Some(name) = abs.last() {
                    reexports
                        .entry(module.clone())
                        .or_default()
                        .insert(name.clone(), abs.clone());
                }
            }
        }
        // `pub use child::{…}` written without `self::` or `super::`.
        for line in codes[file].lines() {
            let line = line.trim();
            if let Some(tree) = line.strip_prefix("pub use ") {
                let tree = tree.trim_end_matches(';');
                if tree.starts_with("crate::") || tree.starts_with("super::") {
                    continue;
                }
                for p in expand(tree) {
                    let p = p.split('@').next().unwrap_or_default().to_string();
                    let mut abs = module.clone();
                    abs.extend(p.split("::").map(String::from));
                    if modules.contains_key(&abs[..module.len() + 1]) {
                        let name = abs.last().unwrap().clone();
                        reexports
                            .entry(module.clone())
                            .or_default()
                            .insert(name, abs);
                    }
                }
            }
        }
    }
    // Edges between files.
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (module, file) in &modules {
        let roots: BTreeSet<PathBuf> = (0..module.len())
            .filter_map(|n| modules.get(&module[..n]).cloned())
            .chain(is_root(file).then(|| file.clone()))
            .collect();
        for (path, _) in paths(&codes[file]) {
            let abs = absolute(module, &path);
            if let Some(target) = resolve(&modules, &reexports, &abs, 0) {
                if &target != file && !roots.contains(&target) {
                    edges.entry(file.clone()).or_default().insert(target);
                }
            }
        }
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the scan found too few dependencies to be reading the code: {edges:?}"
    );
    // A depth-first search for a loop.
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = trail
                        .iter()
                        .chain([next])
                        .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                        .collect();
                    cycles.push(names.join(" -> "));
                } else if !trail.contains(next) && !done.contains(next) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
        done.insert(start.clone());
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn only_configuration_and_main_touch_the_environment() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let allowed = |f: &Path| {
        let rel = f.strip_prefix(&src).unwrap();
        rel == Path::new("main.rs") || rel == Path::new("config.rs") || rel.starts_with("config")
    };
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !allowed(f)) {
        let code = code(&std::fs::read_to_string(file).unwrap());
        for needle in ["std::env", "env::var", "set_var", "remove_var"] {
            if code.contains(needle) {
                offenders.push(format!(
                    "{}: {needle}",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "environment access outside config/main:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn use_trees_expand_and_super_resolves() {
    // The expansion and resolution that the checks above rely on.
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}}"),
        vec!["crate::a::b", "crate::a::c::d", "crate::a::c::e@f"]
    );
    let module = vec!["pool".to_string(), "loaded".to_string()];
    assert_eq!(
        absolute(&module, "super::memory::trim_heap"),
        vec!["pool", "memory", "trim_heap"]
    );
}

#[test]
fn source_files_stay_small_and_hold_no_dead_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
        let lines = before_tests.lines().count();
        if lines > 800 {
            problems.push(format!(
                "{name}: {lines} lines before its tests (at most 800)"
            ));
        }
        if text.contains("allow(dead_code)") {
            problems.push(format!("{name}: allow(dead_code)"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
