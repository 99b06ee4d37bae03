//! What a DDL statement does to the schema history: CREATE (also LIKE), ALTER (columns added, dropped, changed,
//! moved, renamed; the table renamed), RENAME and DROP, read from sqlparser's syntax tree. A statement that changes
//! columns in a way not followed here marks the table unknown from its position on, rather than guessing.

use std::sync::LazyLock;

use regex::Regex;
use sqlparser::ast::{
    AlterTableOperation, ColumnDef as SqlColumn, ColumnOption, CreateTableLikeKind, DataType, EnumMember,
    MySQLColumnPosition, ObjectName, ObjectType, RenameTableNameKind, Statement, TableConstraint,
};

use super::ddl::{self, Parsed};
use super::history::{Change, ColumnDef, Key, SchemaHistory};
use crate::binlog::position::BinlogPosition;
use crate::protocol::EventType;

impl SchemaHistory {
    /// Records what the DDL statement `sql`, read at `at` with `session_schema` as the current database, did to the
    /// tables it names. A statement already recorded (a replay) changes nothing.
    pub fn apply_ddl(&mut self, sql: &str, session_schema: &str, at: &BinlogPosition) -> Vec<Change> {
        self.apply(ddl::parse(sql), session_schema, at)
    }

    /// [`apply_ddl`](Self::apply_ddl) for a statement already parsed (the converter parses each statement once).
    pub fn apply(&mut self, parsed: Parsed, session_schema: &str, at: &BinlogPosition) -> Vec<Change> {
        let statements = match parsed.syntax {
            Ok(statements) => statements,
            Err(e) => return self.unparsed(&parsed.sql, session_schema, at, &e),
        };
        let mut changes = Vec::new();
        for statement in statements {
            let mut apply = Apply {
                history: self,
                session_schema,
                at,
                changes: &mut changes,
            };
            apply.statement(statement);
        }
        changes
    }

    /// A statement the parser cannot read: when its shape says it alters a known table or creates one, that
    /// table's columns become unknown, so nothing decodes under names that may be wrong.
    fn unparsed(&mut self, sql: &str, session_schema: &str, at: &BinlogPosition, error: &str) -> Vec<Change> {
        let shape = ddl::by_shape(sql);
        let creates = shape.event_type == EventType::Create;
        if !creates && shape.event_type != EventType::Alter {
            return Vec::new();
        }
        let schema = if shape.schema.is_empty() {
            session_schema.to_string()
        } else {
            shape.schema
        };
        let key = (schema, shape.table);
        // An ALTER of a table with no version in force here (its CREATE was not read) is left to the seed.
        if !creates && self.in_force(&key, at).is_none() {
            return Vec::new();
        }
        if !self.push(&key, at, None) {
            return Vec::new();
        }
        vec![Change::Unknown {
            schema: key.0,
            table: key.1,
            reason: format!("the statement could not be parsed: {error}"),
        }]
    }
}

/// Applies one parsed statement.
struct Apply<'a> {
    history: &'a mut SchemaHistory,
    session_schema: &'a str,
    at: &'a BinlogPosition,
    changes: &'a mut Vec<Change>,
}

