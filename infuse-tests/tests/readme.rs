//! The README's Rust snippets are complete programs, each kept identical to an example
//! (`examples/readme_*.rs`) that `cargo test` compiles: what readers see on GitHub is
//! exactly what is built, with no hidden lines.

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

const EXAMPLES: [(&str, &str); 13] = [
    (
        "readme_guard",
        include_str!("../../examples/readme_guard.rs"),
    ),
    ("readme_boot", include_str!("../../examples/readme_boot.rs")),
    (
        "readme_backpressure",
        include_str!("../../examples/readme_backpressure.rs"),
    ),
    (
        "readme_manual",
        include_str!("../../examples/readme_manual.rs"),
    ),
    (
        "readme_control",
        include_str!("../../examples/readme_control.rs"),
    ),
    (
        "readme_listeners",
        include_str!("../../examples/readme_listeners.rs"),
    ),
    (
        "readme_metrics",
        include_str!("../../examples/readme_metrics.rs"),
    ),
    ("readme_skip", include_str!("../../examples/readme_skip.rs")),
    (
        "readme_reqwest",
        include_str!("../../examples/readme_reqwest.rs"),
    ),
    ("readme_axum", include_str!("../../examples/readme_axum.rs")),
    ("readme_tower", include_str!("../examples/readme_tower.rs")),
    ("readme_tonic", include_str!("../examples/readme_tonic.rs")),
    (
        "readme_fleet",
        include_str!("../../examples/readme_fleet.rs"),
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
            "the README's snippet differs from examples/{name}.rs"
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
