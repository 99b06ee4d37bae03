//! canal's FlatMessage: one JSON object per entry, the form most of canal's Kafka users read (Flink's `canal-json`,
//! Paimon, Hudi, SeaTunnel, canal's client-adapter).
//!
//! The JSON is what canal 1.1.7 publishes (fastjson2 with `WriteNulls`): every field present, `null` when unset,
//! fields in alphabetical order, maps in column order. The content follows canal's converter, quirks included: the
//! primary key names come from the first row, `old` of an UPDATE holds the before-values of every column marked
//! updated in this or an earlier row of the entry, and DDL has no `data`, `old`, `sqlType` or `mysqlType`.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::protocol::entry::{Column, Entry, RowChange};
use crate::protocol::{EntryType, EventType};

/// Pairs in insertion order, serialized as a JSON object (Java's LinkedHashMap).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Ordered<V> {
    /// Java's `LinkedHashMap.put`: a key keeps its first position, its value is replaced.
    fn put(&mut self, key: &str, value: V) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A row: column name → value, `None` for SQL NULL.
pub type Row = Ordered<Option<String>>;

/// canal's FlatMessage, fields in the order canal's JSON has them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlatMessage {
    pub data: Option<Vec<Row>>,
    pub database: String,
    pub es: Option<i64>,
    pub gtid: Option<String>,
    /// The canal batch id.
    pub id: i64,
    #[serde(rename = "isDdl")]
    pub is_ddl: bool,
    #[serde(rename = "mysqlType")]
    pub mysql_type: Option<Ordered<String>>,
    pub old: Option<Vec<Row>>,
    #[serde(rename = "pkNames")]
    pub pk_names: Option<Vec<String>>,
    pub sql: String,
    #[serde(rename = "sqlType")]
    pub sql_type: Option<Ordered<i32>>,
    pub table: String,
    /// When the message was built, milliseconds since the epoch.
    pub ts: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FlatMessage {
    /// The JSON bytes canal publishes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A message with the same head (everything but `data` and `old`) and no rows: where canal splits an entry's
    /// rows over partitions.
    pub fn without_rows(&self) -> Self {
        Self {
            data: None,
            old: None,
            ..self.clone()
        }
    }
}

fn value(column: &Column) -> Option<String> {
    (!column.is_null()).then(|| column.value().to_string())
}

/// The FlatMessage of one entry of batch `batch_id` built at `now_ms`, or `None` for TRANSACTIONBEGIN/END (canal
/// publishes no messages for them) and for entries that are not row data.
pub fn flat_message(batch_id: i64, entry: &Entry, change: &RowChange, now_ms: i64) -> Option<FlatMessage> {
    if entry.entry_type() != EntryType::Rowdata {
        return None;
    }
    let header = entry.header.clone().unwrap_or_default();
    let event_type = change.event_type();
    let mut message = FlatMessage {
        data: None,
        database: header.schema_name().to_string(),
        es: Some(header.execute_time()),
        gtid: header.gtid.clone(),
        id: batch_id,
        is_ddl: change.is_ddl(),
        mysql_type: None,
        old: None,
        pk_names: None,
        sql: change.sql().to_string(),
        sql_type: None,
        table: header.table_name().to_string(),
        ts: now_ms,
        kind: event_type.as_str_name().to_string(),
    };
    let is_dml = matches!(event_type, EventType::Insert | EventType::Update | EventType::Delete);
    if change.is_ddl() || !is_dml {
        return Some(message);
    }
    let mut sql_types = Ordered::default();
    let mut mysql_types = Ordered::default();
    let mut data = Vec::new();
    let mut old = Vec::new();
    let mut updated: Vec<String> = Vec::new();
    // canal takes the key names from the first row only.
    let mut keys_read = false;
    for row in &change.row_datas {
        let columns = if event_type == EventType::Delete {
            &row.before_columns
        } else {
            &row.after_columns
        };
        let mut image = Row::default();
        for column in columns {
            if !keys_read && column.is_key() {
                message
                    .pk_names
                    .get_or_insert_with(Vec::new)
                    .push(column.name().to_string());
            }
            sql_types.put(column.name(), column.sql_type());
            mysql_types.put(column.name(), column.mysql_type().to_string());
            image.put(column.name(), value(column));
            if column.updated() && !updated.iter().any(|u| u == column.name()) {
                updated.push(column.name().to_string());
            }
        }
        keys_read = true;
        if !image.0.is_empty() {
            data.push(image);
        }
        if event_type == EventType::Update {
            let mut before = Row::default();
            for column in &row.before_columns {
                if updated.iter().any(|u| u == column.name()) {
                    before.put(column.name(), value(column));
                }
            }
            if !before.0.is_empty() {
                old.push(before);
            }
        }
    }
    message.sql_type = (!sql_types.0.is_empty()).then_some(sql_types);
    message.mysql_type = (!mysql_types.0.is_empty()).then_some(mysql_types);
    message.data = (!data.is_empty()).then_some(data);
    message.old = (!old.is_empty()).then_some(old);
    Some(message)
}

