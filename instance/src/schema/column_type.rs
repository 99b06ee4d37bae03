//! Column types as the server itself reports them in `information_schema.COLUMNS.COLUMN_TYPE`, which is what canal
//! puts in `mysqlType`.
//!
//! The binlog's table map carries no display widths and no ZEROFILL, even with `binlog_row_metadata=FULL`, yet
//! consumers read them: `tinyint(1)` is how JDBC-minded clients recognise a boolean. The declared types come from the
//! schema history instead (the `information_schema` seed and the DDL read from the binlog), and a DDL's text is
//! brought to the form the server would report for it: `INT UNSIGNED` is `int(10) unsigned` on MariaDB and MySQL
//! before 8.0.19, and `int unsigned` on MySQL 8.0.19 and later, which dropped integer display widths.

/// How a server prints column types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// MariaDB: integer display widths (the default one when none was declared); JSON is an alias of LONGTEXT.
    #[default]
    MariaDb,
    /// MySQL before 8.0.19: integer display widths, like MariaDB.
    MySqlWithWidths,
    /// MySQL 8.0.19 and later: no integer display width, except on TINYINT(1) and ZEROFILL columns.
    MySql,
}

impl Dialect {
    /// The dialect of the server whose format description event says `version` (`10.11.6-MariaDB-log`,
    /// `8.0.36`).
    pub fn of_server(version: &str) -> Self {
        if version.contains("MariaDB") {
            return Dialect::MariaDb;
        }
        let mut numbers = version
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let release = (
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(0),
        );
        if release >= (8, 0, 19) {
            Dialect::MySql
        } else {
            Dialect::MySqlWithWidths
        }
    }

    pub fn is_mariadb(self) -> bool {
        self == Dialect::MariaDb
    }
}

/// Integer types: the name the server prints, and the default display width signed and unsigned.
fn integer(base: &str) -> Option<(&'static str, u32, u32)> {
    Some(match base {
        "tinyint" | "int1" => ("tinyint", 4, 3),
        "smallint" | "int2" => ("smallint", 6, 5),
        "mediumint" | "int3" | "middleint" => ("mediumint", 9, 8),
        "int" | "integer" | "int4" => ("int", 11, 10),
        "bigint" | "int8" => ("bigint", 20, 20),
        _ => return None,
    })
}

