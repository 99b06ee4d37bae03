//! The protobuf writer for row changes. A RowChange's rows go straight into the encoded message, each column
//! encoded once: built as nested prost messages, every column's length was computed three times over (RowChange,
//! RowData, Column), a quarter of the instance's CPU time on wide rows. Field order and bytes are what prost writes,
//! which the test below checks against prost itself.

use crate::schema::table::ColumnInfo;

/// Field numbers of EntryProtocol.proto that the rows encoder writes itself.
pub(super) const ROW_CHANGE_ROW_DATAS: u32 = 12;
const ROW_DATA_BEFORE_COLUMNS: u32 = 1;
const ROW_DATA_AFTER_COLUMNS: u32 = 2;

/// Protobuf wire types of the fields written here.
const VARINT: u32 = 0;
const LENGTH_DELIMITED: u32 = 2;

/// Appends a varint; most are one byte (keys, flags, short lengths), which skips prost's general loop.
fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        prost::encoding::encode_varint(value, out);
    }
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

/// Appends a length-delimited field: an encoded message or a string's bytes.
pub(super) fn put_message(out: &mut Vec<u8>, field: u32, message: &[u8]) {
    put_key(out, field, LENGTH_DELIMITED);
    put_varint(out, message.len() as u64);
    out.extend_from_slice(message);
}

/// Appends an int32 field as protobuf does: negative values sign-extended to ten bytes.
fn put_int32(out: &mut Vec<u8>, field: u32, value: i32) {
    put_key(out, field, VARINT);
    put_varint(out, i64::from(value) as u64);
}

fn put_bool(out: &mut Vec<u8>, field: u32, value: bool) {
    put_key(out, field, VARINT);
    out.push(u8::from(value));
}

/// One rendered column of a row image: what an Entry's Column holds, borrowing the name and MySQL type from the
/// table's description instead of copying them into every row.
pub(super) struct RenderedColumn<'a> {
    pub(super) index: usize,
    pub(super) info: &'a ColumnInfo,
    pub(super) sql_type: i32,
    pub(super) value: Option<String>,
    pub(super) updated: bool,
}

impl RenderedColumn<'_> {
    /// Writes the Column message's fields as prost writes a Column with `index`, `sqlType`, `name`, `isKey`,
    /// `updated`, `isNull`, `value` (unless NULL) and `mysqlType` set.
    fn encode(&self, out: &mut Vec<u8>) {
        put_int32(out, 1, self.index as i32);
        put_int32(out, 2, self.sql_type);
        put_message(out, 3, self.info.name.as_bytes());
        put_bool(out, 4, self.info.primary_key);
        put_bool(out, 5, self.updated);
        put_bool(out, 6, self.value.is_none());
        if let Some(value) = &self.value {
            put_message(out, 8, value.as_bytes());
        }
        put_message(out, 10, self.info.mysql_type.as_bytes());
    }
}

/// Encodes a RowData (without its length prefix) into `out`, using `scratch` for each column.
pub(super) fn encode_row_data(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    before: &[RenderedColumn<'_>],
    after: &[RenderedColumn<'_>],
) {
    out.clear();
    for (field, list) in [(ROW_DATA_BEFORE_COLUMNS, before), (ROW_DATA_AFTER_COLUMNS, after)] {
        for c in list {
            scratch.clear();
            c.encode(scratch);
            put_message(out, field, scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::protocol::EventType;
    use crate::protocol::entry::{Column, RowChange, RowData};

    #[test]
    fn rows_written_field_by_field_are_the_bytes_prost_writes() {
        let info = |index: usize, sql_type: &str| ColumnInfo {
            index,
            name: format!("c{index}"),
            column_type: mysql_common::constants::ColumnType::MYSQL_TYPE_LONG,
            meta: Vec::new(),
            unsigned: false,
            primary_key: index == 0,
            collation: 0,
            members: Vec::new(),
            mysql_type: sql_type.to_string(),
        };
        let infos = [info(0, "int(11)"), info(1, "varchar(20)")];
        let ours_column = |index: usize, value: Option<&str>, updated: bool| RenderedColumn {
            index,
            info: &infos[index],
            // Negative sqlTypes (BIGINT is -5) take ten bytes as a varint.
            sql_type: if index == 1 { -5 } else { 4 },
            value: value.map(str::to_string),
            updated,
        };
        let prost_column = |c: &RenderedColumn<'_>| Column {
            index: Some(c.index as i32),
            sql_type: Some(c.sql_type),
            name: Some(c.info.name.clone()),
            is_key: Some(c.info.primary_key),
            updated: Some(c.updated),
            is_null: Some(c.value.is_none()),
            value: c.value.clone(),
            mysql_type: Some(c.info.mysql_type.clone()),
            ..Default::default()
        };
        let before = vec![ours_column(0, Some("1"), false), ours_column(1, None, false)];
        // A value longer than 127 bytes takes a two-byte length.
        let long = "x".repeat(200);
        let after = vec![ours_column(0, Some("1"), false), ours_column(1, Some(&long), true)];
        let head = RowChange {
            table_id: Some(42),
            event_type: Some(EventType::Update as i32),
            is_ddl: Some(false),
            ..Default::default()
        };
        let mut expected = head.clone();
        let mut ours = head.encode_to_vec();
        let (mut row_data, mut scratch) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            expected.row_datas.push(RowData {
                before_columns: before.iter().map(prost_column).collect(),
                after_columns: after.iter().map(prost_column).collect(),
                props: Vec::new(),
            });
            encode_row_data(&mut row_data, &mut scratch, &before, &after);
            put_message(&mut ours, ROW_CHANGE_ROW_DATAS, &row_data);
        }
        assert_eq!(ours, expected.encode_to_vec());
    }
}
