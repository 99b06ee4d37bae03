//! Table descriptions taken from TABLE_MAP events.
//!
//! With `binlog_row_metadata=FULL` the table map carries column names, signedness, character sets, primary key
//! and ENUM/SET members, which is everything canal needs from its table-meta database, and it always describes the
//! table as it was when the row was written. Without it, [`TableInfo::complete_from`] fills the gaps from the schema
//! history ([`crate::schema::history`]). `mysqlType` comes from the history's declaration where it describes the table
//! map ([`TableInfo::declare_types`]), since the binlog carries no display widths or ZEROFILL; otherwise it is rebuilt
//! from the binlog type and its metadata, with default widths.

use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType;

use crate::schema::charset::{charset_of, decode_text, default_collation};
use crate::schema::column_type::{Dialect, column_type};
use crate::schema::history::ColumnDef;

/// The binary pseudo character set: such columns hold bytes, not text.
pub const BINARY_COLLATION: u16 = 63;

/// One table as described by its latest TABLE_MAP event.
#[derive(Clone, Debug, PartialEq)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    pub columns: Vec<ColumnInfo>,
    /// Whether the table map carried column names (binlog_row_metadata=FULL).
    pub has_names: bool,
    /// Whether the table map carried signedness (binlog_row_metadata MINIMAL or FULL; not NO_LOG or MySQL 5.7).
    pub has_signedness: bool,
    /// The server that wrote the binlog, for how it prints column types.
    pub dialect: Dialect,
}

/// One column of a [`TableInfo`].
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnInfo {
    pub index: usize,
    pub name: String,
    pub column_type: ColumnType,
    /// The type's binlog metadata bytes (length, precision, fsp, ...).
    pub meta: Vec<u8>,
    pub unsigned: bool,
    pub primary_key: bool,
    /// Collation id, 0 when unknown.
    pub collation: u16,
    /// ENUM or SET members, in definition order.
    pub members: Vec<String>,
    pub mysql_type: String,
}

impl ColumnInfo {
    pub fn is_binary(&self) -> bool {
        self.collation == BINARY_COLLATION
    }

    /// Fractional-second digits of a temporal column.
    pub fn fsp(&self) -> u8 {
        match self.column_type {
            ColumnType::MYSQL_TYPE_DATETIME2 | ColumnType::MYSQL_TYPE_TIMESTAMP2 | ColumnType::MYSQL_TYPE_TIME2 => {
                self.meta.first().copied().unwrap_or(0).min(6)
            }
            _ => 0,
        }
    }
}

/// Why a table map could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("table map of `{schema}`.`{table}`: {message}")]
pub struct TableMapError {
    pub schema: String,
    pub table: String,
    pub message: String,
}

