//! Every column type of canal-compat §2.4 through a real MariaDB binlog: value, sqlType, mysqlType, isKey, isNull
//! and updated, for INSERT, UPDATE and DELETE.

mod common;

use std::time::Duration;

use canal_e2e::MariaDb;
use canal_instance::protocol::EventType;
use canal_instance::protocol::entry::Column;
use common::{Fixture, changes, exec, receive_rows, setup_schema};

const TABLE: &str = "CREATE TABLE all_types (
    id INT NOT NULL PRIMARY KEY,
    t_tiny TINYINT, t_tiny_u TINYINT UNSIGNED, t_small SMALLINT, t_small_u SMALLINT UNSIGNED,
    t_medium MEDIUMINT, t_medium_u MEDIUMINT UNSIGNED, t_int INT, t_int_u INT UNSIGNED,
    t_big BIGINT, t_big_u BIGINT UNSIGNED,
    t_float FLOAT, t_double DOUBLE, t_decimal DECIMAL(10,2), t_decimal_neg DECIMAL(20,6),
    t_bit BIT(10), t_bit1 BIT(1), t_year YEAR, t_date DATE, t_zero_date DATE,
    t_dt0 DATETIME, t_dt3 DATETIME(3), t_dt6 DATETIME(6),
    t_ts0 TIMESTAMP NULL, t_ts1 TIMESTAMP(1) NULL, t_ts6 TIMESTAMP(6) NULL,
    t_time0 TIME, t_time2 TIME(2), t_time_neg TIME(6),
    t_char CHAR(5), t_varchar VARCHAR(20), t_latin1 VARCHAR(10) CHARACTER SET latin1,
    t_binary BINARY(4), t_varbinary VARBINARY(8),
    t_tinyblob TINYBLOB, t_blob BLOB, t_mediumblob MEDIUMBLOB, t_longblob LONGBLOB,
    t_tinytext TINYTEXT, t_text TEXT, t_mediumtext MEDIUMTEXT, t_longtext LONGTEXT,
    t_enum ENUM('a','b','c'), t_set SET('x','y','z'), t_json JSON, t_geo GEOMETRY,
    t_bool TINYINT(1), t_int3 INT(3), t_zerofill INT UNSIGNED ZEROFILL, t_float73 FLOAT(7,3), t_double104 DOUBLE(10,4),
    t_char_bin CHAR(3) CHARACTER SET binary, t_enum_latin1 ENUM('café','naïve') CHARACTER SET latin1
) DEFAULT CHARSET=utf8mb4";

const INSERT: &str = "INSERT INTO all_types VALUES (1,
    -128, 255, -32768, 65535, -8388608, 16777215, -2146483648, 4294967295,
    -9223372036854675808, 18446744073709551615,
    1.5, 1e10, 500.00, -1.500000,
    b'1010', b'1', 2024, '2024-02-29', '0000-00-00',
    '2024-01-02 03:04:05', '2024-01-02 03:04:05.120', '2024-01-02 03:04:05.000001',
    '2024-01-02 03:04:05', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.123456',
    '12:34:56', '838:59:59.99', '-01:02:03.000004',
    'ab', 'héllo 😀', 'café', x'00ff', x'00ff80',
    x'01', x'0203', x'04', x'ff00',
    'tiny', 'text', 'medium', 'long',
    'b', 'x,z', '{\"a\": [1, 2]}', ST_GeomFromText('POINT(1 2)'),
    1, 7, 42, 1.5, 2.25, 'ab', 'naïve')";

const INSERT_NULLS: &str = "INSERT INTO all_types (id) VALUES (2)";

