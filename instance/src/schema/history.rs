//! Per-table schema history, for binlogs whose table maps do not describe the columns.
//!
//! With `binlog_row_metadata=MINIMAL` (or NO_LOG, or MySQL 5.7) a TABLE_MAP event carries column types but no
//! names, primary key or ENUM/SET members, and with NO_LOG not even signedness or character sets. canal fills the
//! gap from a table-meta database; when that drifts from the binlog, users get "column size is not match" or, worse,
//! values under the wrong names. canal-rs keeps, per table, the list of definitions it has had, each valid from the
//! binlog position of the DDL that produced it:
//!
//! - the history starts from `information_schema` when it is empty (the *seed*, valid up to where the binlog ended
//!   when it was read, and used for earlier events too, as nothing better is known);
//! - every DDL read from the binlog adds a version at its position (replaying a DDL already recorded adds nothing),
//!   evolving the version in force just before it; so a CREATE TABLE read before the seed's position defines the
//!   table from there on, and the ALTERs after it evolve it, while an ALTER of a table whose CREATE was not read is
//!   left to the seed, which already includes it;
//! - a row event decodes with the version in force at its position, so events from before an ALTER keep the old
//!   columns even when they are replayed after it;
//! - a DDL the parser cannot follow marks the table unknown from there on, rather than guessing.
//!
//! The history is persisted next to the cursors (the cursor store), so a restart or a new active instance keeps
//! it. A definition that disagrees with the table map (a different column count or type) is never applied. What each
//! DDL statement does to the versions is worked out in [`super::evolve`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::column_type::{Dialect, column_type};
use super::evolve::{is_byte_string, quoted_members};
use crate::binlog::position::BinlogPosition;

/// One column as a DDL statement or `information_schema` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnDef {
    pub name: String,
    /// The type as MySQL prints it, lowercase: `int(10) unsigned`, `varchar(32)`, `enum('a','b')`.
    #[serde(rename = "type")]
    pub type_text: String,
    #[serde(default)]
    pub primary_key: bool,
    /// Character set name of a character column (`binary` for byte strings), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    /// ENUM or SET members, in definition order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl ColumnDef {
    /// A column as `information_schema.COLUMNS` describes it (`COLUMN_TYPE`, `COLUMN_KEY = 'PRI'`,
    /// `CHARACTER_SET_NAME`).
    pub fn from_information_schema(
        name: String,
        column_type: &str,
        primary_key: bool,
        charset: Option<String>,
    ) -> Self {
        let type_text = column_type.to_ascii_lowercase();
        let mut def = ColumnDef {
            members: quoted_members(&type_text),
            name,
            type_text,
            primary_key,
            charset: charset.map(|c| c.to_ascii_lowercase()),
        };
        if is_byte_string(&def) {
            def.charset = Some("binary".into());
        }
        def
    }

    pub fn unsigned(&self) -> bool {
        self.type_text.split_whitespace().any(|w| w == "unsigned")
    }

    /// The type's leading keyword: `int`, `varchar`, `enum`.
    pub fn base_type(&self) -> &str {
        let end = self
            .type_text
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(self.type_text.len());
        &self.type_text[..end]
    }
}

/// One definition of a table, valid from `since` until the next version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub since: BinlogPosition,
    /// `None` once the table is dropped, renamed away, or changed by a DDL that could not be followed.
    pub columns: Option<Vec<ColumnDef>>,
    /// Read from `information_schema` (the seed) rather than worked out from a DDL in the binlog.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed: bool,
}

/// The versions of one table, oldest first; the unit of persistence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableHistory {
    pub schema: String,
    pub table: String,
    pub versions: Vec<Version>,
}

/// `(schema, table)`.
pub(super) type Key = (String, String);

/// What one applied DDL did to the history, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The table has a new definition from this position on.
    Defined { schema: String, table: String },
    /// The table is gone (dropped or renamed away) from this position on.
    Removed { schema: String, table: String },
    /// The statement touches the table but could not be followed; its columns are unknown from here on.
    Unknown {
        schema: String,
        table: String,
        reason: String,
    },
}

/// The schema history of one destination.
#[derive(Debug, Default)]
pub struct SchemaHistory {
    pub(super) tables: BTreeMap<Key, Vec<Version>>,
    /// Tables changed since the last [`SchemaHistory::take_changed`]: what must be persisted.
    changed: BTreeSet<Key>,
}

/// Orders positions the way the binlog does: file, then offset (canal-rs compares journal names as text everywhere).
fn precedes_or_equals(a: &BinlogPosition, b: &BinlogPosition) -> bool {
    (&a.journal_name, a.position) <= (&b.journal_name, b.position)
}

