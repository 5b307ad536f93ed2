//! Where in the file a key is: semantic checks run on typed values, which
//! have lost their positions, so errors find them again by key path in a
//! spanned parse of the same text.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// `edgex.devices[2].name` as a list of steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn key(&self, k: &'static str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k));
        p
    }

    pub(crate) fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

/// Builds a path from dotted literals: `key_path!("chain", "rpc_urls")`.
macro_rules! key_path {
    ($($k:literal),*) => {
        $crate::board::locate::KeyPath(vec![$($crate::board::locate::Seg::Key($k)),*])
    };
}
pub(crate) use key_path;

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The span of the value at `path`, or of its deepest ancestor that exists
/// (a missing key is reported where it should have been written).
pub(crate) fn span_of(text: &str, path: &KeyPath) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut best = None;
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    for seg in &path.0 {
        let next = match (value, seg) {
            (None, Seg::Key(k)) => root.get_ref().get(*k),
            (Some(v), Seg::Key(k)) => v.get_ref().get(*k),
            (Some(v), Seg::Index(i)) => v.get_ref().get(*i),
            (None, Seg::Index(_)) => None,
        };
        match next {
            Some(v) => {
                best = Some(v.span());
                value = Some(v);
            }
            None => break,
        }
    }
    best
}

/// The key path of the innermost key or value whose span holds `offset`:
/// names the key for errors that come from the TOML layer with a position
/// only. A whole-tree search, because a `[table]`'s span covers its header,
/// not its body.
pub(crate) fn path_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    visit_table(root.get_ref(), String::new(), offset, &mut best);
    best.map(|(_, path)| path)
}

type Best = Option<(usize, String)>;

fn consider(span: Range<usize>, path: &str, offset: usize, best: &mut Best) {
    let holds = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if holds && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
        *best = Some((span.len(), path.to_string()));
    }
}

fn visit_table(table: &DeTable<'_>, prefix: String, offset: usize, best: &mut Best) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(key.span(), &path, offset, best);
        visit_value(value, path, offset, best);
    }
}

fn visit_value(value: &toml::Spanned<DeValue<'_>>, path: String, offset: usize, best: &mut Best) {
    consider(value.span(), &path, offset, best);
    if let Some(t) = value.get_ref().as_table() {
        visit_table(t, path, offset, best);
    } else if let Some(items) = value.get_ref().as_array() {
        for (i, item) in items.iter().enumerate() {
            visit_value(item, format!("{path}[{i}]"), offset, best);
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "title = \"x\"\n[chain]\nrpc_urls = [\"a\", \"b\"]\n\n[[dev]]\nname = \"p\"\n[[dev]]\nname = \"q\"\n";

    fn at(path: &KeyPath) -> (usize, usize) {
        let span = span_of(DOC, path).expect("path should resolve");
        line_col(DOC, span.start)
    }

    #[test]
    fn finds_values_in_tables_and_arrays() {
        assert_eq!(at(&key_path!("title")), (1, 9));
        assert_eq!(at(&key_path!("chain", "rpc_urls").index(1)), (3, 18));
        assert_eq!(at(&key_path!("dev").index(1).key("name")), (8, 8));
    }

    #[test]
    fn missing_keys_fall_back_to_their_table() {
        let table = at(&key_path!("chain"));
        assert_eq!(at(&key_path!("chain", "chain_id")), table);
        assert!(span_of(DOC, &key_path!("nope")).is_none());
    }

    #[test]
    fn offsets_map_back_to_key_paths() {
        let at = |needle: &str| path_at(DOC, DOC.find(needle).unwrap());
        assert_eq!(at("\"x\"").as_deref(), Some("title"));
        assert_eq!(at("\"b\"").as_deref(), Some("chain.rpc_urls[1]"));
        assert_eq!(at("\"q\"").as_deref(), Some("dev[1].name"));
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        assert_eq!(line_col("é = 1\nab", 8), (2, 2));
        assert_eq!(line_col("abc", 99), (1, 4));
    }

    #[test]
    fn paths_display_like_toml_keys() {
        assert_eq!(
            key_path!("edgex", "devices")
                .index(2)
                .key("name")
                .to_string(),
            "edgex.devices[2].name"
        );
    }
}