impl Apply<'_> {
    fn key(&self, name: &ObjectName) -> Key {
        let (schema, table) = ddl::schema_and_table(name);
        let schema = if schema.is_empty() {
            self.session_schema.to_string()
        } else {
            schema
        };
        (schema, table)
    }

    fn define(&mut self, key: Key, columns: Vec<ColumnDef>) {
        if self.history.push(&key, self.at, Some(columns)) {
            self.changes.push(Change::Defined {
                schema: key.0,
                table: key.1,
            });
        }
    }

    fn remove(&mut self, key: Key) {
        if !self.history.tables.contains_key(&key) {
            return;
        }
        if self.history.push(&key, self.at, None) {
            self.changes.push(Change::Removed {
                schema: key.0,
                table: key.1,
            });
        }
    }

    fn unknown(&mut self, key: Key, reason: String) {
        if self.history.push(&key, self.at, None) {
            self.changes.push(Change::Unknown {
                schema: key.0,
                table: key.1,
                reason,
            });
        }
    }

    fn statement(&mut self, statement: Statement) {
        match statement {
            Statement::CreateTable(create) => {
                let key = self.key(&create.name);
                if create.if_not_exists && self.history.in_force(&key, self.at).is_some() {
                    return;
                }
                if let Some(like) = &create.like {
                    let source = match like {
                        CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l) => self.key(&l.name),
                    };
                    match self.history.in_force(&source, self.at).cloned() {
                        Some(columns) => self.define(key, columns),
                        None => self.unknown(
                            key,
                            format!("LIKE `{}`.`{}`, whose columns are unknown", source.0, source.1),
                        ),
                    }
                    return;
                }
                if create.query.is_some() {
                    self.unknown(key, "CREATE TABLE ... SELECT takes its columns from a query".into());
                    return;
                }
                let charset = table_charset(&create.table_options.to_string());
                let mut columns: Vec<ColumnDef> =
                    create.columns.iter().map(|c| column(c, charset.as_deref())).collect();
                for constraint in &create.constraints {
                    if let TableConstraint::PrimaryKey(pk) = constraint {
                        let names: Vec<String> = pk.columns.iter().map(|c| c.column.expr.to_string()).collect();
                        mark_primary(&mut columns, &names);
                    }
                }
                self.define(key, columns);
            }
            Statement::AlterTable(alter) => {
                let key = self.key(&alter.name);
                let Some(mut columns) = self.history.in_force(&key, self.at).cloned() else {
                    return;
                };
                let mut target = key.clone();
                for operation in alter.operations {
                    if let Err(reason) = alter_columns(&mut columns, operation, &mut target, |n| self.key(n)) {
                        self.unknown(key, reason);
                        return;
                    }
                }
                if target != key {
                    self.remove(key);
                }
                self.define(target, columns);
            }
            Statement::RenameTable(renames) => {
                for rename in renames {
                    let from = self.key(&rename.old_name);
                    let to = self.key(&rename.new_name);
                    let columns = self.history.in_force(&from, self.at).cloned();
                    self.remove(from);
                    if let Some(columns) = columns {
                        self.define(to, columns);
                    }
                }
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                ..
            } => {
                for name in &names {
                    let key = self.key(name);
                    self.remove(key);
                }
            }
            _ => {}
        }
    }
}

