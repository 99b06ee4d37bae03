//! Classifies QUERY event statements the way canal reports them: DDL kind plus the schema and table they touch.
//!
//! canal parses statements with Druid. canal-rs parses them with sqlparser's MySQL dialect and maps the result to
//! canal's event types, including canal's reading of `ALTER TABLE`: a rename is RENAME, adding an index or a
//! unique or primary key is CINDEX, dropping an index or unique key is DINDEX, dropping the primary key is ALTER.
//! A statement the parser cannot read (MariaDB-only syntax, say) falls back to recognising its leading shape, so
//! classification never fails the stream; what neither recognises is QUERY, as in canal for statements it does not
//! understand.

use std::sync::LazyLock;

use regex::Regex;
use sqlparser::ast::{AlterTableOperation, ObjectName, ObjectType, RenameTableNameKind, TableConstraint};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::protocol::EventType;

/// What a statement is and which table it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub event_type: EventType,
    /// Schema named in the statement, or empty when it relies on the session's current database.
    pub schema: String,
    pub table: String,
    /// For RENAME: the new `(schema, table)`; the filter keeps a rename when either name matches.
    pub renamed_to: Option<(String, String)>,
}

impl Statement {
    /// canal's `isDdl`: everything but statement-based DML.
    pub fn is_ddl(&self) -> bool {
        !matches!(
            self.event_type,
            EventType::Insert | EventType::Update | EventType::Delete
        )
    }
}

const NAME: &str = r"((?:`[^`]+`|[\w$]+)(?:\s*\.\s*(?:`[^`]+`|[\w$]+))?)";

static PATTERNS: LazyLock<Vec<(EventType, Regex)>> = LazyLock::new(|| {
    let rules = [
        (
            EventType::Create,
            r"^create\s+(?:or\s+replace\s+)?(?:temporary\s+)?table\s+(?:if\s+not\s+exists\s+)?",
        ),
        (EventType::Alter, r"^alter\s+(?:online\s+)?(?:ignore\s+)?table\s+"),
        (
            EventType::Erase,
            r"^drop\s+(?:temporary\s+)?table\s+(?:if\s+exists\s+)?",
        ),
        (EventType::Truncate, r"^truncate\s+(?:table\s+)?"),
        (EventType::Rename, r"^rename\s+table\s+"),
        (
            EventType::Cindex,
            r"^create\s+(?:or\s+replace\s+)?(?:online\s+)?(?:unique\s+|fulltext\s+|spatial\s+)?index\s+(?:if\s+not\s+exists\s+)?\S+\s+on\s+",
        ),
        (EventType::Dindex, r"^drop\s+index\s+(?:if\s+exists\s+)?\S+\s+on\s+"),
        (
            EventType::Insert,
            r"^(?:insert|replace)\s+(?:low_priority\s+|delayed\s+|high_priority\s+|ignore\s+)*(?:into\s+)?",
        ),
        (EventType::Update, r"^update\s+(?:low_priority\s+)?(?:ignore\s+)?"),
        (
            EventType::Delete,
            r"^delete\s+(?:low_priority\s+)?(?:quick\s+)?(?:ignore\s+)?from\s+",
        ),
    ];
    rules
        .into_iter()
        .map(|(t, prefix)| {
            (
                t,
                Regex::new(&format!("(?is){prefix}{NAME}")).expect("static DDL pattern"),
            )
        })
        .collect()
});

static LEADING_COMMENTS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:\s+|/\*.*?\*/|--[^\n]*\n|#[^\n]*\n)*").expect("static comment pattern"));

/// A statement read once: what canal reports it as, and the parser's syntax tree, which the schema history
/// applies (see [`SchemaHistory::apply`](super::history::SchemaHistory::apply)) without parsing again.
#[derive(Debug)]
pub struct Parsed {
    pub sql: String,
    pub statement: Statement,
    /// The parsed statements, or the parser's error.
    pub syntax: Result<Vec<sqlparser::ast::Statement>, String>,
}

/// Parses `sql` and classifies it (by its first statement).
pub fn parse(sql: &str) -> Parsed {
    let syntax = Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| e.to_string());
    let statement = syntax
        .as_ref()
        .ok()
        .and_then(|statements| statements.first())
        .and_then(classified)
        .unwrap_or_else(|| by_shape(sql));
    Parsed {
        sql: sql.to_string(),
        statement,
        syntax,
    }
}