impl SchemaHistory {
    /// A history restored from persisted tables.
    pub fn from_tables(tables: Vec<TableHistory>) -> Self {
        let tables = tables.into_iter().map(|t| ((t.schema, t.table), t.versions)).collect();
        Self {
            tables,
            changed: BTreeSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Starts the history of every table not yet known with its current definition, read at `at`.
    pub fn seed(&mut self, definitions: Vec<(String, String, Vec<ColumnDef>)>, at: &BinlogPosition) {
        for (schema, table, columns) in definitions {
            let key = (schema, table);
            if self.tables.contains_key(&key) {
                continue;
            }
            self.tables.insert(
                key.clone(),
                vec![Version {
                    since: at.clone(),
                    columns: Some(columns),
                    seed: true,
                }],
            );
            self.changed.insert(key);
        }
    }

    /// The columns of `schema.table` for an event at `at`: the version in force there, or, when `at` precedes them
    /// all, the seed (it describes the table as best known for earlier events), else the oldest version.
    pub fn columns_at(&self, schema: &str, table: &str, at: &BinlogPosition) -> Option<&[ColumnDef]> {
        let versions = self.tables.get(&(schema.to_string(), table.to_string()))?;
        let version = versions
            .iter()
            .rev()
            .find(|v| precedes_or_equals(&v.since, at))
            .or_else(|| versions.iter().find(|v| v.seed))
            .or_else(|| versions.first())?;
        version.columns.as_deref()
    }

    /// When the version in force at `at` is the seed and a definition worked out from the binlog's DDL precedes it,
    /// and the two disagree (other columns, or types of another family): the column names of each, the binlog's
    /// first. Reading DDL from before the seed must arrive where `information_schema` stood.
    pub fn seed_disagreement(
        &self,
        schema: &str,
        table: &str,
        at: &BinlogPosition,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let versions = self.tables.get(&(schema.to_string(), table.to_string()))?;
        let index = versions.iter().rposition(|v| precedes_or_equals(&v.since, at))?;
        let seed = versions.get(index).filter(|v| v.seed)?.columns.as_ref()?;
        let derived = versions.get(index.checked_sub(1)?)?.columns.as_ref()?;
        let family = |c: &ColumnDef| {
            let binary = c.charset.as_deref() == Some("binary");
            let declared = column_type(&c.type_text, binary, Dialect::MariaDb);
            let end = declared
                .find(|ch: char| !ch.is_ascii_alphanumeric())
                .unwrap_or(declared.len());
            declared[..end].to_string()
        };
        let agree = derived.len() == seed.len()
            && derived
                .iter()
                .zip(seed)
                .all(|(d, s)| d.name.eq_ignore_ascii_case(&s.name) && family(d) == family(s));
        let names = |columns: &[ColumnDef]| columns.iter().map(|c| c.name.clone()).collect();
        (!agree).then(|| (names(derived), names(seed)))
    }

    /// The tables changed since the last call, with all their versions.
    pub fn take_changed(&mut self) -> Vec<TableHistory> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|key| {
                let versions = self.tables.get(&key)?.clone();
                Some(TableHistory {
                    schema: key.0,
                    table: key.1,
                    versions,
                })
            })
            .collect()
    }

    /// Marks tables whose versions [`SchemaHistory::take_changed`] returned but could not be stored, so they are
    /// returned again.
    pub fn unsaved(&mut self, tables: &[TableHistory]) {
        self.changed
            .extend(tables.iter().map(|t| (t.schema.clone(), t.table.clone())));
    }

    /// The columns in force at `at` (a version at `at` itself included), with no fallback to later versions: what a
    /// DDL read at `at` evolves.
    pub(super) fn in_force(&self, key: &Key, at: &BinlogPosition) -> Option<&Vec<ColumnDef>> {
        let versions = self.tables.get(key)?;
        versions
            .iter()
            .rev()
            .find(|v| precedes_or_equals(&v.since, at))?
            .columns
            .as_ref()
    }

