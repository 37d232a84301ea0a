//! Source policy checks that compilers and linters do not make.
//!
//! - every `.rs` file starts with a `//!` doc comment (after blank lines, if any);
//! - no placeholder macros (`todo`, `unimplemented`) left in code;
//! - no two examples of the workspace share a name (their binaries would overwrite each other);
//! - every `unsafe {` block has a `// SAFETY:` comment on one of the three lines above it, on its
//!   own line, or in the comment block directly above; and so does every `unsafe impl`.

use std::path::{Path, PathBuf};

pub(crate) fn run_cli() -> Result<bool, String> {
    let problems = check(&crate::util::root());
    for p in &problems {
        println!("{p}");
    }
    println!(
        "tidy: {} passed, {} failed",
        usize::from(problems.is_empty()),
        usize::from(!problems.is_empty())
    );
    Ok(problems.is_empty())
}

pub(crate) fn check(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    collect(root, &mut files);
    files.sort();
    let mut problems = Vec::new();
    // Example names must be unique across the workspace: cargo writes every example to the
    // same target/<profile>/examples/ directory, so one would overwrite the other.
    let mut examples: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.parent().is_some_and(|p| p.ends_with("examples")))
        .filter_map(|f| {
            let name = f.file_stem()?.to_string_lossy().into_owned();
            Some((
                name,
                f.strip_prefix(root).unwrap_or(f).display().to_string(),
            ))
        })
        .collect();
    examples.sort();
    for pair in examples.windows(2) {
        if pair[0].0 == pair[1].0 {
            problems.push(format!(
                "{} and {}: two examples with one name overwrite each other's binary",
                pair[0].1, pair[1].1
            ));
        }
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        problems.extend(check_file(&rel, &text));
    }
    problems
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            collect(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn check_file(rel: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.starts_with("//!") {
        problems.push(format!("{rel}: does not start with a //! doc comment"));
    }
    let lines: Vec<&str> = text.lines().collect();
    // Built at run time so this file does not trip its own check.
    let stubs = [format!("{}!(", "todo"), format!("{}!(", "unimplemented")];
    let unsafe_block = format!("{} {{", "unsafe");
    let unsafe_impl = format!("{} impl", "unsafe");
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if stubs.iter().any(|s| code.contains(s.as_str())) {
            problems.push(format!("{rel}:{}: placeholder left in code", i + 1));
        }
        let t = code.trim_start();
        let needs_safety = t.contains(unsafe_block.as_str()) || t.starts_with(unsafe_impl.as_str());
        if needs_safety {
            let from = i.saturating_sub(3);
            let near = lines[from..=i].iter().any(|l| l.contains("SAFETY:"));
            // ...or anywhere in the comment block (and attributes) directly above.
            let block = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[")
                })
                .any(|l| l.contains("SAFETY:"));
            let documented = near || block;
            if !documented {
                problems.push(format!(
                    "{rel}:{}: unsafe without a // SAFETY: comment just above",
                    i + 1
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_safety() {
        assert!(check_file("a.rs", "//! doc\nfn f() {}\n").is_empty());
        assert_eq!(check_file("a.rs", "fn f() {}\n").len(), 1);
        let bad = "//! doc\nfn f() {\n    unsafe { g() }\n}\n";
        assert_eq!(check_file("a.rs", bad).len(), 1);
        let good =
            "//! doc\nfn f() {\n    // SAFETY: g has no preconditions.\n    unsafe { g() }\n}\n";
        assert!(check_file("a.rs", good).is_empty());
        let stub = format!("//! doc\nfn f() {{ {}!() }}\n", "todo");
        assert_eq!(check_file("a.rs", &stub).len(), 1);
    }
}
