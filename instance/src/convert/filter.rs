//! canal's filters: the table filter (include and exclude regex lists matched against lowercase `schema.table`)
//! and the field filter (which columns of a table are delivered).
//!
//! Table filter semantics follow canal's AviaterRegexFilter: the list is split on commas that are outside `{}`,
//! `[]` and `()` (a backslash escapes the next character), each piece must match the whole name, matching ignores
//! case, and an empty list includes everything and excludes nothing. canal compiles patterns with Perl 5 syntax;
//! the Rust regex engine has no look-around, back-references, atomic groups or possessive quantifiers, and such
//! patterns are rejected with an error that says so instead of being misread.

use std::collections::{HashMap, HashSet};

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
        if let Some(construct) = perl_only(piece) {
            return Err(Error::FilterRegex {
                field: field.into(),
                pattern: piece.clone(),
                message: format!(
                    "{construct} is Perl regex syntax that canal accepts but canal-rs does not; list the tables to \
                     include or exclude instead"
                ),
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

/// The first Perl-only construct in `pattern`, named for the error message.
fn perl_only(pattern: &str) -> Option<&'static str> {
    const CONSTRUCTS: [(&str, &str); 7] = [
        ("(?=", "look-ahead `(?=`"),
        ("(?!", "negative look-ahead `(?!`"),
        ("(?<=", "look-behind `(?<=`"),
        ("(?<!", "negative look-behind `(?<!`"),
        ("(?>", "an atomic group `(?>`"),
        ("(?(", "a conditional `(?(`"),
        ("\\k<", "a named back-reference `\\k<`"),
    ];
    if let Some((_, name)) = CONSTRUCTS.iter().find(|(token, _)| pattern.contains(token)) {
        return Some(name);
    }
    let bytes = pattern.as_bytes();
    let mut escaped = false;
    for (i, b) in bytes.iter().enumerate() {
        if escaped {
            if (b'1'..=b'9').contains(b) {
                return Some("a back-reference such as `\\1`");
            }
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'*' | b'+' | b'?' | b'}' if bytes.get(i + 1) == Some(&b'+') && i > 0 => {
                return Some("a possessive quantifier such as `*+`");
            }
            _ => {}
        }
    }
    None
}

/// Which columns of which tables are delivered: canal's `filter.field` and `filter.black.field`.
#[derive(Clone, Debug, Default)]
pub struct FieldFilter {
    /// Upper-cased `SCHEMA.TABLE` → upper-cased column names to keep.
    include: HashMap<String, HashSet<String>>,
    /// Upper-cased `SCHEMA.TABLE` → upper-cased column names to drop.
    exclude: HashMap<String, HashSet<String>>,
}

impl FieldFilter {
    pub fn new(include: &str, exclude: &str) -> Result<Self> {
        Ok(Self {
            include: parse_fields("filter.includeFields", include)?,
            exclude: parse_fields("filter.excludeFields", exclude)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// For each of `columns` (names, in order), whether it is delivered; `None` when all are.
    pub fn mask(&self, schema: &str, table: &str, columns: &[&str]) -> Option<Vec<bool>> {
        let key = format!("{schema}.{table}").to_uppercase();
        let include = self.include.get(&key);
        let exclude = self.exclude.get(&key);
        if include.is_none() && exclude.is_none() {
            return None;
        }
        Some(
            columns
                .iter()
                .map(|name| {
                    let name = name.to_uppercase();
                    include.is_none_or(|keep| keep.contains(&name)) && !exclude.is_some_and(|drop| drop.contains(&name))
                })
                .collect(),
        )
    }
}

/// Parses `schema.table:col1/col2,schema.t2:c`.
fn parse_fields(field: &str, list: &str) -> Result<HashMap<String, HashSet<String>>> {
    let mut tables = HashMap::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let invalid = |message: &str| Error::ConfigInvalid {
            field: field.into(),
            message: format!("`{item}`: {message}; the format is schema.table:col1/col2,schema.table2:col"),
        };
        let (table, columns) = item
            .split_once(':')
            .ok_or_else(|| invalid("no `:` before the columns"))?;
        if !table.contains('.') {
            return Err(invalid("the table must be written schema.table"));
        }
        let columns: HashSet<String> = columns
            .split('/')
            .map(|c| c.trim().to_uppercase())
            .filter(|c| !c.is_empty())
            .collect();
        if columns.is_empty() {
            return Err(invalid("no columns listed"));
        }
        tables
            .entry(table.trim().to_uppercase())
            .or_insert_with(HashSet::new)
            .extend(columns);
    }
    Ok(tables)
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
                .contains("look-ahead")
        );
        assert!(TableFilter::new("a(", "").is_err());
        for (pattern, named) in [
            ("shop\\.(?>a|b)", "atomic group"),
            ("shop\\.(a)\\1", "back-reference"),
            ("shop\\.a*+", "possessive"),
            ("shop\\.(?<=x)a", "look-behind"),
        ] {
            let message = TableFilter::new(pattern, "").unwrap_err().to_string();
            assert!(
                message.contains(named) && message.contains("Perl"),
                "{pattern}: {message}"
            );
        }
        assert!(
            TableFilter::new("shop\\.a+,b\\.c{1,2}", "").is_ok(),
            "ordinary quantifiers pass"
        );
    }

    #[test]
    fn field_filter_keeps_listed_columns_and_drops_excluded_ones() {
        let f = FieldFilter::new("shop.orders:id/Total, shop.users:id", "SHOP.USERS:password").unwrap();
        assert_eq!(
            f.mask("shop", "orders", &["id", "total", "note"]),
            Some(vec![true, true, false])
        );
        assert_eq!(
            f.mask("Shop", "Users", &["id", "password", "name"]),
            Some(vec![true, false, false])
        );
        assert_eq!(
            f.mask("shop", "other", &["id"]),
            None,
            "unlisted tables keep every column"
        );
        for bad in ["shop.orders", "orders:id", "shop.orders:"] {
            let message = FieldFilter::new(bad, "").unwrap_err().to_string();
            assert!(
                message.contains("filter.includeFields") && message.contains("format"),
                "{message}"
            );
        }
    }
}