    /// Adds a version at `at`, in binlog order, unless the table already has one there (the DDL was read before).
    /// Returns whether it was added.
    pub(super) fn push(&mut self, key: &Key, at: &BinlogPosition, columns: Option<Vec<ColumnDef>>) -> bool {
        let versions = self.tables.entry(key.clone()).or_default();
        if versions.iter().any(|v| v.since == *at) {
            return false;
        }
        let index = versions.partition_point(|v| precedes_or_equals(&v.since, at));
        versions.insert(
            index,
            Version {
                since: at.clone(),
                columns,
                seed: false,
            },
        );
        self.changed.insert(key.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: u64) -> BinlogPosition {
        BinlogPosition {
            journal_name: "mysql-bin.000001".into(),
            position,
        }
    }

    fn names(history: &SchemaHistory, table: &str, position: u64) -> Option<Vec<String>> {
        history
            .columns_at("shop", table, &at(position))
            .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
    }

    fn created() -> SchemaHistory {
        let mut history = SchemaHistory::default();
        history.apply_ddl(
            "CREATE TABLE t (id INT UNSIGNED NOT NULL AUTO_INCREMENT, name VARCHAR(20), data BLOB, \
             kind ENUM('a','b'), PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=latin1",
            "shop",
            &at(100),
        );
        history
    }

    #[test]
    fn create_table_records_types_keys_charsets_and_members() {
        let history = created();
        let columns = history.columns_at("shop", "t", &at(200)).expect("defined");
        assert_eq!(columns.len(), 4);
        assert_eq!(columns[0].type_text, "int unsigned");
        assert!(columns[0].unsigned() && columns[0].primary_key);
        assert_eq!(columns[1].charset.as_deref(), Some("latin1"));
        assert_eq!(columns[2].charset.as_deref(), Some("binary"));
        assert_eq!(columns[3].members, ["a", "b"]);
        assert_eq!(columns[3].type_text, "enum('a','b')");
    }

    #[test]
    fn events_before_an_alter_keep_the_old_columns_and_replays_change_nothing() {
        let mut history = created();
        history.apply_ddl(
            "ALTER TABLE t ADD COLUMN note TEXT AFTER id, DROP COLUMN data",
            "shop",
            &at(300),
        );
        history.apply_ddl("ALTER TABLE shop.t CHANGE name title VARCHAR(40)", "", &at(400));
        history.apply_ddl("ALTER TABLE t RENAME COLUMN kind TO sort", "shop", &at(500));
        history.apply_ddl("ALTER TABLE t MODIFY note INT FIRST", "shop", &at(600));
        assert_eq!(names(&history, "t", 250).unwrap(), ["id", "name", "data", "kind"]);
        assert_eq!(names(&history, "t", 350).unwrap(), ["id", "note", "name", "kind"]);
        assert_eq!(names(&history, "t", 450).unwrap(), ["id", "note", "title", "kind"]);
        assert_eq!(names(&history, "t", 550).unwrap(), ["id", "note", "title", "sort"]);
        assert_eq!(names(&history, "t", 650).unwrap(), ["note", "id", "title", "sort"]);
        let changed = history.take_changed();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].versions.len(), 5);
        // Reading the binlog again from before the DDL must not apply it twice.
        let replay = history.apply_ddl("ALTER TABLE t ADD COLUMN note TEXT AFTER id", "shop", &at(300));
        assert!(replay.is_empty());
        assert!(history.take_changed().is_empty());
    }

    #[test]
    fn renames_move_the_history_and_drops_end_it() {
        let mut history = created();
        history.apply_ddl("RENAME TABLE t TO u", "shop", &at(300));
        history.apply_ddl("ALTER TABLE u RENAME TO v", "shop", &at(400));
        history.apply_ddl("DROP TABLE IF EXISTS v", "shop", &at(500));
        assert!(names(&history, "t", 250).is_some());
        assert!(names(&history, "t", 350).is_none());
        assert!(names(&history, "u", 350).is_some());
        assert!(names(&history, "u", 450).is_none());
        assert!(names(&history, "v", 450).is_some());
        assert!(names(&history, "v", 550).is_none());
    }

    #[test]
    fn statements_that_cannot_be_followed_make_the_table_unknown() {
        let mut history = created();
        let changes = history.apply_ddl("ALTER TABLE t DROP COLUMN missing", "shop", &at(300));
        assert!(matches!(&changes[..], [Change::Unknown { .. }]), "{changes:?}");
        assert!(names(&history, "t", 350).is_none());
        assert!(names(&history, "t", 250).is_some());

        let mut history = created();
        let changes = history.apply_ddl("ALTER TABLE t WITH SYSTEM VERSIONING ~~~", "shop", &at(300));
        assert!(matches!(&changes[..], [Change::Unknown { .. }]), "{changes:?}");
        // Statements about other tables, and unknown tables, leave the history alone.
        assert!(
            history
                .apply_ddl("ALTER TABLE other ADD c INT", "shop", &at(400))
                .is_empty()
        );
        assert!(history.apply_ddl("TRUNCATE TABLE t", "shop", &at(400)).is_empty());
    }

    #[test]
    fn the_seed_serves_earlier_events_and_absorbs_older_ddl() {
        let mut history = SchemaHistory::default();
        let id = ColumnDef {
            name: "id".into(),
            type_text: "int(11)".into(),
            primary_key: true,
            charset: None,
            members: Vec::new(),
        };
        history.seed(vec![("shop".into(), "t".into(), vec![id])], &at(1000));
        assert_eq!(names(&history, "t", 10).unwrap(), ["id"]);
        // A DDL from before the seed is already in it.
        assert!(
            history
                .apply_ddl("ALTER TABLE t ADD c INT", "shop", &at(500))
                .is_empty()
        );
        assert_eq!(names(&history, "t", 2000).unwrap(), ["id"]);
        let copy = SchemaHistory::from_tables(history.take_changed());
        assert_eq!(names(&copy, "t", 2000).unwrap(), ["id"]);
    }

    #[test]
    fn information_schema_columns_read_like_ddl() {
        let kind =
            ColumnDef::from_information_schema("kind".into(), "ENUM('a','it''s','')", false, Some("utf8mb4".into()));
        assert_eq!(kind.members, ["a", "it's", ""]);
        let data = ColumnDef::from_information_schema("data".into(), "varbinary(16)", false, None);
        assert_eq!(data.charset.as_deref(), Some("binary"));
        let id = ColumnDef::from_information_schema("id".into(), "int(10) unsigned", true, None);
        assert!(id.unsigned() && id.primary_key);
        assert_eq!(id.base_type(), "int");
    }

    #[test]
    fn create_like_copies_the_source_definition() {
        let mut history = created();
        history.apply_ddl("CREATE TABLE t2 LIKE t", "shop", &at(300));
        assert_eq!(names(&history, "t2", 400), names(&history, "t", 400));
    }

    #[test]
    fn a_create_read_before_the_seed_defines_the_table_and_its_alters_evolve_it() {
        let def = |name: &str, type_text: &str| ColumnDef {
            name: name.into(),
            type_text: type_text.into(),
            primary_key: name == "a",
            charset: None,
            members: Vec::new(),
        };
        let mut history = SchemaHistory::default();
        history.seed(
            vec![(
                "shop".into(),
                "r".into(),
                vec![def("a", "int(11)"), def("c", "int(11)")],
            )],
            &at(1000),
        );
        history.apply_ddl("CREATE TABLE r (a INT PRIMARY KEY, b VARCHAR(10))", "shop", &at(100));
        history.apply_ddl("ALTER TABLE r ADD c INT AFTER a", "shop", &at(200));
        history.apply_ddl("ALTER TABLE r DROP b", "shop", &at(300));
        assert_eq!(names(&history, "r", 150).unwrap(), ["a", "b"]);
        assert_eq!(names(&history, "r", 250).unwrap(), ["a", "c", "b"]);
        assert_eq!(names(&history, "r", 350).unwrap(), ["a", "c"]);
        assert_eq!(names(&history, "r", 2000).unwrap(), ["a", "c"]);
        assert_eq!(history.seed_disagreement("shop", "r", &at(2000)), None);
        // Read again (a restart before the DDL): nothing changes.
        history.take_changed();
        assert!(
            history
                .apply_ddl("ALTER TABLE r ADD c INT AFTER a", "shop", &at(200))
                .is_empty()
        );
        assert!(history.take_changed().is_empty());
        // An ALTER of a table whose CREATE was not read is already in the seed.
        history.seed(vec![("shop".into(), "s".into(), vec![def("a", "int(11)")])], &at(1000));
        assert!(
            history
                .apply_ddl("ALTER TABLE s ADD z INT", "shop", &at(400))
                .is_empty()
        );
        assert_eq!(names(&history, "s", 500).unwrap(), ["a"]);
    }

    #[test]
    fn ddl_that_does_not_arrive_at_the_seed_is_reported() {
        let def = |name: &str| ColumnDef {
            name: name.into(),
            type_text: "int(11)".into(),
            primary_key: false,
            charset: None,
            members: Vec::new(),
        };
        let mut history = SchemaHistory::default();
        history.seed(vec![("shop".into(), "r".into(), vec![def("a"), def("c")])], &at(1000));
        history.apply_ddl("CREATE TABLE r (a INT, b INT)", "shop", &at(100));
        assert_eq!(
            history.seed_disagreement("shop", "r", &at(1500)),
            Some((
                vec!["a".to_string(), "b".to_string()],
                vec!["a".to_string(), "c".to_string()]
            ))
        );
        assert_eq!(
            history.seed_disagreement("shop", "r", &at(500)),
            None,
            "only at the seed"
        );
    }
}