/// Classifies one statement (the first, when there are several). Unknown statements are `QUERY` with no table.
pub fn classify(sql: &str) -> Statement {
    parse(sql).statement
}

fn statement(event_type: EventType, name: Option<&ObjectName>) -> Statement {
    let (schema, table) = name.map(schema_and_table).unwrap_or_default();
    Statement {
        event_type,
        schema,
        table,
        renamed_to: None,
    }
}

/// `(schema, table)` of a possibly qualified name; the schema is empty when the name has one part.
pub(crate) fn schema_and_table(name: &ObjectName) -> (String, String) {
    let mut parts = name.0.iter().rev().map(|part| match part.as_ident() {
        Some(ident) => ident.value.clone(),
        None => part.to_string(),
    });
    let table = parts.next().unwrap_or_default();
    let schema = parts.next().unwrap_or_default();
    (schema, table)
}

/// canal's kind for an `ALTER TABLE`, decided by its first operation as canal's parser does.
fn alter_kind(operation: Option<&AlterTableOperation>) -> (EventType, Option<&ObjectName>) {
    match operation {
        Some(AlterTableOperation::RenameTable { table_name }) => match table_name {
            RenameTableNameKind::As(name) | RenameTableNameKind::To(name) => (EventType::Rename, Some(name)),
        },
        Some(AlterTableOperation::AddConstraint {
            constraint:
                TableConstraint::Unique(_)
                | TableConstraint::PrimaryKey(_)
                | TableConstraint::Index(_)
                | TableConstraint::FulltextOrSpatial(_),
            ..
        }) => (EventType::Cindex, None),
        Some(AlterTableOperation::DropIndex { .. }) => (EventType::Dindex, None),
        // Dropping the primary key changes which columns identify a row, not just an index: canal reports ALTER.
        Some(AlterTableOperation::DropPrimaryKey { .. }) => (EventType::Alter, None),
        _ => (EventType::Alter, None),
    }
}

/// The parser's reading of a statement; `None` for statement DML, whose target the shape rules find more simply.
fn classified(first: &sqlparser::ast::Statement) -> Option<Statement> {
    use sqlparser::ast::Statement as Sql;
    let found = match first {
        Sql::CreateTable(create) => statement(EventType::Create, Some(&create.name)),
        Sql::AlterTable(alter) => {
            let (event_type, new_name) = alter_kind(alter.operations.first());
            let mut found = statement(event_type, Some(&alter.name));
            found.renamed_to = new_name.map(schema_and_table);
            found
        }
        Sql::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => statement(EventType::Erase, names.first()),
        Sql::Drop {
            object_type: ObjectType::Index,
            table,
            ..
        } => statement(EventType::Dindex, table.as_ref()),
        Sql::Truncate(truncate) => statement(EventType::Truncate, truncate.table_names.first().map(|t| &t.name)),
        Sql::RenameTable(renames) => {
            let rename = renames.first()?;
            let mut found = statement(EventType::Rename, Some(&rename.old_name));
            found.renamed_to = Some(schema_and_table(&rename.new_name));
            found
        }
        Sql::CreateIndex(index) => statement(EventType::Cindex, Some(&index.table_name)),
        Sql::Insert(_) | Sql::Update(_) | Sql::Delete(_) => return None,
        _ => statement(EventType::Query, None),
    };
    Some(found)
}

/// Classifies a statement by its leading keywords alone: the fallback when the parser cannot read it.
pub(crate) fn by_shape(sql: &str) -> Statement {
    let body = &sql[LEADING_COMMENTS.find(sql).map_or(0, |m| m.end())..];
    for (event_type, pattern) in PATTERNS.iter() {
        if let Some(caps) = pattern.captures(body) {
            let (schema, table) = split_name(&caps[1]);
            return Statement {
                event_type: *event_type,
                schema,
                table,
                renamed_to: None,
            };
        }
    }
    statement(EventType::Query, None)
}

fn unquote(part: &str) -> String {
    part.trim().trim_matches('`').to_string()
}