impl TableInfo {
    /// Describes the table of `tme`. Fails on a malformed map instead of guessing.
    ///
    /// `dialect` says who wrote the binlog: MariaDB lists GEOMETRY columns among the character columns of the
    /// charset metadata (with the binary charset) and MySQL does not, so the columns after a GEOMETRY one would
    /// otherwise take their neighbour's charset.
    pub fn from_table_map(tme: &TableMapEvent<'_>, dialect: Dialect) -> Result<Self, TableMapError> {
        let mariadb = dialect.is_mariadb();
        let schema = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let fail = |message: String| TableMapError {
            schema: schema.clone(),
            table: table.clone(),
            message,
        };
        let count = usize::try_from(tme.columns_count()).map_err(|_| fail("column count too large".into()))?;
        let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| fail(format!("optional metadata: {e}")))?;
        let mut signedness = extractor.iter_signedness();
        let mut charsets = extractor.iter_charset();
        let mut enum_set_charsets = extractor.iter_enum_and_set_charset();
        let mut names = extractor.iter_column_name();
        let primary: Vec<u64> = extractor
            .iter_primary_key()
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("primary key metadata: {e}")))?;
        let (mut enums, mut sets) = members(tme).map_err(|e| fail(format!("ENUM/SET metadata: {e}")))?;

        let mut has_names = true;
        let has_signedness = tme
            .iter_optional_meta()
            .any(|f| matches!(f, Ok(OptionalMetadataField::Signedness(_))));
        let mut columns = Vec::with_capacity(count);
        for index in 0..count {
            let column_type = tme
                .get_column_type(index)
                .map_err(|e| fail(format!("column {index}: {e}")))?
                .ok_or_else(|| fail(format!("column {index} has no type")))?;
            let meta = tme.get_column_metadata(index).unwrap_or(&[]).to_vec();
            check_meta_len(column_type, &meta).map_err(|m| fail(format!("column {index}: {m}")))?;
            let unsigned = column_type.is_numeric_type() && signedness.next().unwrap_or(false);
            let has_charset =
                column_type.is_character_type() || (mariadb && column_type == ColumnType::MYSQL_TYPE_GEOMETRY);
            let collation = if has_charset {
                charsets
                    .next()
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?
                    .unwrap_or(0)
            } else if column_type.is_enum_or_set_type() {
                enum_set_charsets
                    .next()
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?
                    .unwrap_or(0)
            } else {
                0
            };
            let name = match names.next().transpose().map_err(|e| fail(e.to_string()))? {
                Some(n) => n.name().into_owned(),
                None => {
                    has_names = false;
                    format!("@{index}")
                }
            };
            let members = match column_type {
                ColumnType::MYSQL_TYPE_ENUM => enums.next().unwrap_or_default(),
                ColumnType::MYSQL_TYPE_SET => sets.next().unwrap_or_default(),
                _ => Vec::new(),
            };
            let members = members.iter().map(|m| decode_text(m, collation)).collect();
            let mut column = ColumnInfo {
                index,
                name,
                column_type,
                meta,
                unsigned,
                primary_key: primary.contains(&(index as u64)),
                collation,
                members,
                mysql_type: String::new(),
            };
            column.mysql_type = rebuilt_type(&column, dialect);
            columns.push(column);
        }
        Ok(Self {
            schema,
            table,
            columns,
            has_names,
            has_signedness,
            dialect,
        })
    }

    /// Completes a table map that lacks metadata with the definition from the schema history: names, primary key
    /// and ENUM/SET members, plus signedness and character sets when the map lacks them too.
    /// What the map itself says always wins. Fails, changing nothing, when the definition does not fit the map (a
    /// different column count or type), since decoding under the wrong names is worse than under none.
    pub fn complete_from(&mut self, definition: &[ColumnDef]) -> Result<(), String> {
        if definition.len() != self.columns.len() {
            return Err(format!(
                "the schema history has {} columns, the binlog {}",
                definition.len(),
                self.columns.len()
            ));
        }
        for (column, def) in self.columns.iter().zip(definition) {
            if !fits(column.column_type, def.base_type()) {
                return Err(format!(
                    "column {} is {:?} in the binlog but `{}` {} in the schema history",
                    column.index, column.column_type, def.name, def.type_text
                ));
            }
        }
        for (column, def) in self.columns.iter_mut().zip(definition) {
            if !self.has_names {
                column.name = def.name.clone();
                column.primary_key = def.primary_key;
                if column.members.is_empty() {
                    column.members = def.members.clone();
                }
            }
            if !self.has_signedness {
                column.unsigned = column.column_type.is_numeric_type() && def.unsigned();
            }
            if column.collation == 0 {
                column.collation = def.charset.as_deref().map(default_collation).unwrap_or(0);
            }
            column.mysql_type = rebuilt_type(column, self.dialect);
        }
        self.has_names = true;
        Ok(())
    }

    /// Takes each column's `mysqlType` from its declaration in the schema history, which has what the binlog lacks
    /// (display widths, ZEROFILL, FLOAT(M,D)), when that declaration describes this table map: the same columns,
    /// of types that fit, under the same names. Otherwise the types rebuilt from the binlog stay.
    pub fn declare_types(&mut self, definition: &[ColumnDef]) -> bool {
        let describes = definition.len() == self.columns.len()
            && self.columns.iter().zip(definition).all(|(column, def)| {
                fits(column.column_type, def.base_type()) && column.name.eq_ignore_ascii_case(&def.name)
            });
        if !describes {
            return false;
        }
        for (column, def) in self.columns.iter_mut().zip(definition) {
            let binary = def.charset.as_deref() == Some("binary");
            column.mysql_type = column_type(&def.type_text, binary, self.dialect);
        }
        true
    }
}