/// (column, value, sqlType, mysqlType) of row 1 as canal-rs must render them.
const EXPECTED: &[(&str, &str, i32, &str)] = &[
    ("id", "1", 4, "int(11)"),
    ("t_tiny", "-128", -6, "tinyint(4)"),
    ("t_tiny_u", "255", 5, "tinyint(3) unsigned"),
    ("t_small", "-32768", 5, "smallint(6)"),
    ("t_small_u", "65535", 4, "smallint(5) unsigned"),
    ("t_medium", "-8388608", 4, "mediumint(9)"),
    ("t_medium_u", "16777215", 4, "mediumint(8) unsigned"),
    ("t_int", "-2146483648", 4, "int(11)"),
    ("t_int_u", "4294967295", -5, "int(10) unsigned"),
    ("t_big", "-9223372036854675808", -5, "bigint(20)"),
    ("t_big_u", "18446744073709551615", 3, "bigint(20) unsigned"),
    ("t_float", "1.5", 7, "float"),
    ("t_double", "1.0E10", 8, "double"),
    ("t_decimal", "500.00", 3, "decimal(10,2)"),
    ("t_decimal_neg", "-1.500000", 3, "decimal(20,6)"),
    ("t_bit", "10", -7, "bit(10)"),
    ("t_bit1", "1", -7, "bit(1)"),
    ("t_year", "2024", 12, "year(4)"),
    ("t_date", "2024-02-29", 91, "date"),
    ("t_zero_date", "0000-00-00", 91, "date"),
    ("t_dt0", "2024-01-02 03:04:05", 93, "datetime"),
    ("t_dt3", "2024-01-02 03:04:05.120", 93, "datetime(3)"),
    ("t_dt6", "2024-01-02 03:04:05.000001", 93, "datetime(6)"),
    ("t_ts0", "2024-01-02 03:04:05", 93, "timestamp"),
    ("t_ts1", "2024-01-02 03:04:05.5", 93, "timestamp(1)"),
    ("t_ts6", "2024-01-02 03:04:05.123456", 93, "timestamp(6)"),
    ("t_time0", "12:34:56", 92, "time"),
    ("t_time2", "838:59:59.99", 92, "time(2)"),
    ("t_time_neg", "-01:02:03.000004", 92, "time(6)"),
    ("t_char", "ab", 1, "char(5)"),
    ("t_varchar", "héllo 😀", 12, "varchar(20)"),
    ("t_latin1", "café", 12, "varchar(10)"),
    // The binlog drops BINARY's trailing 0x00 padding; canal passes the bytes on as they come.
    ("t_binary", "\u{0}\u{ff}", 2004, "binary(4)"),
    ("t_varbinary", "\u{0}\u{ff}\u{80}", 2004, "varbinary(8)"),
    ("t_tinyblob", "\u{1}", 2004, "tinyblob"),
    ("t_blob", "\u{2}\u{3}", 2004, "blob"),
    ("t_mediumblob", "\u{4}", 2004, "mediumblob"),
    ("t_longblob", "\u{ff}\u{0}", 2004, "longblob"),
    ("t_tinytext", "tiny", 2005, "tinytext"),
    ("t_text", "text", 2005, "text"),
    ("t_mediumtext", "medium", 2005, "mediumtext"),
    ("t_longtext", "long", 2005, "longtext"),
    ("t_enum", "2", 4, "enum('a','b','c')"),
    ("t_set", "5", -7, "set('x','y','z')"),
    // MariaDB's JSON is LONGTEXT with a check constraint: it arrives as text.
    ("t_json", "{\"a\": [1, 2]}", 2005, "longtext"),
    // Declared widths, ZEROFILL and FLOAT(M,D) are not in the binlog: they come from the schema history.
    ("t_bool", "1", -6, "tinyint(1)"),
    ("t_int3", "7", 4, "int(3)"),
    ("t_zerofill", "42", 4, "int(10) unsigned zerofill"),
    ("t_float73", "1.5", 7, "float(7,3)"),
    ("t_double104", "2.25", 8, "double(10,4)"),
    ("t_char_bin", "ab", 2004, "binary(3)"),
    ("t_enum_latin1", "2", 4, "enum('café','naïve')"),
];

/// sqlType of each nullable column when NULL (no unsigned bump; SET and GEOMETRY map to BLOB).
const NULL_TYPES: &[(&str, i32)] = &[
    ("t_tiny_u", -6),
    ("t_small_u", 5),
    ("t_int_u", 4),
    ("t_big_u", -5),
    ("t_float", 7),
    ("t_decimal", 3),
    ("t_bit", -7),
    ("t_year", 12),
    ("t_date", 91),
    ("t_dt6", 93),
    ("t_ts6", 93),
    ("t_time2", 92),
    ("t_char", 1),
    ("t_varchar", 12),
    ("t_binary", 2004),
    ("t_varbinary", 2004),
    ("t_blob", 2004),
    ("t_text", 2005),
    ("t_enum", 4),
    ("t_set", 2004),
    ("t_geo", 2004),
];

fn column<'a>(columns: &'a [Column], name: &str) -> &'a Column {
    columns
        .iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