/// `declared` (a DDL's type or `information_schema`'s COLUMN_TYPE, any case) as `dialect` reports it;
/// `binary_charset` says the column was declared `CHARACTER SET binary`, which makes CHAR and VARCHAR byte strings.
pub fn column_type(declared: &str, binary_charset: bool, dialect: Dialect) -> String {
    let original = declared.trim();
    let base_end = original
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(original.len());
    let base = original[..base_end].to_ascii_lowercase();
    let base = base.as_str();
    if matches!(base, "enum" | "set") {
        // Member names keep their case.
        return format!("{base}{}", &original[base_end..]);
    }
    let declared = original.to_ascii_lowercase();
    let after = declared[base_end..].trim_start();
    let (args, rest) = match after.strip_prefix('(') {
        Some(inner) => match inner.split_once(')') {
            Some((args, rest)) => (Some(args.replace(' ', "")), rest),
            None => (None, after),
        },
        None => (None, after),
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let zerofill = words.contains(&"zerofill");
    let unsigned = zerofill || words.contains(&"unsigned");
    let numeric = |name: String| {
        let mut text = name;
        if unsigned {
            text.push_str(" unsigned");
        }
        if zerofill {
            text.push_str(" zerofill");
        }
        text
    };
    let sized = |name: &str, default: &str| format!("{name}({})", args.as_deref().unwrap_or(default));
    let fractional = |name: &str| match args.as_deref() {
        None | Some("0") | Some("") => name.to_string(),
        Some(fsp) => format!("{name}({fsp})"),
    };
    if let Some((name, signed_width, unsigned_width)) = integer(base) {
        let default = if unsigned { unsigned_width } else { signed_width };
        let width = args.as_deref().and_then(|w| w.parse::<u32>().ok());
        let keeps_width = dialect != Dialect::MySql || zerofill || (name == "tinyint" && width == Some(1));
        return if keeps_width {
            numeric(format!("{name}({})", width.unwrap_or(default)))
        } else {
            numeric(name.to_string())
        };
    }
    match base {
        "bool" | "boolean" => "tinyint(1)".to_string(),
        "serial" if dialect == Dialect::MySql => "bigint unsigned".to_string(),
        "serial" => "bigint(20) unsigned".to_string(),
        "decimal" | "dec" | "numeric" | "fixed" => {
            let (precision, scale) = match args.as_deref().map(|a| a.split_once(',').unwrap_or((a, "0"))) {
                Some((p, s)) => (p.to_string(), s.to_string()),
                None => ("10".to_string(), "0".to_string()),
            };
            numeric(format!("decimal({precision},{scale})"))
        }
        "float" | "float4" => match args.as_deref() {
            Some(a) if a.contains(',') => numeric(format!("float({a})")),
            Some(p) if p.parse::<u32>().is_ok_and(|p| p > 24) => numeric("double".to_string()),
            _ => numeric("float".to_string()),
        },
        "double" | "real" | "float8" => match args.as_deref() {
            Some(a) if a.contains(',') => numeric(format!("double({a})")),
            _ => numeric("double".to_string()),
        },
        "bit" => sized("bit", "1"),
        "char" | "character" | "nchar" | "national" if words.contains(&"varying") || rest.contains("varchar") => {
            sized(if binary_charset { "varbinary" } else { "varchar" }, "1")
        }
        "char" | "character" | "nchar" => sized(if binary_charset { "binary" } else { "char" }, "1"),
        "varchar" | "nvarchar" => sized(if binary_charset { "varbinary" } else { "varchar" }, "1"),
        "binary" => sized("binary", "1"),
        "varbinary" => sized("varbinary", "1"),
        "year" if dialect == Dialect::MySql => "year".to_string(),
        "year" => "year(4)".to_string(),
        "datetime" | "timestamp" | "time" => fractional(base),
        "json" if dialect.is_mariadb() => "longtext".to_string(),
        _ => match args {
            Some(args) => format!("{base}({args})"),
            None => base.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_told_apart_by_their_version() {
        assert_eq!(Dialect::of_server("10.11.19-MariaDB-0+deb12u1-log"), Dialect::MariaDb);
        assert_eq!(Dialect::of_server("5.7.44-log"), Dialect::MySqlWithWidths);
        assert_eq!(Dialect::of_server("8.0.18"), Dialect::MySqlWithWidths);
        assert_eq!(Dialect::of_server("8.0.19"), Dialect::MySql);
        assert_eq!(Dialect::of_server("9.1.0"), Dialect::MySql);
    }

    #[test]
    fn ddl_types_read_as_mariadb_reports_them() {
        let mariadb = |declared: &str| column_type(declared, false, Dialect::MariaDb);
        assert_eq!(mariadb("INT"), "int(11)");
        assert_eq!(mariadb("int(3)"), "int(3)");
        assert_eq!(mariadb("INT UNSIGNED"), "int(10) unsigned");
        assert_eq!(mariadb("int(10) unsigned zerofill"), "int(10) unsigned zerofill");
        assert_eq!(mariadb("INT ZEROFILL"), "int(10) unsigned zerofill");
        assert_eq!(mariadb("TINYINT(1)"), "tinyint(1)");
        assert_eq!(mariadb("BOOLEAN"), "tinyint(1)");
        assert_eq!(mariadb("bigint unsigned"), "bigint(20) unsigned");
        assert_eq!(mariadb("SERIAL"), "bigint(20) unsigned");
        assert_eq!(mariadb("DECIMAL"), "decimal(10,0)");
        assert_eq!(mariadb("NUMERIC(5)"), "decimal(5,0)");
        assert_eq!(mariadb("decimal(65, 30) unsigned"), "decimal(65,30) unsigned");
        assert_eq!(mariadb("FLOAT(7,3)"), "float(7,3)");
        assert_eq!(mariadb("FLOAT(30)"), "double");
        assert_eq!(mariadb("REAL"), "double");
        assert_eq!(mariadb("DOUBLE(10,4)"), "double(10,4)");
        assert_eq!(mariadb("BIT"), "bit(1)");
        assert_eq!(mariadb("CHAR"), "char(1)");
        assert_eq!(mariadb("YEAR"), "year(4)");
        assert_eq!(mariadb("DATETIME(0)"), "datetime");
        assert_eq!(mariadb("TIMESTAMP(3)"), "timestamp(3)");
        assert_eq!(mariadb("JSON"), "longtext");
        assert_eq!(mariadb("ENUM('a','B')"), "enum('a','B')");
        assert_eq!(mariadb("VARCHAR(20)"), "varchar(20)");
        assert_eq!(mariadb("mediumtext"), "mediumtext");
        assert_eq!(column_type("CHAR(4)", true, Dialect::MariaDb), "binary(4)");
        assert_eq!(column_type("VARCHAR(9)", true, Dialect::MariaDb), "varbinary(9)");
    }

    #[test]
    fn mysql_8_0_19_drops_integer_widths_but_for_tinyint_1_and_zerofill() {
        let mysql = |declared: &str| column_type(declared, false, Dialect::MySql);
        assert_eq!(mysql("int(11)"), "int");
        assert_eq!(mysql("INT UNSIGNED"), "int unsigned");
        assert_eq!(mysql("tinyint(1)"), "tinyint(1)");
        assert_eq!(mysql("tinyint(2)"), "tinyint");
        assert_eq!(mysql("int(5) zerofill"), "int(5) unsigned zerofill");
        assert_eq!(mysql("YEAR"), "year");
        assert_eq!(mysql("JSON"), "json");
        assert_eq!(column_type("int", false, Dialect::MySqlWithWidths), "int(11)");
    }
}
