//! Row events to RowChange entries: each row image is read straight from the event's bytes, rendered column by
//! column (see [`value`](super::value)), and encoded with [`encode`](super::encode). mysql_common indexes metadata
//! and buffers without bounds checks in places, so a malformed event becomes a decode error, never a crash.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use mysql_common::binlog::events::RowsEventData;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::misc::raw::RawInt;
use mysql_common::misc::raw::int::LenEnc;
use prost::Message;

use super::encode::{ROW_CHANGE_ROW_DATAS, RenderedColumn, encode_row_data, put_message};
use super::{Converted, Converter, EntryKind, EventInfo, value};
use crate::protocol::entry::{Entry, RowChange};
use crate::protocol::{EntryType, EventType, pair};
use crate::schema::table::TableInfo;

impl Converter {
    pub(super) fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        info: &EventInfo,
    ) -> std::result::Result<Vec<Converted>, String> {
        let table_id = rows.table_id();
        let table = self.schema.table(table_id).ok_or_else(|| {
            format!(
                "rows event for table id {table_id} has no preceding TABLE_MAP event (dump started mid-transaction?)"
            )
        })?;
        let info_table = table.info.clone();
        let accepted = self.options.rows
            && self
                .filter
                .read()
                .map(|f| f.accepts(&info_table.schema, &info_table.table))
                .unwrap_or(true);
        if !accepted {
            return Ok(Vec::new());
        }
        let event_type = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => EventType::Insert,
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => EventType::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => EventType::Delete,
        };
        let before_image = image_columns(rows.columns_before_image(), info_table.columns.len());
        let after_image = image_columns(rows.columns_after_image(), info_table.columns.len());
        let delivered = self.delivered.get(&table_id).and_then(|d| d.as_deref());
        let tz = &self.options.time_zone;
        // mysql_common indexes metadata and buffers without bounds checks in places; a malformed event must become
        // a decode error, never a crash of the process.
        // The RowChange is written field by field: its rows go straight into the encoded message, each column
        // encoded once. Built as nested prost messages, every column's length was computed three times over
        // (RowChange, RowData, Column), a quarter of the instance's CPU time on wide rows. Field order and bytes are
        // what prost would write.
        let head = RowChange {
            table_id: Some(table_id as i64),
            event_type: Some(event_type as i32),
            is_ddl: Some(false),
            ..Default::default()
        };
        let mut change = head.encode_to_vec();
        let decoded = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<usize, String> {
            let row_error = |e: std::io::Error| format!("row of `{}`.`{}`: {e}", info_table.schema, info_table.table);
            let mut count = 0;
            let mut row_data = Vec::new();
            let mut column = Vec::new();
            let mut push = |before: Option<Vec<Option<BinlogValue<'static>>>>,
                            after: Option<Vec<Option<BinlogValue<'static>>>>| {
                let before_columns = match &before {
                    Some(r) => render_image(&info_table, &before_image, delivered, r, None, tz)?,
                    None => Vec::new(),
                };
                let after_columns = match &after {
                    Some(r) => render_image(&info_table, &after_image, delivered, r, Some(&before_columns), tz)?,
                    None => Vec::new(),
                };
                encode_row_data(&mut row_data, &mut column, &before_columns, &after_columns);
                put_message(&mut change, ROW_CHANGE_ROW_DATAS, &row_data);
                count += 1;
                Ok::<(), String>(())
            };
            // A partial JSON update's after image starts with a shared part: which JSON columns hold diffs.
            let partial = matches!(rows, RowsEventData::PartialUpdateRowsEvent(_));
            let mut data = rows.rows_data();
            while !data.is_empty() {
                let before = match rows.columns_before_image() {
                    Some(_) => Some(read_image(&mut data, &info_table, &before_image, &[]).map_err(row_error)?),
                    None => None,
                };
                let after = match rows.columns_after_image() {
                    Some(_) => {
                        let diffs = if partial {
                            read_partial_json_columns(&mut data, &info_table).map_err(row_error)?
                        } else {
                            Vec::new()
                        };
                        Some(read_image(&mut data, &info_table, &after_image, &diffs).map_err(row_error)?)
                    }
                    None => None,
                };
                push(before, after)?;
            }
            Ok(count)
        }))
        .map_err(|_| {
            format!(
                "malformed rows event for `{}`.`{}`",
                info_table.schema, info_table.table
            )
        })??;
        let count = decoded;
        let mut header = self.header(info, &info_table.schema, &info_table.table, Some(event_type));
        if count > 0 {
            header.props.push(pair("rowsCount", count.to_string()));
        }
        let entry = Entry {
            header: Some(header),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(Bytes::from(change)),
        };
        let converted = self.converted(entry, EntryKind::Row, info, count);
        Ok(self.content(converted))
    }
}

