//! The README's Rust snippets are complete programs, each kept identical to an example
//! (`examples/readme_*.rs`, `examples/integrations/readme_*.rs`) that `cargo test`
//! compiles: what readers see on GitHub is exactly what is built, with no hidden lines.
//! Its install section names every cargo feature of `infuse`, and the version to ask for.
//! (The guide's examples are doctests of the `infuse` crate.)

const README: &str = include_str!("../../README.md");

/// The README's ```rust blocks, in order.
fn rust_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in README.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The README's snippets, in order: the attribute, fleet mode, the client stack.
const EXAMPLES: [(&str, &str); 3] = [
    (
        "examples/readme_guard.rs",
        include_str!("../../examples/readme_guard.rs"),
    ),
    (
        "examples/readme_fleet.rs",
        include_str!("../../examples/readme_fleet.rs"),
    ),
    (
        "examples/integrations/readme_reqwest.rs",
        include_str!("../../examples/integrations/readme_reqwest.rs"),
    ),
];

#[test]
fn every_rust_snippet_is_an_example_verbatim() {
    let blocks = rust_blocks();
    assert_eq!(
        blocks.len(),
        EXAMPLES.len(),
        "the README has {} rust blocks; keep one example per block",
        blocks.len()
    );
    for (block, (name, example)) in blocks.iter().zip(EXAMPLES) {
        assert_eq!(
            block.trim(),
            example.trim(),
            "the README's snippet differs from {name}"
        );
    }
}

#[test]
fn no_snippet_has_hidden_lines() {
    for block in rust_blocks() {
        for line in block.lines() {
            assert!(
                !(line.trim_start().starts_with("# ") || line.trim() == "#"),
                "a rustdoc hidden line shows on GitHub: {line:?}"
            );
        }
    }
}

const INFUSE_MANIFEST: &str = include_str!("../../infuse/Cargo.toml");

/// The feature names of `infuse/Cargo.toml`'s `[features]` table, `default` aside.
fn infuse_features() -> Vec<&'static str> {
    INFUSE_MANIFEST
        .lines()
        .skip_while(|line| line.trim() != "[features]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#') && *name != "default")
        .collect()
}

#[test]
fn the_feature_table_names_every_feature() {
    let features = infuse_features();
    assert!(features.contains(&"tls"), "read no features: {features:?}");
    for feature in features {
        assert!(
            README.contains(&format!("| `{feature}` |")),
            "the README's feature table lacks `{feature}`"
        );
    }
}

#[test]
fn the_dependency_line_asks_for_this_version() {
    let version = env!("CARGO_PKG_VERSION"); // the workspace's, which infuse shares
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    let wanted = if major == "0" {
        format!("infuse = \"0.{minor}\"")
    } else {
        format!("infuse = \"{major}\"")
    };
    assert!(
        README.lines().any(|line| line == wanted),
        "the README's [dependencies] should say {wanted}"
    );
}