fn split_name(name: &str) -> (String, String) {
    // Split on the dot that is outside backquotes.
    let mut in_quote = false;
    for (i, c) in name.char_indices() {
        match c {
            '`' => in_quote = !in_quote,
            '.' if !in_quote => return (unquote(&name[..i]), unquote(&name[i + 1..])),
            _ => {}
        }
    }
    (String::new(), unquote(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, event_type: EventType, schema: &str, table: &str) {
        let s = classify(sql);
        assert_eq!(
            (s.event_type, s.schema.as_str(), s.table.as_str()),
            (event_type, schema, table),
            "{sql}"
        );
    }

    #[test]
    fn recognises_canal_ddl_kinds() {
        check(
            "CREATE TABLE IF NOT EXISTS `shop`.`orders` (id int)",
            EventType::Create,
            "shop",
            "orders",
        );
        check("create table t1(id int)", EventType::Create, "", "t1");
        check(
            "ALTER TABLE shop.orders ADD COLUMN x int",
            EventType::Alter,
            "shop",
            "orders",
        );
        check("DROP TABLE `t` /* generated by server */", EventType::Erase, "", "t");
        check("TRUNCATE TABLE `a`.`b`", EventType::Truncate, "a", "b");
        check("rename table a.b to a.c", EventType::Rename, "a", "b");
        check("CREATE UNIQUE INDEX idx ON shop.t (x)", EventType::Cindex, "shop", "t");
        check("DROP INDEX idx ON t", EventType::Dindex, "", "t");
        check(
            "/* comment */ insert into db.t values (1)",
            EventType::Insert,
            "db",
            "t",
        );
        check("CREATE DATABASE shop", EventType::Query, "", "");
        check("GRANT ALL ON *.* TO x", EventType::Query, "", "");
        check("CREATE TABLE `we.ird` (id int)", EventType::Create, "", "we.ird");
        check("DROP TABLE a, b.c", EventType::Erase, "", "a");
        check("create table t2 like t1", EventType::Create, "", "t2");
        check("update shop.t set a = 1 where id = 2", EventType::Update, "shop", "t");
        check("delete from `shop`.`t` where id = 2", EventType::Delete, "shop", "t");
    }

    #[test]
    fn alter_table_kinds_follow_canal() {
        check("ALTER TABLE shop.t ADD INDEX idx (a)", EventType::Cindex, "shop", "t");
        check("ALTER TABLE t ADD UNIQUE KEY uk (a)", EventType::Cindex, "", "t");
        check("ALTER TABLE t ADD PRIMARY KEY (a)", EventType::Cindex, "", "t");
        check("ALTER TABLE t DROP INDEX idx", EventType::Dindex, "", "t");
        check(
            "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (a, b)",
            EventType::Alter,
            "",
            "t",
        );
        check("ALTER TABLE t DROP PRIMARY KEY", EventType::Alter, "", "t");
        check(
            "ALTER TABLE t MODIFY COLUMN a bigint unsigned",
            EventType::Alter,
            "",
            "t",
        );
        check("ALTER TABLE t RENAME COLUMN a TO b", EventType::Alter, "", "t");
        let rename = classify("ALTER TABLE shop.t RENAME TO archive.t_old");
        assert_eq!(rename.event_type, EventType::Rename);
        assert_eq!(rename.renamed_to, Some(("archive".into(), "t_old".into())));
    }

    #[test]
    fn rename_table_names_both_sides() {
        let rename = classify("RENAME TABLE shop.a TO shop.b, c TO d");
        assert_eq!((rename.schema.as_str(), rename.table.as_str()), ("shop", "a"));
        assert_eq!(rename.renamed_to, Some(("shop".into(), "b".into())));
    }

    #[test]
    fn unparseable_statements_fall_back_to_their_shape() {
        // MariaDB-only syntax the parser does not know still gets its kind and table.
        check(
            "CREATE OR REPLACE TABLE shop.t (id int) WITH SYSTEM VERSIONING",
            EventType::Create,
            "shop",
            "t",
        );
        check(
            "ALTER ONLINE TABLE shop.t ADD COLUMN x int",
            EventType::Alter,
            "shop",
            "t",
        );
        check("this is not sql at all", EventType::Query, "", "");
        check("", EventType::Query, "", "");
    }
}
