//! The crate's layers, as ARCHITECTURE.md states them: lower modules never
//! name higher ones. Read from the source, so a new `use` that crosses a
//! layer fails here with its file and line, not in a review.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Each module (a file or a directory under `src/`) and the top-level
/// modules it must not name (`crate::NAME`).
const FORBIDDEN: &[(&str, &[&str])] = &[
    // The mechanisms: no configuration, no market, no roles, no edgex.
    (
        "units.rs",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime",
        ],
    ),
    (
        "logger.rs",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime",
        ],
    ),
    (
        "store",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime",
        ],
    ),
    (
        "tcp_server.rs",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime",
        ],
    ),
    (
        "http_agent.rs",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime",
        ],
    ),
    (
        "chain",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime", "channel",
            "p2p",
        ],
    ),
    (
        "channel",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime", "p2p",
        ],
    ),
    (
        "p2p",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime", "channel",
        ],
    ),
    (
        "ipfs",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "runtime", "chain",
        ],
    ),
    (
        "runtime",
        &[
            "board", "control", "market", "agent", "buyer", "cli", "edgex", "chain", "channel",
            "p2p",
        ],
    ),
    // EdgeX reads its part of the board (`from_board`) and nothing above.
    (
        "edgex",
        &[
            "control", "market", "agent", "buyer", "cli", "runtime", "chain", "channel", "p2p",
        ],
    ),
    // The paper's flows: no roles.
    ("market", &["agent", "buyer", "cli"]),
    ("board", &["control", "agent", "buyer", "cli"]),
    // The operator's commands: the board's vocabulary, no chain, no roles,
    // nothing the market or the sandbox owns.
    (
        "control",
        &[
            "market", "agent", "buyer", "cli", "runtime", "chain", "channel", "p2p", "ipfs",
            "edgex",
        ],
    ),
    // The roles never name each other; only the CLI names them all.
    ("agent", &["buyer", "fleet", "cli"]),
    ("buyer", &["agent", "fleet", "cli"]),
    ("fleet", &["agent", "buyer", "cli"]),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every `crate::NAME` in `text` that `forbidden` lists, with its line.
fn crossings(text: &str, forbidden: &[&str]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if forbidden.contains(&name.as_str()) {
                found.push((n + 1, name));
            }
        }
    }
    found
}

#[test]
fn lower_modules_never_name_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let root = src.join(module);
        assert!(
            root.exists(),
            "{} is gone: update this test",
            root.display()
        );
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (line, name) in crossings(&text, forbidden) {
                problems.push(format!(
                    "{}:{line}: `{module}` names `crate::{name}`",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_a_crossing() {
    let text = "use crate::units::Edg;\nuse crate::board::Board; // config\n// crate::agent in a comment\nlet x = crate::agent::f();";
    assert_eq!(
        crossings(text, &["board", "agent"]),
        vec![(2, "board".to_string()), (4, "agent".to_string())]
    );
}