/// Applies one ALTER TABLE operation to `columns`; `target` follows a rename. Operations that do not change the
/// columns (indexes, options) are ignored; an operation that changes them in a way not followed is an error.
fn alter_columns(
    columns: &mut Vec<ColumnDef>,
    operation: AlterTableOperation,
    target: &mut Key,
    key_of: impl Fn(&ObjectName) -> Key,
) -> Result<(), String> {
    let find = |columns: &[ColumnDef], name: &str| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("column `{name}` is not in the recorded definition"))
    };
    let place = |columns: &mut Vec<ColumnDef>, def: ColumnDef, position: Option<MySQLColumnPosition>| {
        match position {
            None => columns.push(def),
            Some(MySQLColumnPosition::First) => columns.insert(0, def),
            Some(MySQLColumnPosition::After(after)) => {
                let at = find(columns, &after.value)?;
                columns.insert(at + 1, def);
            }
        }
        Ok::<(), String>(())
    };
    match operation {
        AlterTableOperation::AddColumn {
            column_def,
            column_position,
            if_not_exists,
            ..
        } => {
            if if_not_exists && find(columns, &column_def.name.value).is_ok() {
                return Ok(());
            }
            place(columns, column(&column_def, None), column_position)?;
        }
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } => {
            for name in column_names {
                match find(columns, &name.value) {
                    Ok(i) => {
                        columns.remove(i);
                    }
                    Err(_) if if_exists => {}
                    Err(e) => return Err(e),
                }
            }
        }
        AlterTableOperation::ModifyColumn {
            col_name,
            data_type,
            options,
            column_position,
        } => {
            let i = find(columns, &col_name.value)?;
            let old = columns.remove(i);
            let def = redefined(&old, &col_name.value, &data_type, &options);
            match column_position {
                None => columns.insert(i, def),
                position => place(columns, def, position)?,
            }
        }
        AlterTableOperation::ChangeColumn {
            old_name,
            new_name,
            data_type,
            options,
            column_position,
        } => {
            let i = find(columns, &old_name.value)?;
            let old = columns.remove(i);
            let def = redefined(&old, &new_name.value, &data_type, &options);
            match column_position {
                None => columns.insert(i, def),
                position => place(columns, def, position)?,
            }
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => {
            let i = find(columns, &old_column_name.value)?;
            columns[i].name = new_column_name.value;
        }
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::As(name) | RenameTableNameKind::To(name)) = table_name;
            *target = key_of(&name);
        }
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::PrimaryKey(pk),
            ..
        } => {
            let names: Vec<String> = pk.columns.iter().map(|c| c.column.expr.to_string()).collect();
            mark_primary(columns, &names);
        }
        AlterTableOperation::DropPrimaryKey { .. } => {
            for c in columns.iter_mut() {
                c.primary_key = false;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A column's new definition after MODIFY or CHANGE: the primary-key flag stays, the rest is redeclared.
fn redefined(old: &ColumnDef, name: &str, data_type: &DataType, options: &[ColumnOption]) -> ColumnDef {
    let mut def = described(name, data_type, options.iter(), None);
    def.primary_key |= old.primary_key;
    if def.charset.is_none() && is_character(&def) {
        def.charset = old.charset.clone();
    }
    def
}

fn column(c: &SqlColumn, table_charset: Option<&str>) -> ColumnDef {
    described(
        &c.name.value,
        &c.data_type,
        c.options.iter().map(|o| &o.option),
        table_charset,
    )
}

fn described<'a>(
    name: &str,
    data_type: &DataType,
    options: impl Iterator<Item = &'a ColumnOption>,
    table_charset: Option<&str>,
) -> ColumnDef {
    let members = match data_type {
        DataType::Enum(members, _) => members
            .iter()
            .map(|m| match m {
                EnumMember::Name(n) | EnumMember::NamedValue(n, _) => n.clone(),
            })
            .collect(),
        DataType::Set(members) => members.clone(),
        _ => Vec::new(),
    };
    let mut def = ColumnDef {
        name: name.to_string(),
        type_text: type_text(data_type, &members),
        primary_key: false,
        charset: None,
        members,
    };
    for option in options {
        match option {
            ColumnOption::PrimaryKey(_) => def.primary_key = true,
            ColumnOption::CharacterSet(charset) => def.charset = Some(charset.to_string().to_ascii_lowercase()),
            _ => {}
        }
    }
    if is_byte_string(&def) {
        def.charset = Some("binary".into());
    } else if def.charset.is_none() && is_character(&def) {
        def.charset = table_charset.map(str::to_string);
    }
    def
}

/// The type as MySQL prints it: lowercase, ENUM/SET members quoted without spaces.
fn type_text(data_type: &DataType, members: &[String]) -> String {
    let quoted = || {
        members
            .iter()
            .map(|m| format!("'{}'", m.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",")
    };
    match data_type {
        DataType::Enum(..) => format!("enum({})", quoted()),
        DataType::Set(_) => format!("set({})", quoted()),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// The members of an `enum('a','b')` or `set(...)` type, with `''` unescaped.
pub(super) fn quoted_members(type_text: &str) -> Vec<String> {
    if !(type_text.starts_with("enum(") || type_text.starts_with("set(")) {
        return Vec::new();
    }
    let mut members = Vec::new();
    let mut chars = type_text.chars().skip_while(|c| *c != '(').skip(1).peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    member.push('\'');
                    continue;
                }
                break;
            }
            member.push(c);
        }
        members.push(member);
    }
    members
}

pub(super) fn is_byte_string(def: &ColumnDef) -> bool {
    matches!(
        def.base_type(),
        "binary" | "varbinary" | "blob" | "tinyblob" | "mediumblob" | "longblob"
    ) || def.charset.as_deref() == Some("binary")
}

fn is_character(def: &ColumnDef) -> bool {
    matches!(
        def.base_type(),
        "char"
            | "varchar"
            | "text"
            | "tinytext"
            | "mediumtext"
            | "longtext"
            | "enum"
            | "set"
            | "character"
            | "nchar"
            | "nvarchar"
    )
}

fn mark_primary(columns: &mut [ColumnDef], names: &[String]) {
    for name in names {
        let name = name.trim_matches('`');
        if let Some(c) = columns.iter_mut().find(|c| c.name.eq_ignore_ascii_case(name)) {
            c.primary_key = true;
        }
    }
}

/// `DEFAULT CHARSET=x` / `CHARACTER SET x` among a CREATE TABLE's options.
fn table_charset(options: &str) -> Option<String> {
    static CHARSET: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?:charset|character\s+set)\s*=?\s*'?([A-Za-z0-9_]+)").expect("static pattern")
    });
    CHARSET
        .captures(options)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_ascii_lowercase())
}
