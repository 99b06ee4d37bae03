//! The converter on real binlog files from servers this machine cannot run: MySQL rows events v2, MySQL GTIDs,
//! JSON, ENUM/SET, BIT, MariaDB's native GTID events, and corrupt or truncated files (errors, never panics).
//!
//! The files live outside the project in `../shared/fixtures/mysql-binlogs/`. When they are missing the tests say
//! so and skip.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use canal_instance::convert::{ConvertOptions, Converted, Converter};
use canal_instance::filter::TableFilter;
use canal_instance::position::ResumePoint;
use canal_instance::proto::entry::RowChange;
use canal_instance::proto::{Entry, EntryType, EventType};
use mysql_common::binlog::BinlogFile;
use mysql_common::binlog::consts::BinlogVersion;
use prost::Message;

fn fixture(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/mysql-binlogs")
        .join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: fixture {} not found (expected beside the project in ../shared)",
            path.display()
        );
        None
    }
}

/// Converts every event of a binlog file; returns the entries and the first error, if any.
fn convert_file(name: &str) -> Option<(Vec<Entry>, Option<String>)> {
    let path = fixture(name)?;
    let file = std::fs::File::open(&path).unwrap();
    let options = ConvertOptions::default();
    let filter = Arc::new(RwLock::new(TableFilter::new("", "").unwrap()));
    let mut converter = Converter::new(options, filter, &ResumePoint::at(name, 4));
    let mut entries = Vec::new();
    let binlog = match BinlogFile::new(BinlogVersion::Version4, BufReader::new(file)) {
        Ok(b) => b,
        Err(e) => return Some((entries, Some(e.to_string()))),
    };
    for event in binlog {
        let event = match event {
            Ok(e) => e,
            Err(e) => return Some((entries, Some(e.to_string()))),
        };
        match converter.convert(&event) {
            Ok(converted) => entries.extend(
                converted
                    .into_iter()
                    .map(|c: Converted| Entry::decode(c.bytes).unwrap()),
            ),
            Err(e) => return Some((entries, Some(e.to_string()))),
        }
    }
    Some((entries, None))
}

fn row_changes(entries: &[Entry]) -> Vec<(EventType, RowChange)> {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .map(|e| {
            let change = RowChange::decode(e.store_value.clone().unwrap_or_default()).unwrap();
            (e.header.clone().unwrap_or_default().event_type(), change)
        })
        .filter(|(_, c)| !c.is_ddl())
        .collect()
}

#[test]
fn mysql8_rows_v2_with_enum_and_set() {
    let Some((entries, error)) = convert_file("mysql-enum-string-set.000001") else {
        return;
    };
    assert_eq!(error, None);
    let rows = row_changes(&entries);
    let kinds: Vec<EventType> = rows.iter().map(|(t, _)| *t).collect();
    assert!(kinds.contains(&EventType::Insert), "{kinds:?}");
    for (_, change) in &rows {
        for row in &change.row_datas {
            for column in row.after_columns.iter().chain(&row.before_columns) {
                if column.mysql_type().starts_with("enum(") && !column.is_null() {
                    assert_eq!(column.sql_type(), 4);
                    assert!(
                        column.value().parse::<u32>().is_ok(),
                        "ENUM as index: {}",
                        column.value()
                    );
                }
                if column.mysql_type().starts_with("set(") && !column.is_null() {
                    assert_eq!(column.sql_type(), -7);
                    assert!(
                        column.value().parse::<u64>().is_ok(),
                        "SET as bitmask: {}",
                        column.value()
                    );
                }
            }
        }
    }
    assert!(entries.iter().any(|e| e.entry_type() == EntryType::Transactionbegin));
    assert!(entries.iter().any(|e| e.entry_type() == EntryType::Transactionend));
}

#[test]
fn mysql8_json_values_render_as_mysql_text() {
    let Some((entries, error)) = convert_file("json.binlog.000001") else {
        return;
    };
    assert_eq!(error, None);
    let json_values: Vec<String> = row_changes(&entries)
        .iter()
        .flat_map(|(_, c)| c.row_datas.iter().flat_map(|r| r.after_columns.iter()))
        .filter(|c| c.mysql_type() == "json" && !c.is_null())
        .map(|c| c.value().to_string())
        .collect();
    assert!(!json_values.is_empty());
    for v in &json_values {
        if v.starts_with('{') && v.len() > 2 {
            assert!(v.contains("\": "), "MySQL separators in {v}");
        }
    }
}

#[test]
fn mysql_bit_columns_are_unsigned_numbers() {
    let Some((entries, error)) = convert_file("mysql_type_bit.000001") else {
        return;
    };
    assert_eq!(error, None);
    let rows = row_changes(&entries);
    let mut seen = 0;
    for (_, change) in &rows {
        for c in change.row_datas.iter().flat_map(|r| r.after_columns.iter()) {
            if c.mysql_type().starts_with("bit(") && !c.is_null() {
                assert_eq!(c.sql_type(), -7);
                c.value().parse::<u64>().unwrap();
                seen += 1;
            }
        }
    }
    assert!(seen > 0);
}

#[test]
fn mysql_gtid_transactions_convert() {
    for name in ["binlog_transaction_with_GTID.000001", "binlog-invisible-columns.000001"] {
        let Some((entries, error)) = convert_file(name) else {
            return;
        };
        assert_eq!(error, None, "{name}");
        assert!(!entries.is_empty(), "{name}");
    }
}

#[test]
fn mariadb_native_gtid_events_open_transactions() {
    let Some((entries, error)) = convert_file("mariadb-bin.000001") else {
        return;
    };
    assert_eq!(error, None);
    let begins = entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Transactionbegin)
        .count();
    let ends = entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Transactionend)
        .count();
    assert!(begins > 0 && begins == ends, "BEGIN {begins} / END {ends}");
    assert!(!row_changes(&entries).is_empty());
}

#[test]
fn corrupt_and_truncated_files_give_errors_not_panics() {
    for name in [
        "corrupt-relay-bin.000624",
        "binlog_truncated_event.000001",
        "binlog_truncated_prev_gtid_event.000001",
    ] {
        // Reaching the end of this loop body at all is the assertion: no panic, whatever the bytes.
        let Some((_entries, error)) = convert_file(name) else {
            return;
        };
        if let Some(error) = error {
            assert!(!error.is_empty(), "{name}");
        }
    }
}