/// Reads one row image (null bitmap, then the values of the non-NULL columns in `image`) straight from the rows
/// event's bytes. mysql_common's own row reader also builds a full column description (schema, table and column
/// names copied) for every row, which profiling showed to be a third of the instance's CPU time.
/// `json_diffs[i]` says column `i` holds a partial JSON update (see [`read_partial_json_columns`]).
fn read_image(
    data: &mut &[u8],
    table: &TableInfo,
    image: &[usize],
    json_diffs: &[bool],
) -> std::io::Result<Vec<Option<BinlogValue<'static>>>> {
    let mut buf = ParseBuf(data);
    let null_bitmap: &[u8] = buf.parse(image.len().div_ceil(8))?;
    let mut values = Vec::with_capacity(image.len());
    for (slot, &index) in image.iter().enumerate() {
        let is_null = null_bitmap[slot / 8] & (1 << (slot % 8)) != 0;
        if is_null {
            values.push(Some(BinlogValue::Value(mysql_common::value::Value::NULL)));
            continue;
        }
        let column = table.columns.get(index).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no column {index} in the table map"),
            )
        })?;
        if column.column_type == ColumnType::MYSQL_TYPE_TIME2 {
            let fsp = column.meta.first().copied().unwrap_or(0);
            values.push(Some(BinlogValue::Value(read_time2(&mut buf, fsp)?)));
            continue;
        }
        let is_diff = json_diffs.get(index).copied().unwrap_or(false);
        let ctx = (column.column_type, column.meta.as_slice(), column.unsigned, is_diff);
        values.push(Some(buf.parse::<BinlogValue<'_>>(ctx)?.into_owned()));
    }
    let consumed = data.len() - buf.0.len();
    *data = &data[consumed..];
    Ok(values)
}

/// Reads the shared part of a PARTIAL_UPDATE_ROWS after image (MySQL's `binlog_row_value_options=PARTIAL_JSON`):
/// the value options, and when they say PARTIAL_JSON, one bit per JSON column of the table (in column order, least
/// significant bit first) telling whether its value is a diff. Returns, per column, whether it holds a diff.
fn read_partial_json_columns(data: &mut &[u8], table: &TableInfo) -> std::io::Result<Vec<bool>> {
    const PARTIAL_JSON_UPDATES: u64 = 1;
    let mut buf = ParseBuf(data);
    let options = *buf.parse::<RawInt<LenEnc>>(())?;
    let mut diffs = vec![false; table.columns.len()];
    if options & PARTIAL_JSON_UPDATES != 0 {
        let json: Vec<usize> = (table.columns.iter())
            .filter(|c| c.column_type == ColumnType::MYSQL_TYPE_JSON)
            .map(|c| c.index)
            .collect();
        let bits: &[u8] = buf.parse(json.len().div_ceil(8))?;
        for (n, &index) in json.iter().enumerate() {
            if let Some(flag) = diffs.get_mut(index) {
                *flag = bits[n / 8] & (1 << (n % 8)) != 0;
            }
        }
    }
    let consumed = data.len() - buf.0.len();
    *data = &data[consumed..];
    Ok(diffs)
}

