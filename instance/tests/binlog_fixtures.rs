//! The converter on real binlog files from servers this machine cannot run: MySQL rows events v2, MySQL GTIDs,
//! JSON, ENUM/SET, BIT, MariaDB's native GTID events, and corrupt or truncated files (errors, never panics).
//!
//! The files live outside the project in `../shared/fixtures/mysql-binlogs/` (or under `$CANAL_TEST_FIXTURES`).
//! When they are missing the tests say so and skip, except in CI (`CI=true`), where a missing file fails the test:
//! there a skip would pass without having decoded anything.

use std::io::BufReader;
use std::path::PathBuf;

use canal_instance::convert::ConvertOptions;
use canal_instance::convert::filter::TableFilter;
use canal_instance::decode;
use canal_instance::protocol::entry::RowChange;
use canal_instance::protocol::{Entry, EntryType, EventType};
use prost::Message;

fn fixture(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("CANAL_TEST_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let path = root.join("mysql-binlogs").join(name);
    if path.exists() {
        return Some(path);
    }
    let missing = format!(
        "fixture {} not found (expected beside the project in ../shared, or under $CANAL_TEST_FIXTURES)",
        path.display()
    );
    if in_ci() {
        panic!("{missing}; CI=true, so the binlog fixture tests fail rather than skip");
    }
    eprintln!("SKIPPED: {missing}");
    None
}

/// Whether this runs in CI, as CI services (and `.ci/run`) announce it.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Runs `canal-instance decode --binlog-file PATH EXTRA...`.
fn run_decode(path: &std::path::Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_canal-instance"))
        .args(["decode", "--binlog-file"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

/// Converts every event of a binlog file through `decode` (what `canal-instance decode` runs); returns the
/// entries and the first error, if any.
fn convert_file(name: &str) -> Option<(Vec<Entry>, Option<String>)> {
    let path = fixture(name)?;
    let file = std::fs::File::open(&path).unwrap();
    let length = file.metadata().unwrap().len();
    let mut entries = Vec::new();
    let filter = TableFilter::new("", "").unwrap();
    let options = ConvertOptions::default();
    let result = decode::decode(name, BufReader::new(file), length, options, filter, |_, entry| {
        entries.push(entry);
        Ok(())
    });
    Some((entries, result.err().map(|e| e.to_string())))
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
    let (mut enums, mut sets) = (Vec::new(), Vec::new());
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
                    enums.push(column.value().to_string());
                }
                if column.mysql_type().starts_with("set(") && !column.is_null() {
                    assert_eq!(column.sql_type(), -7);
                    assert!(
                        column.value().parse::<u64>().is_ok(),
                        "SET as bitmask: {}",
                        column.value()
                    );
                    sets.push(column.value().to_string());
                }
            }
        }
    }
    // The file's rows: INSERT ('var1', 'one,three'), UPDATE to ('variant2', 'two,four'), DELETE of that row. Four
    // row images each carry one ENUM and one SET; the checks above ran on every one of them.
    enums.sort();
    sets.sort();
    assert_eq!(enums, ["1", "1", "2", "2"], "ENUM indexes of the four row images");
    assert_eq!(sets, ["10", "10", "5", "5"], "SET bitmasks of the four row images");
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
    let objects: Vec<&String> = json_values
        .iter()
        .filter(|v| v.starts_with('{') && v.len() > 2)
        .collect();
    assert!(
        !objects.is_empty(),
        "the file has non-empty JSON objects: {json_values:?}"
    );
    for v in &objects {
        assert!(v.contains("\": "), "MySQL separators in {v}");
    }
    // Partial updates (binlog_row_value_options=PARTIAL_JSON) read as canal prints them.
    assert!(
        json_values.contains(&"JSON_REPLACE(json_col, '$.age', 26)".to_string()),
        "{json_values:?}"
    );
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
        // No panic, whatever the bytes, and no silent end: a cut-short file is an error too.
        let Some((_entries, error)) = convert_file(name) else {
            return;
        };
        assert!(error.is_some_and(|e| !e.is_empty()), "{name} decoded without an error");
    }
}

