//! canal's table filter: include and exclude regex lists matched against lowercase `schema.table`.
//!
//! Semantics follow canal's AviaterRegexFilter: the list is split on commas that are outside `{}`, `[]` and `()`
//! (a backslash escapes the next character), each piece must match the whole name, matching ignores case, and an
//! empty list includes everything and excludes nothing. The Rust regex engine has no look-around or
//! back-references; such patterns are rejected with an error instead of being misread.

use regex::RegexSet;

use crate::error::{Error, Result};

/// A compiled include/exclude pair.
#[derive(Clone, Debug)]
pub struct TableFilter {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl TableFilter {
    pub fn new(include: &str, exclude: &str) -> Result<Self> {
        Ok(Self {
            include: compile("filter.include", include)?,
            exclude: compile("filter.exclude", exclude)?,
        })
    }

    /// Whether changes of `schema.table` are delivered.
    pub fn accepts(&self, schema: &str, table: &str) -> bool {
        if schema.is_empty() && table.is_empty() {
            return true;
        }
        let name = format!("{schema}.{table}").to_lowercase();
        let included = self.include.as_ref().is_none_or(|set| set.is_match(&name));
        let excluded = self.exclude.as_ref().is_some_and(|set| set.is_match(&name));
        included && !excluded
    }
}

/// Splits canal's comma-separated list; `None` for an empty list.
fn compile(field: &str, list: &str) -> Result<Option<RegexSet>> {
    let pieces = split(list);
    if pieces.is_empty() {
        return Ok(None);
    }
    for piece in &pieces {
        if piece.contains("(?=") || piece.contains("(?!") || piece.contains("(?<=") || piece.contains("(?<!") {
            return Err(Error::FilterRegex {
                field: field.into(),
                pattern: piece.clone(),
                message: "look-around is not supported; list the tables to include or exclude instead".into(),
            });
        }
    }
    RegexSet::new(pieces.iter().map(|p| format!("(?is)^(?:{p})$")))
        .map(Some)
        .map_err(|e| Error::FilterRegex {
            field: field.into(),
            pattern: list.into(),
            message: e.to_string(),
        })
}

fn split(list: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '{' | '[' | '(' => {
                depth += 1;
                current.push(c);
            }
            '}' | ']' | ')' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth <= 0 => pieces.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    pieces.push(current);
    pieces
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canal_default_include_and_exclude() {
        let f = TableFilter::new(".*\\..*", "mysql\\..*").unwrap();
        assert!(f.accepts("shop", "orders"));
        assert!(!f.accepts("mysql", "user"));
        assert!(!f.accepts("MySQL", "User"), "matching ignores case");
    }

    #[test]
    fn list_is_split_outside_brackets_and_matches_whole_names() {
        let f = TableFilter::new("shop\\.orders_{0,1}\\d{1,2},test\\..*", "").unwrap();
        assert!(f.accepts("shop", "orders_12"));
        assert!(f.accepts("shop", "orders1"));
        assert!(f.accepts("test", "anything"));
        assert!(!f.accepts("shop", "orders_123"));
        assert!(!f.accepts("shopx", "orders_1"), "anchored: no partial match");
    }

    #[test]
    fn empty_lists_include_everything_and_exclude_nothing() {
        let f = TableFilter::new("", "").unwrap();
        assert!(f.accepts("a", "b"));
    }

    #[test]
    fn unsupported_and_invalid_patterns_are_errors() {
        assert!(
            TableFilter::new("(?!x).*", "")
                .unwrap_err()
                .to_string()
                .contains("look-around")
        );
        assert!(TableFilter::new("a(", "").is_err());
    }
}