/// Decodes a TIME2 value (MySQL 5.6.4+ and MariaDB's `mysql56_temporal_format`): a big-endian 24-bit integer part
/// (sign bit, then hours, minutes and seconds packed as `h << 12 | m << 6 | s`) offset by 2^23, and 0 to 3 bytes of
/// fraction, which for a negative value with fsp 1 to 4 count down from the next whole second. mysql_common 0.37
/// subtracts that borrow from an unsigned value, so `-00:00:01.5` at fsp 1 comes out wrong (or panics in a debug
/// build); this reader keeps the arithmetic signed.
fn read_time2(buf: &mut ParseBuf<'_>, fsp: u8) -> std::io::Result<mysql_common::value::Value> {
    const INT_OFFSET: i64 = 0x80_0000;
    let truncated = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "TIME2 value cut short");
    let mut take = |n: usize| -> std::io::Result<i64> {
        let bytes = buf.checked_eat(n).ok_or_else(truncated)?;
        Ok(bytes.iter().fold(0i64, |acc, b| acc << 8 | i64::from(*b)))
    };
    // The whole value as MySQL's packed form: seconds part << 24 | microseconds, signed.
    let packed = match fsp {
        1..=4 => {
            let (frac_bytes, scale) = if fsp <= 2 { (1, 10_000) } else { (2, 100) };
            let mut int_part = take(3)? - INT_OFFSET;
            let mut frac = take(frac_bytes)?;
            if int_part < 0 && frac > 0 {
                int_part += 1;
                frac -= 1 << (8 * frac_bytes);
            }
            (int_part << 24) + frac * scale
        }
        5 | 6 => take(6)? - (INT_OFFSET << 24),
        _ => (take(3)? - INT_OFFSET) << 24,
    };
    let negative = packed < 0;
    let magnitude = packed.unsigned_abs();
    let hms = magnitude >> 24;
    let micros = (magnitude & 0xFF_FFFF) as u32;
    let hours = ((hms >> 12) & 0x3FF) as u32;
    Ok(mysql_common::value::Value::Time(
        negative,
        hours / 24,
        (hours % 24) as u8,
        ((hms >> 6) & 0x3F) as u8,
        (hms & 0x3F) as u8,
        micros,
    ))
}

/// Column indexes present in a row image, in order.
fn image_columns(bitmap: Option<&bitvec::slice::BitSlice<u8>>, count: usize) -> Vec<usize> {
    match bitmap {
        Some(bits) => (0..count).filter(|i| bits.get(*i).is_some_and(|b| *b)).collect(),
        None => (0..count).collect(),
    }
}

