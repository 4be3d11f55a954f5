//! The README and the guides in `docs/` are read raw on a forge as often as rendered by rustdoc:
//! no doctest scaffolding (`# ` lines rustdoc hides) may show in their Rust blocks, every
//! guide the README links to exists, and the README stays short enough to read in one sitting.
//! (That the examples compile is the doctests' job: `src/lib.rs` includes every one of these
//! files.)

use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 350;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn guides() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    pages
}

/// The README and every guide: the Markdown a reader sees raw.
fn readme_and_guides() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    files.extend(guides());
    files
}

/// Lines inside fenced Rust blocks (```` ```rust ````, ```` ```rust,no_run ````, ...) that
/// rustdoc would hide: a `#` alone or followed by a space.
fn hidden_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut in_rust = false;
    let mut found = Vec::new();
    for (number, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_rust = !in_rust && (info.is_empty() || info.starts_with("rust"));
            continue;
        }
        if in_rust && (trimmed == "#" || trimmed.starts_with("# ")) {
            found.push((number + 1, line.to_owned()));
        }
    }
    found
}

#[test]
fn no_rust_block_hides_lines_with_a_hash() {
    let files = readme_and_guides();
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        for (line, content) in hidden_lines(&text) {
            offenders.push(format!("{}:{line}: {content}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "doctest scaffolding shows in the raw Markdown:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_checker_sees_a_hidden_line() {
    let markdown = "text\n# a heading is fine\n```rust\nlet a = 1;\n# fn main() {}\n```\n```toml\n# a comment is fine\n```\n";
    assert_eq!(hidden_lines(markdown), vec![(5, "# fn main() {}".to_owned())]);
}

#[test]
fn the_readme_is_under_350_lines() {
    let lines =
        std::fs::read_to_string(root().join("README.md")).expect("readable").lines().count();
    assert!(lines < README_MAX_LINES, "README.md has {lines} lines; move detail to docs/");
}

#[test]
fn every_guide_is_linked_from_the_readme_and_compiled_as_a_doctest() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("readable");
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("readable");
    for page in guides() {
        let name = page.file_name().unwrap().to_str().unwrap();
        assert!(readme.contains(&format!("(docs/{name})")), "README.md does not link docs/{name}");
        assert!(
            lib.contains(&format!("include_str!(\"../docs/{name}\")")),
            "src/lib.rs does not compile docs/{name}"
        );
    }
}

#[test]
fn every_relative_link_in_the_readme_and_guides_exists() {
    let files = readme_and_guides();
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let base = file.parent().unwrap();
        for target in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let target = target.split('#').next().unwrap();
            if !base.join(target).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to files that do not exist:\n{}", broken.join("\n"));
}