/// Whether a binlog column type can hold a column declared as `base` (the leading keyword of its SQL type).
fn fits(column_type: ColumnType, base: &str) -> bool {
    use ColumnType::*;
    let allowed: &[&str] = match column_type {
        MYSQL_TYPE_TINY => &["tinyint", "bool", "boolean", "int1"],
        MYSQL_TYPE_SHORT => &["smallint", "int2"],
        MYSQL_TYPE_INT24 => &["mediumint", "int3", "middleint"],
        MYSQL_TYPE_LONG => &["int", "integer", "int4"],
        MYSQL_TYPE_LONGLONG => &["bigint", "int8", "serial"],
        MYSQL_TYPE_FLOAT => &["float", "float4"],
        MYSQL_TYPE_DOUBLE => &["double", "real", "float8", "float"],
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => &["decimal", "numeric", "dec", "fixed", "number"],
        MYSQL_TYPE_BIT => &["bit", "bool", "boolean"],
        MYSQL_TYPE_YEAR => &["year"],
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => &["date"],
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => &["datetime"],
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => &["timestamp"],
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => &["time"],
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => &[
            "varchar",
            "varbinary",
            "character",
            "nvarchar",
            "nchar",
            "char",
            "inet6",
            "inet4",
            "uuid",
        ],
        MYSQL_TYPE_STRING => &[
            "char",
            "binary",
            "character",
            "nchar",
            "enum",
            "set",
            "inet6",
            "inet4",
            "uuid",
        ],
        MYSQL_TYPE_ENUM => &["enum"],
        MYSQL_TYPE_SET => &["set"],
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => &[
            "blob",
            "tinyblob",
            "mediumblob",
            "longblob",
            "text",
            "tinytext",
            "mediumtext",
            "longtext",
            "json",
            "long",
        ],
        MYSQL_TYPE_JSON => &["json"],
        MYSQL_TYPE_GEOMETRY => &[
            "geometry",
            "point",
            "linestring",
            "polygon",
            "multipoint",
            "multilinestring",
            "multipolygon",
            "geometrycollection",
        ],
        _ => return true,
    };
    allowed.contains(&base)
}

/// Each ENUM or SET column's member names as the table map has them: bytes in the column's character set.
type Members = std::vec::IntoIter<Vec<Vec<u8>>>;

