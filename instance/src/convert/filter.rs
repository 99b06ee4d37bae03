//! canal's filters: the table filter (include and exclude regex lists matched against lowercase `schema.table`)
//! and the field filter (which columns of a table are delivered).
//!
//! Table filter semantics follow canal's AviaterRegexFilter: the list is split on commas that are outside `{}`,
//! `[]` and `()` (a backslash escapes the next character), each piece must match the whole name, matching ignores
//! case, and an empty list includes everything and excludes nothing. canal compiles patterns with Perl 5 syntax;
//! the Rust regex engine has no look-around, back-references, atomic groups or possessive quantifiers, and such
//! patterns are rejected with an error that says so instead of being misread. Both lists are parsed by canal-api, so
//! the operator refuses exactly what the instance would.

use std::collections::{BTreeMap, BTreeSet};

use canal_api::validate::{field_list, table_regexes};
use regex::RegexSet;

use crate::error::Result;

/// A compiled include/exclude pair.
#[derive(Clone, Debug)]
pub struct TableFilter {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl TableFilter {
    pub fn new(include: &str, exclude: &str) -> Result<Self> {
        Ok(Self {
            include: table_regexes("filter.include", include)?,
            exclude: table_regexes("filter.exclude", exclude)?,
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

/// Which columns of which tables are delivered: canal's `filter.field` and `filter.black.field`.
#[derive(Clone, Debug, Default)]
pub struct FieldFilter {
    /// Upper-cased `SCHEMA.TABLE` → upper-cased column names to keep.
    include: BTreeMap<String, BTreeSet<String>>,
    /// Upper-cased `SCHEMA.TABLE` → upper-cased column names to drop.
    exclude: BTreeMap<String, BTreeSet<String>>,
}

impl FieldFilter {
    pub fn new(include: &str, exclude: &str) -> Result<Self> {
        Ok(Self {
            include: field_list("filter.includeFields", include)?,
            exclude: field_list("filter.excludeFields", exclude)?,
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