/// The value a row's column has, for hashing: canal hashes `""` for a missing or NULL value.
pub fn row_value<'a>(row: &'a Row, column: &str) -> &'a str {
    row.get(column).and_then(|v| v.as_deref()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entry::{Header, RowData};
    use prost::Message;

    fn column(index: i32, name: &str, value: Option<&str>, key: bool, updated: bool) -> Column {
        Column {
            index: Some(index),
            sql_type: Some(if name == "id" { 4 } else { 12 }),
            name: Some(name.into()),
            is_key: Some(key),
            updated: Some(updated),
            is_null: Some(value.is_none()),
            value: value.map(String::from),
            mysql_type: Some(if name == "id" { "int(11)" } else { "varchar(10)" }.into()),
            ..Default::default()
        }
    }

    fn entry(event_type: EventType, change: &RowChange) -> Entry {
        Entry {
            header: Some(Header {
                schema_name: Some("shop".into()),
                table_name: Some("t".into()),
                execute_time: Some(1_700_000_000_000),
                event_type: Some(event_type as i32),
                ..Default::default()
            }),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(change.encode_to_vec().into()),
        }
    }

    #[test]
    fn an_update_reads_as_canal_publishes_it() {
        let change = RowChange {
            event_type: Some(EventType::Update as i32),
            is_ddl: Some(false),
            row_datas: vec![
                RowData {
                    before_columns: vec![
                        column(0, "id", Some("1"), true, false),
                        column(1, "v", Some("a"), false, false),
                    ],
                    after_columns: vec![
                        column(0, "id", Some("1"), true, false),
                        column(1, "v", None, false, true),
                    ],
                    ..Default::default()
                },
                RowData {
                    before_columns: vec![
                        column(0, "id", Some("2"), true, false),
                        column(1, "v", Some("b"), false, false),
                    ],
                    after_columns: vec![
                        column(0, "id", Some("2"), true, false),
                        column(1, "v", Some("b"), false, false),
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let message = flat_message(9, &entry(EventType::Update, &change), &change, 5).unwrap();
        assert_eq!(
            String::from_utf8(message.to_json()).unwrap(),
            r#"{"data":[{"id":"1","v":null},{"id":"2","v":"b"}],"database":"shop","es":1700000000000,"gtid":null,"id":9,"isDdl":false,"mysqlType":{"id":"int(11)","v":"varchar(10)"},"old":[{"v":"a"},{"v":"b"}],"pkNames":["id"],"sql":"","sqlType":{"id":4,"v":12},"table":"t","ts":5,"type":"UPDATE"}"#
        );
    }

    #[test]
    fn ddl_has_no_rows_or_types() {
        let change = RowChange {
            event_type: Some(EventType::Alter as i32),
            is_ddl: Some(true),
            sql: Some("ALTER TABLE t ADD c INT".into()),
            ..Default::default()
        };
        let message = flat_message(3, &entry(EventType::Alter, &change), &change, 5).unwrap();
        assert_eq!(
            String::from_utf8(message.to_json()).unwrap(),
            r#"{"data":null,"database":"shop","es":1700000000000,"gtid":null,"id":3,"isDdl":true,"mysqlType":null,"old":null,"pkNames":null,"sql":"ALTER TABLE t ADD c INT","sqlType":null,"table":"t","ts":5,"type":"ALTER"}"#
        );
    }
}