#[test]
fn decode_command_prints_the_changes_of_a_binlog_file() {
    let Some(path) = fixture("mysql-enum-string-set.000001") else {
        return;
    };
    let output = run_decode(&path, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("binlog file decoded"), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let insert = lines.iter().find(|l| l["type"] == "INSERT").expect("an INSERT line");
    assert_eq!(insert["destination"], "mysql-enum-string-set.000001");
    assert!(
        insert["position"]
            .as_str()
            .unwrap()
            .starts_with("mysql-enum-string-set.000001:")
    );
    assert!(insert["after"].is_object(), "{insert}");

    // A damaged file is reported with its offset, not skipped.
    let Some(corrupt) = fixture("binlog_truncated_event.000001") else {
        return;
    };
    let output = run_decode(&corrupt, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("truncated or damaged"), "{stderr}");
}

#[test]
fn compressed_transaction_payloads_are_unwrapped() {
    // MySQL 8 with binlog_transaction_compression: the rows sit inside a zstd TRANSACTION_PAYLOAD event.
    let Some((entries, error)) = convert_file("transaction_compression.000001") else {
        return;
    };
    assert_eq!(error, None);
    let inserts: Vec<RowChange> = row_changes(&entries)
        .into_iter()
        .filter(|(kind, _)| *kind == EventType::Insert)
        .map(|(_, change)| change)
        .collect();
    assert_eq!(inserts.len(), 1, "{entries:?}");
    assert_eq!(inserts[0].row_datas[0].after_columns[0].value(), "1");
}

#[test]
fn cursors_carry_mysql_gtid_sets() {
    // MySQL 8 with gtid_mode=ON: a cursor's GTID is the executed set, from the file's previous-GTIDs event plus
    // each completed transaction.
    let Some(path) = fixture("binlog_transaction_with_GTID.000001") else {
        return;
    };
    let file = std::fs::File::open(&path).unwrap();
    let length = file.metadata().unwrap().len();
    let mut positions = Vec::new();
    let mut headers = Vec::new();
    let filter = TableFilter::new("", "").unwrap();
    decode::decode(
        "f",
        BufReader::new(file),
        length,
        ConvertOptions::default(),
        filter,
        |converted, entry| {
            if let Some(gtid) = &converted.gtid {
                positions.push(gtid.clone());
            }
            let header = entry.header.unwrap_or_default();
            if !header.gtid().is_empty() {
                headers.push(header.gtid().to_string());
            }
            Ok(())
        },
    )
    .unwrap();
    assert!(!positions.is_empty(), "transaction ends carry a GTID set");
    let last = positions.last().unwrap();
    let (uuid, ranges) = last.split_once(':').expect("uuid:intervals");
    assert_eq!(uuid.len(), 36, "{last}");
    assert!(
        ranges
            .split(':')
            .all(|r| r.split('-').all(|n| n.parse::<u64>().is_ok())),
        "{last}"
    );
    // Every transaction's own GTID (uuid:gno) lies inside the set that follows it.
    let covered = |gno: u64| {
        ranges.split(':').any(|r| match r.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap()).contains(&gno),
            None => r.parse::<u64>().unwrap() == gno,
        })
    };
    // Every entry of a transaction carries its GTID; the file holds three transactions (see
    // decode_from_a_mysql_gtid_set_leaves_out_the_transactions_in_it).
    let mut transactions = headers.clone();
    transactions.dedup();
    assert_eq!(transactions.len(), 3, "{headers:?}");
    for gtid in &headers {
        let (source, gno) = gtid.rsplit_once(':').unwrap();
        assert_eq!(source, uuid, "{gtid}");
        assert!(covered(gno.parse().unwrap()), "{gtid} not in {last}");
    }
}

#[test]
fn decode_from_a_mysql_gtid_set_leaves_out_the_transactions_in_it() {
    // What a MySQL server answering COM_BINLOG_DUMP_GTID does with the set; the request itself is pinned byte for
    // byte in source.rs's unit test.
    let Some(path) = fixture("binlog_transaction_with_GTID.000001") else {
        return;
    };
    let gtids = |extra: &[&str]| -> Vec<String> {
        let output = run_decode(&path, extra);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["gtid"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let uuid = "006c2cf2-b1ea-11e4-9057-8c705a3d3e78";
    assert_eq!(
        gtids(&[]),
        [format!("{uuid}:1"), format!("{uuid}:2"), format!("{uuid}:3")]
    );
    assert_eq!(gtids(&["--start-gtid", &format!("{uuid}:1-2")]), [format!("{uuid}:3")]);
    assert_eq!(
        gtids(&["--start-gtid", &format!("{uuid}:2")]),
        [format!("{uuid}:1"), format!("{uuid}:3")]
    );
    let output = run_decode(&path, &["--start-gtid", "0-1-2"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a MySQL GTID set"));
}

#[test]
fn minimal_metadata_without_ddl_in_the_file_gives_positional_names_and_says_why() {
    let Some(path) = fixture("minimal_row_metadata.000001") else {
        return;
    };
    let output = run_decode(&path, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no definition of the table"), "{stderr}");
    let insert: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(insert["after"]["@0"], "1", "{insert}");
}