fn members(tme: &TableMapEvent<'_>) -> std::io::Result<(Members, Members)> {
    let mut enums = Vec::new();
    let mut sets = Vec::new();
    for field in tme.iter_optional_meta() {
        match field? {
            OptionalMetadataField::EnumStrValue(values) => {
                for column in values.iter_values() {
                    enums.push(column?.values().iter().map(|v| v.value_raw().to_vec()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(values) => {
                for column in values.iter_values() {
                    sets.push(column?.values().iter().map(|v| v.value_raw().to_vec()).collect());
                }
            }
            _ => {}
        }
    }
    Ok((enums.into_iter(), sets.into_iter()))
}

/// mysql_common indexes type metadata without checking its length; a malformed table map must fail here instead
/// of panicking later in the row decoder.
fn check_meta_len(column_type: ColumnType, meta: &[u8]) -> Result<(), String> {
    use ColumnType::*;
    let needed = match column_type {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET => 2,
        MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_FLOAT
        | MYSQL_TYPE_DOUBLE => 1,
        _ => 0,
    };
    if meta.len() < needed {
        return Err(format!(
            "{column_type:?} needs {needed} metadata bytes, got {}",
            meta.len()
        ));
    }
    Ok(())
}

fn quoted_list(members: &[String]) -> String {
    let quoted: Vec<String> = members.iter().map(|m| format!("'{}'", m.replace('\'', "''"))).collect();
    quoted.join(",")
}

fn with_fsp(base: &str, fsp: u8) -> String {
    if fsp == 0 {
        base.to_string()
    } else {
        format!("{base}({fsp})")
    }
}

/// The column type as far as the binlog tells it, as `dialect` prints it: default display widths, no ZEROFILL.
fn rebuilt_type(c: &ColumnInfo, dialect: Dialect) -> String {
    column_type(&binlog_type(c), c.is_binary(), dialect)
}

/// The column type as far as the binlog tells it, with MariaDB's default display widths.
fn binlog_type(c: &ColumnInfo) -> String {
    use ColumnType::*;
    let unsigned = |signed: &str, unsigned: &str| {
        if c.unsigned {
            format!("{unsigned} unsigned")
        } else {
            signed.to_string()
        }
    };
    let m0 = c.meta.first().copied().unwrap_or(0) as usize;
    let m1 = c.meta.get(1).copied().unwrap_or(0) as usize;
    match c.column_type {
        MYSQL_TYPE_TINY => unsigned("tinyint(4)", "tinyint(3)"),
        MYSQL_TYPE_SHORT => unsigned("smallint(6)", "smallint(5)"),
        MYSQL_TYPE_INT24 => unsigned("mediumint(9)", "mediumint(8)"),
        MYSQL_TYPE_LONG => unsigned("int(11)", "int(10)"),
        MYSQL_TYPE_LONGLONG => unsigned("bigint(20)", "bigint(20)"),
        MYSQL_TYPE_FLOAT => unsigned("float", "float"),
        MYSQL_TYPE_DOUBLE => unsigned("double", "double"),
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => {
            let base = format!("decimal({m0},{m1})");
            unsigned(&base, &base)
        }
        MYSQL_TYPE_BIT => format!("bit({})", m1 * 8 + m0),
        MYSQL_TYPE_YEAR => "year(4)".into(),
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "date".into(),
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => with_fsp("datetime", c.fsp()),
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => with_fsp("timestamp", c.fsp()),
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => with_fsp("time", c.fsp()),
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
            let bytes = m0 | (m1 << 8);
            if c.is_binary() {
                format!("varbinary({bytes})")
            } else {
                format!("varchar({})", bytes / charset_of(c.collation).1 as usize)
            }
        }
        MYSQL_TYPE_STRING => {
            // The length is split across both metadata bytes (see the binlog's STRING metadata layout).
            let bytes = if (m0 & 0x30) != 0x30 {
                m1 | (((m0 & 0x30) ^ 0x30) << 4)
            } else {
                m1
            };
            if c.is_binary() {
                format!("binary({bytes})")
            } else {
                format!("char({})", bytes / charset_of(c.collation).1 as usize)
            }
        }
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
            let size = ["tiny", "", "medium", "long"]
                .get(m0.saturating_sub(1))
                .copied()
                .unwrap_or("");
            if c.is_binary() {
                format!("{size}blob")
            } else {
                format!("{size}text")
            }
        }
        MYSQL_TYPE_ENUM => format!("enum({})", quoted_list(&c.members)),
        MYSQL_TYPE_SET => format!("set({})", quoted_list(&c.members)),
        MYSQL_TYPE_JSON => "json".into(),
        MYSQL_TYPE_GEOMETRY => "geometry".into(),
        other => format!("{other:?}").trim_start_matches("MYSQL_TYPE_").to_lowercase(),
    }
}