/// Renders one row image, leaving out what the field filter does not deliver. For an after image, `before` marks
/// which columns changed.
fn render_image<'t>(
    table: &'t TableInfo,
    image: &[usize],
    delivered: Option<&[bool]>,
    row: &[Option<BinlogValue<'_>>],
    before: Option<&[RenderedColumn<'_>]>,
    tz: &jiff::tz::TimeZone,
) -> std::result::Result<Vec<RenderedColumn<'t>>, String> {
    let mut out = Vec::with_capacity(image.len());
    // Both images list columns in ascending index order, so the before column of each after column is found by
    // walking forward once.
    let mut before_at = 0;
    for (slot, &index) in image.iter().enumerate() {
        if delivered.is_some_and(|d| !d.get(index).copied().unwrap_or(true)) {
            continue;
        }
        let column = table
            .columns
            .get(index)
            .ok_or_else(|| format!("row has column {index} but the table map has {}", table.columns.len()))?;
        let value = row
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("row image misses column {}", column.name))?;
        let rendered = value::render(column, value, tz).map_err(|e| format!("column `{}`: {e}", column.name))?;
        let updated = match before {
            None => false,
            Some(before) => {
                while before.get(before_at).is_some_and(|b| b.index < index) {
                    before_at += 1;
                }
                match before.get(before_at) {
                    Some(b) if b.index == index => b.value != rendered.value,
                    _ => true,
                }
            }
        };
        out.push(RenderedColumn {
            index,
            info: column,
            sql_type: rendered.sql_type,
            value: rendered.value,
            updated,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use mysql_common::value::Value;

    use super::*;

    /// The TIME2 bytes MySQL writes for `packed` (seconds part << 24 | microseconds, signed) at `fsp`, as its
    /// `my_time_packed_to_binary` lays them out: the fraction of a negative value with fsp 1 to 4 is stored as a
    /// borrow from the next whole second.
    fn time2_bytes(packed: i64, fsp: u8) -> Vec<u8> {
        let be = |v: i64, n: usize| (0..n).rev().map(|i| (v >> (8 * i)) as u8).collect::<Vec<u8>>();
        let mut int_part = packed >> 24;
        let mut frac = packed & 0xFF_FFFF;
        if packed < 0 && frac != 0 {
            // >> rounds towards minus infinity, so int_part is already one below; the fraction counts down.
            frac -= 1 << 24;
        }
        match fsp {
            1 | 2 => {
                let mut out = be(int_part + 0x80_0000, 3);
                out.push((frac / 10_000) as u8);
                out
            }
            3 | 4 => {
                let mut out = be(int_part + 0x80_0000, 3);
                out.extend(be(frac / 100, 2));
                out
            }
            5 | 6 => be(packed + (0x80_0000 << 24), 6),
            _ => {
                if packed < 0 && frac != 0 {
                    int_part += 1;
                }
                be(int_part + 0x80_0000, 3)
            }
        }
    }

    fn packed(negative: bool, h: i64, m: i64, s: i64, micros: i64) -> i64 {
        let v = ((h << 12 | m << 6 | s) << 24) + micros;
        if negative { -v } else { v }
    }

    fn decode(bytes: &[u8], fsp: u8) -> Value {
        let mut buf = ParseBuf(bytes);
        let value = read_time2(&mut buf, fsp).expect("decodes");
        assert!(buf.0.is_empty(), "every byte of the value is read");
        value
    }

    #[test]
    fn negative_times_with_a_fraction_decode_at_every_fsp() {
        let cases = [
            // (negative, hours, minutes, seconds, micros at that fsp, fsp)
            (true, 12, 34, 56, 780_000, 2),
            (true, 0, 0, 1, 500_000, 1),
            (true, 0, 0, 0, 100_000, 1),
            (true, 838, 59, 59, 990_000, 2),
            (true, 1, 2, 3, 250_000, 3),
            (true, 25, 0, 0, 999_900, 4),
            (true, 1, 2, 3, 250_004, 6),
            (false, 12, 34, 56, 780_000, 2),
            (false, 838, 59, 59, 999_999, 6),
            (true, 1, 2, 3, 0, 0),
            (false, 0, 0, 0, 0, 0),
        ];
        for (negative, h, m, s, micros, fsp) in cases {
            let bytes = time2_bytes(packed(negative, h, m, s, micros), fsp);
            let days = (h / 24) as u32;
            let expected = Value::Time(
                negative && (h, m, s, micros) != (0, 0, 0, 0),
                days,
                (h % 24) as u8,
                m as u8,
                s as u8,
                micros as u32,
            );
            assert_eq!(
                decode(&bytes, fsp),
                expected,
                "{}{h}:{m}:{s}.{micros} at fsp {fsp}",
                if negative { "-" } else { "" }
            );
        }
    }

    #[test]
    fn a_cut_short_time2_is_an_error_not_a_panic() {
        for fsp in 0..=6 {
            for len in 0..3 {
                let mut buf = ParseBuf(&[0x80, 0x00, 0x00][..len]);
                assert!(read_time2(&mut buf, fsp).is_err(), "fsp {fsp}, {len} bytes");
            }
        }
    }
}
