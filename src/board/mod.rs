//! The board file: one TOML file describing one gateway model and one
//! installation of it (`boards/README.md` documents every key).
//!
//! Loading is three steps, each with errors that name file, line and column:
//! parse (syntax, unknown keys, types, units), semantic checks (`check.rs`,
//! any machine), and on the gateway itself host checks (`host.rs`).

mod check;
pub mod host;
mod locate;
mod schema;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use check::Finding;
pub(crate) use host::HostFacts;
pub use schema::{
    Agent, BackendPolicy, Board, Chain, Contracts, Device, Edgex, Hardware, Identity, Ipfs, Log,
    Pricing, Resources,
};

/// Board files are small; a larger one is a wrong path, not a board.
const MAX_BOARD_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read board file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {size} bytes is too large for a board file (limit {MAX_BOARD_FILE})", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}", ProblemList(problems))]
    Invalid { problems: Vec<Problem> },
}

/// One thing wrong in a board file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key the problem is about, when known (`resources.memory`).
    pub key: Option<String>,
    pub message: String,
    hint: Option<String>,
    /// The offending source line and the span's width on it, for the caret.
    source_line: String,
    width: usize,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)?;
        if !self.source_line.is_empty() {
            let gutter = " ".repeat(self.line.to_string().len());
            write!(
                f,
                "\n{gutter} |\n{} | {}\n{gutter} | {}{}",
                self.line,
                self.source_line,
                " ".repeat(self.column - 1),
                "^".repeat(self.width.max(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = fix: {hint}")?;
        }
        Ok(())
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A parsed, checked board and the text it came from (kept so later checks
/// can still point at lines).
#[derive(Debug, Clone)]
pub struct BoardFile {
    pub path: PathBuf,
    pub board: Board,
    text: String,
}

impl BoardFile {
    /// Reads, parses and checks a board file; relative paths in it are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<BoardFile, Error> {
        let read_err = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_BOARD_FILE {
            return Err(Error::TooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(path, text)
    }

    /// Parses and checks board text; `path` names it in errors and anchors
    /// relative paths.
    pub fn parse(path: &Path, text: String) -> Result<BoardFile, Error> {
        let mut board: Board = match toml::from_str(&text) {
            Ok(b) => b,
            Err(e) => {
                let problem = problem_from_toml(path, &text, &e);
                return Err(Error::Invalid {
                    problems: vec![problem],
                });
            }
        };
        let file = BoardFile {
            path: path.to_path_buf(),
            board: board.clone(),
            text,
        };
        file.fail_on(check::check(&board))?;
        resolve_paths(&mut board, path.parent().unwrap_or(Path::new(".")));
        Ok(BoardFile { board, ..file })
    }

    /// Checks the board against the machine described by `facts`.
    pub(crate) fn check_host(&self, facts: &HostFacts) -> Result<(), Error> {
        self.fail_on(host::check_host(&self.board, facts))
    }

    fn fail_on(&self, findings: Vec<Finding>) -> Result<(), Error> {
        if findings.is_empty() {
            return Ok(());
        }
        let problems = findings
            .into_iter()
            .map(|f| {
                let span = locate::span_of(&self.text, &f.path).unwrap_or(0..0);
                let mut p = problem_at(&self.path, &self.text, span, f.message, f.hint);
                p.key = Some(f.path.to_string());
                p
            })
            .collect();
        Err(Error::Invalid { problems })
    }
}

fn problem_at(
    file: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    message: String,
    hint: Option<String>,
) -> Problem {
    let (line, column) = locate::line_col(text, span.start);
    let source_line = text.lines().nth(line - 1).unwrap_or("").to_string();
    // Underline to the end of the span or of the line, whichever comes first.
    let rest_of_line = source_line.chars().count().saturating_sub(column - 1);
    let span_chars = text
        .get(span.clone())
        .map_or(1, |s| s.lines().next().unwrap_or("").chars().count());
    Problem {
        file: file.to_path_buf(),
        line,
        column,
        key: None,
        message,
        hint,
        width: span_chars.min(rest_of_line),
        source_line,
    }
}

/// Turns a TOML/serde error into a located problem with a concrete fix.
fn problem_from_toml(file: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let span = e.span().unwrap_or(0..0);
    let message = plain_types(e.message().trim());
    let hint = hint_for(&message);
    let key = locate::path_at(text, span.start);
    Problem {
        key,
        ..problem_at(file, text, span, message, hint)
    }
}

/// serde names Rust types ("expected u32"); say what to write instead.
fn plain_types(message: &str) -> String {
    message
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace(
            "expected u64",
            "expected a whole number from 0 to 18446744073709551615",
        )
        .replace("expected a sequence", "expected an array [ ... ]")
        .replace("expected struct ", "expected a table ")
        .replace("expected socket address", "expected ip:port")
}

fn hint_for(message: &str) -> Option<String> {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field") || message.starts_with("unknown variant") {
        let (wrong, choices) = quoted.split_first()?;
        return Some(match closest(wrong, choices) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "use one of the names listed; boards/README.md explains each".into(),
        });
    }
    if message.starts_with("missing field") {
        let key = quoted.first()?;
        return Some(format!(
            "add `{key} = ...` to this table; boards/README.md explains each key"
        ));
    }
    if message.contains("invalid socket address") {
        return Some("write ip:port, e.g. \"0.0.0.0:7300\"".into());
    }
    None
}

/// The choice nearest to `wrong` by edit distance, if near enough to be a typo.
fn closest<'a>(wrong: &str, choices: &[&'a str]) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).max(1);
    choices
        .iter()
        .map(|c| (edit_distance(wrong, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent swap as one edit (a common typo).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// Paths in a board file are relative to the file, like `include` in most
/// configuration languages, so a board directory can be moved as a whole.
fn resolve_paths(board: &mut Board, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut board.identity.key_file);
    if let Some(p) = board.identity.passphrase_file.as_mut() {
        resolve(p);
    }
    resolve(&mut board.agent.data_dir);
    if let Some(p) = board
        .edgex
        .as_mut()
        .and_then(|e| e.credentials_file.as_mut())
    {
        resolve(p);
    }
}

#[cfg(test)]
mod tests;