#[tokio::test]
async fn every_column_type_renders_like_canal() {
    let db = MariaDb::shared();
    setup_schema(db, "types_db", &[TABLE]).await;
    let fixture = Fixture::start(db, "types_db", "").await;
    exec(
        db,
        "types_db",
        &[
            INSERT,
            INSERT_NULLS,
            "UPDATE all_types SET t_varchar = 'changed', t_int = NULL WHERE id = 1",
            "DELETE FROM all_types WHERE id = 2",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let entries = receive_rows(&mut client, 4, Duration::from_secs(30)).await;
    let rows = changes(&entries);
    assert_eq!(
        rows.iter().map(|c| c.event_type).collect::<Vec<_>>(),
        [
            EventType::Insert,
            EventType::Insert,
            EventType::Update,
            EventType::Delete
        ]
    );
    assert!(rows.iter().all(|c| c.schema == "types_db" && c.table == "all_types"));

    // INSERT: every column has canal's value, types and flags; every insert column is `updated`.
    let after = &rows[0].row.after_columns;
    assert!(rows[0].row.before_columns.is_empty());
    assert_eq!(after.len(), 53);
    for (i, c) in after.iter().enumerate() {
        assert_eq!(c.index(), i as i32, "{}", c.name());
        assert_eq!(c.is_key(), c.name() == "id", "isKey of {}", c.name());
        assert!(c.updated(), "insert columns are updated: {}", c.name());
    }
    for (name, value, sql_type, mysql_type) in EXPECTED {
        let c = column(after, name);
        assert_eq!(
            (c.value(), c.sql_type(), c.mysql_type(), c.is_null()),
            (*value, *sql_type, *mysql_type, false),
            "column {name}"
        );
    }
    let geo = column(after, "t_geo");
    assert_eq!((geo.sql_type(), geo.mysql_type()), (2004, "geometry"));
    let geo_bytes: Vec<u8> = geo.value().chars().map(|c| c as u32 as u8).collect();
    assert_eq!(geo_bytes.len(), 25, "SRID + WKB point");
    assert_eq!(
        &geo_bytes[..9],
        &[0, 0, 0, 0, 1, 1, 0, 0, 0],
        "SRID 0, little-endian WKB POINT"
    );

    // NULLs: isNull, no value, canal's type-map code.
    let nulls = &rows[1].row.after_columns;
    for (name, sql_type) in NULL_TYPES {
        let c = column(nulls, name);
        assert!(c.is_null() && c.value.is_none(), "{name} is NULL");
        assert_eq!(c.sql_type(), *sql_type, "NULL sqlType of {name}");
    }

    // UPDATE: before image all not-updated; after image marks exactly the changed columns.
    let update = &rows[2].row;
    assert_eq!(update.before_columns.len(), 53);
    assert!(update.before_columns.iter().all(|c| !c.updated()));
    assert_eq!(column(&update.before_columns, "t_varchar").value(), "héllo 😀");
    let changed: Vec<&str> = update
        .after_columns
        .iter()
        .filter(|c| c.updated())
        .map(|c| c.name())
        .collect();
    assert_eq!(changed, ["t_int", "t_varchar"]);
    assert!(column(&update.after_columns, "t_int").is_null());

    // DELETE: before image only.
    let delete = &rows[3].row;
    assert!(delete.after_columns.is_empty());
    assert_eq!(column(&delete.before_columns, "id").value(), "2");
    assert!(delete.before_columns.iter().all(|c| !c.updated()));
}

#[tokio::test]
async fn declared_types_follow_the_ddl_read_from_the_binlog() {
    let db = MariaDb::shared();
    setup_schema(db, "declared_db", &[]).await;
    let fixture = Fixture::start(db, "declared_db", "").await;
    exec(
        db,
        "declared_db",
        &[
            "CREATE TABLE d (id INT UNSIGNED PRIMARY KEY, flag BOOL, code INT(4) ZEROFILL, price FLOAT(7,3), \
             raw CHAR(2) CHARACTER SET binary, kind ENUM('é','ü') CHARACTER SET latin1, born YEAR)",
            "INSERT INTO d VALUES (1, 1, 5, 1.25, 'a', 'ü', 2024)",
            "ALTER TABLE d MODIFY flag TINYINT(2), MODIFY code BIGINT",
            "INSERT INTO d VALUES (2, 2, 6, 1.5, 'b', 'é', 2025)",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let rows = changes(&receive_rows(&mut client, 2, Duration::from_secs(30)).await);
    let types = |row: usize| -> Vec<String> {
        rows[row]
            .row
            .after_columns
            .iter()
            .map(|c| c.mysql_type().to_string())
            .collect()
    };
    assert_eq!(
        types(0),
        [
            "int(10) unsigned",
            "tinyint(1)",
            "int(4) unsigned zerofill",
            "float(7,3)",
            "binary(2)",
            "enum('é','ü')",
            "year(4)"
        ],
        "as MariaDB's information_schema reports the CREATE TABLE"
    );
    assert_eq!(
        &types(1)[1..3],
        ["tinyint(2)", "bigint(20)"],
        "the row after the ALTER has the new declarations"
    );
}
