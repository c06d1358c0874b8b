//! The architecture document against the source: the arrows between `emu`'s top-level modules
//! (who names `crate::other` outside test code) must be acyclic, `machine` must not use
//! `control`, the graph drawn in `docs/ARCHITECTURE.md` must be the one the source has, no
//! production source file is over 800 lines, and nothing points at notes outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest a production source file may be, in lines.
const MAX_LINES: usize = 800;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Whether a file is test code only: `tests.rs`, test support, or under a `tests/` folder.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || name == "test_support.rs"
        || name == "testing.rs"
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// The code of a file: without its trailing `#[cfg(test)] mod tests { ... }` block and without
/// comment lines (a doc link is not a dependency).
fn production_text(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("source file is readable");
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `emu`'s top-level modules and, for each, the other top-level modules it uses.
fn emu_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo_root().join("emu/src");
    let mut modules = BTreeSet::new();
    for entry in fs::read_dir(&src).expect("emu/src").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs").to_string();
        if module != "lib" && module != "testing" && module != "harness" {
            modules.insert(module);
        }
    }
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        let mut uses = BTreeSet::new();
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let text = production_text(file);
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if &name != module && modules.contains(&name) {
                    uses.insert(name);
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

fn render(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut out = String::new();
    for (module, uses) in graph {
        let list: Vec<&str> = uses.iter().map(String::as_str).collect();
        out.push_str(&format!("{module:<11} -> {}\n", list.join(", ")).replace(" -> \n", " ->\n"));
    }
    out
}

/// A cycle through `start`, if there is one, as the list of modules on it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn emu_modules_have_no_cycles_and_machine_does_not_use_control() {
    let graph = emu_module_graph();
    let machine = graph.get("machine").expect("emu has a machine module");
    assert!(
        !machine.contains("control"),
        "emu::machine uses emu::control; the arrow must go control -> machine only"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "cycles between emu's modules:\n{}\ngraph:\n{}",
        cycles.join("\n"),
        render(&graph)
    );
}

#[test]
fn architecture_document_draws_the_module_graph_the_source_has() {
    let doc = fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md exists");
    let marker = "Modules and the arrows between them";
    let after = &doc[doc.find(marker).expect("the document has the module graph")..];
    let start = after.find("```\n").expect("graph block opens") + 4;
    let end = start + after[start..].find("```").expect("graph block closes");
    let drawn = &after[start..end];
    let actual = render(&emu_module_graph());
    assert_eq!(
        drawn, actual,
        "docs/ARCHITECTURE.md's module graph is out of date; the source has:\n{actual}"
    );
}

#[test]
fn no_production_source_file_is_over_800_lines() {
    let root = repo_root();
    let mut files = Vec::new();
    for krate in ["app", "emu", "display", "audio", "usb", "tests/src"] {
        rust_files(&root.join(krate), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f) && !f.components().any(|c| c.as_os_str() == "fuzz"))
        .filter_map(|f| {
            let lines = fs::read_to_string(f).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn nothing_points_at_notes_outside_the_repository() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    for extra in ["README.md", "docs/ARCHITECTURE.md", "docs/nested-kvm.md"] {
        files.push(root.join(extra));
    }
    let needle = ["shared", "/"].concat();
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            fs::read_to_string(f)
                .map(|t| t.contains(&format!("`{needle}")) || t.contains(&format!("../{needle}")))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "files that point at shared/ notes: {offenders:?}"
    );
}
