//! Column values rendered as canal renders them: text plus a java.sql.Types code.
//!
//! Deliberate differences from canal (documented in the README): DECIMAL keeps MySQL's exact text, character
//! columns decode with their own character set, and TIMESTAMP renders in the configured time zone.

use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use crate::schema::charset::{decode_text, latin1};
use crate::schema::table::ColumnInfo;

/// java.sql.Types codes used by canal.
pub mod sql_type {
    pub const BIT: i32 = -7;
    pub const TINYINT: i32 = -6;
    pub const BIGINT: i32 = -5;
    pub const BINARY: i32 = -2;
    pub const CHAR: i32 = 1;
    pub const DECIMAL: i32 = 3;
    pub const INTEGER: i32 = 4;
    pub const SMALLINT: i32 = 5;
    pub const REAL: i32 = 7;
    pub const DOUBLE: i32 = 8;
    pub const VARCHAR: i32 = 12;
    pub const DATE: i32 = 91;
    pub const TIME: i32 = 92;
    pub const TIMESTAMP: i32 = 93;
    pub const OTHER: i32 = 1111;
    pub const BLOB: i32 = 2004;
    pub const CLOB: i32 = 2005;
}

/// A rendered column value; `value` is `None` for SQL NULL.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub sql_type: i32,
    pub value: Option<String>,
}

/// A MySQL partial JSON update (`binlog_row_value_options=PARTIAL_JSON`) as the calls that would make it, as canal
/// and mysqlbinlog print it: `JSON_REMOVE(JSON_REPLACE(doc, '$.a', 1, '$.b', "x"), '$.c')`, runs of one function
/// folded into one call.
fn json_diff_text(column: &str, diffs: &[mysql_common::binlog::jsondiff::JsonDiff<'_>]) -> Result<String, String> {
    use mysql_common::binlog::jsondiff::JsonDiffOperation;
    let names: Vec<&str> = diffs
        .iter()
        .map(|d| match d.operation() {
            JsonDiffOperation::REPLACE => "JSON_REPLACE",
            JsonDiffOperation::INSERT if d.path().last() == Some(&b']') => "JSON_ARRAY_INSERT",
            JsonDiffOperation::INSERT => "JSON_INSERT",
            JsonDiffOperation::REMOVE => "JSON_REMOVE",
        })
        .collect();
    let mut text = String::new();
    for i in (0..names.len()).rev() {
        if i == 0 || names[i - 1] != names[i] {
            text.push_str(names[i]);
            text.push('(');
        }
    }
    text.push_str(column);
    if diffs.is_empty() {
        return Ok(text);
    }
    text.push_str(", ");
    for (i, diff) in diffs.iter().enumerate() {
        text.push('\'');
        text.push_str(&diff.path_str());
        text.push('\'');
        if let Some(value) = diff.value() {
            let json = serde_json::Value::try_from(value.clone()).map_err(|e| format!("JSON diff value: {e}"))?;
            text.push_str(", ");
            text.push_str(&mysql_json_text(&json));
        }
        match names.get(i + 1) {
            None => text.push(')'),
            Some(next) => {
                if *next != names[i] {
                    text.push(')');
                }
                text.push_str(", ");
            }
        }
    }
    Ok(text)
}

/// Renders one non-NULL value of `column`. An error means the value does not fit the column's declared type.
pub fn render(column: &ColumnInfo, value: &BinlogValue<'_>, tz: &jiff::tz::TimeZone) -> Result<Rendered, String> {
    use ColumnType::*;
    let plain = |sql_type, text: String| {
        Ok(Rendered {
            sql_type,
            value: Some(text),
        })
    };
    let v = match value {
        BinlogValue::Value(Value::NULL) => {
            return Ok(Rendered {
                sql_type: null_sql_type(column),
                value: None,
            });
        }
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let json = serde_json::Value::try_from(j.clone()).map_err(|e| format!("JSON value: {e}"))?;
            return plain(sql_type::VARCHAR, mysql_json_text(&json));
        }
        BinlogValue::JsonDiff(diffs) => {
            return plain(sql_type::VARCHAR, json_diff_text(&column.name, diffs)?);
        }
    };
    let mismatch = || format!("value {v:?} does not fit column type {:?}", column.column_type);
    match column.column_type {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG => {
            let (text, beyond_signed) = match *v {
                // mysql_common 0.37 does not sign-extend signed MEDIUMINT: -8388608 arrives as 8388608.
                Value::Int(i) if column.column_type == MYSQL_TYPE_INT24 && !column.unsigned && i >= 1 << 23 => {
                    (integer_text(i - (1 << 24)), false)
                }
                // Row images read by canal-rs come decoded with the column's signedness already. Those read by
                // mysql_common's row reader (JSON partial updates) use only the table map's, which NO_LOG and
                // MySQL 5.7 lack: there the schema history says the column is unsigned.
                Value::Int(i) if column.unsigned && i < 0 => {
                    let unsigned = i128::from(i) + (1i128 << integer_bits(column.column_type));
                    (unsigned.to_string(), exceeds_signed(column.column_type, unsigned))
                }
                Value::Int(i) => (
                    integer_text(i),
                    column.unsigned && exceeds_signed(column.column_type, i as i128),
                ),
                Value::UInt(u) => (integer_text(u), exceeds_signed(column.column_type, u as i128)),
                _ => return Err(mismatch()),
            };
            plain(integer_sql_type(column.column_type, beyond_signed), text)
        }
        MYSQL_TYPE_FLOAT => match *v {
            Value::Float(f) => plain(sql_type::REAL, java_float(f as f64, f.to_string().as_str())),
            _ => Err(mismatch()),
        },
        MYSQL_TYPE_DOUBLE => match *v {
            Value::Double(d) => plain(sql_type::DOUBLE, java_float(d, d.to_string().as_str())),
            _ => Err(mismatch()),
        },
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => plain(sql_type::DECIMAL, text_of(v).ok_or_else(mismatch)?),
        MYSQL_TYPE_BIT => plain(sql_type::BIT, big_endian(bytes_of(v).ok_or_else(mismatch)?).to_string()),
        MYSQL_TYPE_YEAR => {
            let year = match v {
                Value::Int(i) => *i,
                Value::UInt(u) => *u as i64,
                Value::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(mismatch)?,
                _ => return Err(mismatch()),
            };
            // The binlog stores YEAR as years since 1900; 0 is the zero year, which MySQL prints as 0000.
            let text = if year == 1900 || year == 0 {
                "0000".to_string()
            } else {
                year.to_string()
            };
            plain(sql_type::VARCHAR, text)
        }
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => match *v {
            Value::Date(y, m, d, ..) => {
                let mut text = String::with_capacity(10);
                push_date(&mut text, y, m, d);
                plain(sql_type::DATE, text)
            }
            _ => Err(mismatch()),
        },
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => match *v {
            Value::Date(y, mo, d, h, mi, s, us) => {
                let mut text = String::with_capacity(26);
                push_date(&mut text, y, mo, d);
                text.push(' ');
                push_clock(&mut text, u64::from(h), mi, s);
                push_fraction(&mut text, us, column.fsp());
                plain(sql_type::TIMESTAMP, text)
            }
            _ => Err(mismatch()),
        },
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => {
            let (secs, micros) = match v {
                Value::Int(i) => (*i, 0),
                Value::Bytes(b) => parse_epoch(b).ok_or_else(mismatch)?,
                _ => return Err(mismatch()),
            };
            plain(sql_type::TIMESTAMP, timestamp_text(secs, micros, column.fsp(), tz)?)
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => match *v {
            Value::Time(negative, days, h, m, s, us) => {
                let mut text = String::with_capacity(18);
                if negative {
                    text.push('-');
                }
                push_clock(&mut text, days as u64 * 24 + h as u64, m, s);
                push_fraction(&mut text, us, column.fsp());
                plain(sql_type::TIME, text)
            }
            _ => Err(mismatch()),
        },
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_STRING => {
            let bytes = bytes_of(v).ok_or_else(mismatch)?;
            if column.is_binary() {
                plain(sql_type::BLOB, latin1(bytes))
            } else {
                let code = if column.column_type == MYSQL_TYPE_STRING {
                    sql_type::CHAR
                } else {
                    sql_type::VARCHAR
                };
                plain(code, decode_text(bytes, column.collation))
            }
        }
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
            let bytes = bytes_of(v).ok_or_else(mismatch)?;
            if column.is_binary() {
                plain(sql_type::BLOB, latin1(bytes))
            } else {
                plain(sql_type::CLOB, decode_text(bytes, column.collation))
            }
        }
        MYSQL_TYPE_ENUM => match *v {
            Value::Int(i) => plain(sql_type::INTEGER, i.to_string()),
            Value::UInt(u) => plain(sql_type::INTEGER, u.to_string()),
            _ => Err(mismatch()),
        },
        MYSQL_TYPE_SET => {
            let mask = match v {
                Value::Bytes(b) => little_endian(b),
                Value::Int(i) => *i as u64,
                Value::UInt(u) => *u,
                _ => return Err(mismatch()),
            };
            plain(sql_type::BIT, mask.to_string())
        }
        MYSQL_TYPE_JSON => plain(sql_type::VARCHAR, decode_text(bytes_of(v).ok_or_else(mismatch)?, 0)),
        MYSQL_TYPE_GEOMETRY => plain(sql_type::BLOB, latin1(bytes_of(v).ok_or_else(mismatch)?)),
        _ => Ok(Rendered {
            sql_type: sql_type::OTHER,
            value: None,
        }),
    }
}

/// The storage width of an integer column type.
fn integer_bits(column_type: ColumnType) -> u32 {
    use ColumnType::*;
    match column_type {
        MYSQL_TYPE_TINY => 8,
        MYSQL_TYPE_SHORT => 16,
        MYSQL_TYPE_INT24 => 24,
        MYSQL_TYPE_LONG => 32,
        _ => 64,
    }
}

/// canal's type-map code for a NULL value: no unsigned bump, and a few types map differently than their values.
pub fn null_sql_type(column: &ColumnInfo) -> i32 {
    use ColumnType::*;
    match column.column_type {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG => {
            integer_sql_type(column.column_type, false)
        }
        MYSQL_TYPE_FLOAT => sql_type::REAL,
        MYSQL_TYPE_DOUBLE => sql_type::DOUBLE,
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => sql_type::DECIMAL,
        MYSQL_TYPE_BIT => sql_type::BIT,
        MYSQL_TYPE_YEAR => sql_type::VARCHAR,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => sql_type::DATE,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => {
            sql_type::TIMESTAMP
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => sql_type::TIME,
        MYSQL_TYPE_STRING if !column.is_binary() => sql_type::CHAR,
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING if !column.is_binary() => sql_type::VARCHAR,
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB
            if !column.is_binary() =>
        {
            sql_type::CLOB
        }
        MYSQL_TYPE_STRING | MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => sql_type::BLOB,
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => sql_type::BLOB,
        MYSQL_TYPE_ENUM => sql_type::INTEGER,
        MYSQL_TYPE_SET | MYSQL_TYPE_GEOMETRY => sql_type::BLOB,
        _ => sql_type::OTHER,
    }
}

/// canal reads integers signed and, for unsigned columns whose value came out negative, adds 2^n and reports the
/// next wider java.sql type. Reading unsigned directly, "came out negative" means "exceeds the signed maximum".
fn integer_sql_type(column_type: ColumnType, beyond_signed: bool) -> i32 {
    use ColumnType::*;
    match (column_type, beyond_signed) {
        (MYSQL_TYPE_TINY, false) => sql_type::TINYINT,
        (MYSQL_TYPE_TINY, true) => sql_type::SMALLINT,
        (MYSQL_TYPE_SHORT, false) => sql_type::SMALLINT,
        (MYSQL_TYPE_SHORT, true) | (MYSQL_TYPE_INT24, _) | (MYSQL_TYPE_LONG, false) => sql_type::INTEGER,
        (MYSQL_TYPE_LONG, true) | (MYSQL_TYPE_LONGLONG, false) => sql_type::BIGINT,
        (_, _) => sql_type::DECIMAL,
    }
}

fn exceeds_signed(column_type: ColumnType, value: i128) -> bool {
    let max: i128 = match column_type {
        ColumnType::MYSQL_TYPE_TINY => i8::MAX as i128,
        ColumnType::MYSQL_TYPE_SHORT => i16::MAX as i128,
        ColumnType::MYSQL_TYPE_INT24 => (1 << 23) - 1,
        ColumnType::MYSQL_TYPE_LONG => i32::MAX as i128,
        _ => i64::MAX as i128,
    };
    value > max
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    bytes_of(v).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn big_endian(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

fn little_endian(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

/// `.` plus exactly `fsp` digits of the microseconds, or nothing for fsp 0.
fn fraction(micros: u32, fsp: u8) -> String {
    let mut text = String::new();
    push_fraction(&mut text, micros, fsp);
    text
}

/// Appends [`fraction`] to `text`.
fn push_fraction(text: &mut String, micros: u32, fsp: u8) {
    if fsp == 0 {
        return;
    }
    text.push('.');
    let micros = micros.min(999_999);
    for place in [100_000, 10_000, 1_000, 100, 10, 1]
        .into_iter()
        .take(fsp.min(6) as usize)
    {
        text.push(digit(micros / place));
    }
}

/// The decimal digit of `n % 10`.
fn digit(n: u32) -> char {
    char::from(b'0' + (n % 10) as u8)
}

/// Appends `n` with at least `width` digits, zero-padded (values are never negative here).
fn push_padded(text: &mut String, n: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n);
    for _ in digits.len()..width {
        text.push('0');
    }
    text.push_str(digits);
}

/// `YYYY-MM-DD`, as MySQL prints dates (zero dates included).
fn push_date(text: &mut String, year: u16, month: u8, day: u8) {
    push_padded(text, year.into(), 4);
    text.push('-');
    push_padded(text, month.into(), 2);
    text.push('-');
    push_padded(text, day.into(), 2);
}

/// `HH:MM:SS`, with as many hour digits as needed (TIME goes beyond 24 hours).
fn push_clock(text: &mut String, hours: u64, minutes: u8, seconds: u8) {
    push_padded(text, hours, 2);
    text.push(':');
    push_padded(text, minutes.into(), 2);
    text.push(':');
    push_padded(text, seconds.into(), 2);
}

fn integer_text(n: impl itoa::Integer) -> String {
    itoa::Buffer::new().format(n).to_string()
}

fn parse_epoch(bytes: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(bytes).ok()?;
    match text.split_once('.') {
        Some((secs, micros)) => Some((secs.parse().ok()?, micros.parse().ok()?)),
        None => Some((text.parse().ok()?, 0)),
    }
}

fn timestamp_text(secs: i64, micros: u32, fsp: u8, tz: &jiff::tz::TimeZone) -> Result<String, String> {
    if secs == 0 && micros == 0 {
        return Ok(format!("0000-00-00 00:00:00{}", fraction(0, fsp)));
    }
    let ts = jiff::Timestamp::from_second(secs).map_err(|e| format!("TIMESTAMP {secs}: {e}"))?;
    let local = ts.to_zoned(tz.clone());
    Ok(format!(
        "{}{}",
        local.strftime("%Y-%m-%d %H:%M:%S"),
        fraction(micros, fsp)
    ))
}

/// Java's `Float.toString`/`Double.toString`: the shortest digits that read back to the same value, written plain
/// for 10^-3 <= |x| < 10^7 and in computerized scientific notation (`1.0E10`) otherwise.
/// `shortest` is Rust's shortest round-trip rendering of the same value.
pub fn java_float(x: f64, shortest: &str) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let (sign, text) = match shortest.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", shortest),
    };
    // Split Rust's rendering into its significant digits and the decimal exponent of the first one.
    let (int_part, frac_part) = text.split_once('.').unwrap_or((text, ""));
    let all = format!("{int_part}{frac_part}");
    let leading_zeros = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    if digits.is_empty() {
        return format!("{sign}0.0");
    }
    let exponent = int_part.len() as i64 - 1 - leading_zeros as i64;
    let abs = x.abs();
    if (1e-3..1e7).contains(&abs) {
        if exponent >= 0 {
            let split = (exponent + 1) as usize;
            let padded = format!("{digits:0<split$}");
            let (i, f) = padded.split_at(split);
            format!("{sign}{i}.{}", if f.is_empty() { "0" } else { f })
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        }
    } else {
        let (first, rest) = digits.split_at(1);
        format!("{sign}{first}.{}E{exponent}", if rest.is_empty() { "0" } else { rest })
    }
}

/// MySQL's JSON text form: `{"k": 1, "a": [1, 2]}`.
pub fn mysql_json_text(value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match value {
        J::Array(items) => format!("[{}]", items.iter().map(mysql_json_text).collect::<Vec<_>>().join(", ")),
        J::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", J::String(k.clone()), mysql_json_text(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        J::Number(n) if n.is_f64() => n.as_f64().map(|f| java_float(f, &f.to_string())).unwrap_or_default(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_json_updates_read_as_the_calls_that_make_them() {
        use mysql_common::binlog::jsondiff::JsonDiff;
        use mysql_common::io::ParseBuf;
        // operation, path (length-prefixed), value (length-prefixed: JSONB type INT16, little-endian).
        let bytes: Vec<u8> = [
            &[0u8, 3][..],
            b"$.a",
            &[3, 0x05, 1, 0],
            &[0, 3],
            b"$.b",
            &[3, 0x05, 2, 0],
            &[2, 3],
            b"$.c",
            &[1, 4],
            b"$[0]",
            &[3, 0x05, 3, 0],
        ]
        .concat();
        let mut buf = ParseBuf(&bytes);
        let mut diffs = Vec::new();
        while !buf.is_empty() {
            diffs.push(buf.parse::<JsonDiff<'_>>(()).unwrap());
        }
        assert_eq!(
            super::json_diff_text("doc", &diffs).unwrap(),
            "JSON_ARRAY_INSERT(JSON_REMOVE(JSON_REPLACE(doc, '$.a', 1, '$.b', 2), '$.c'), '$[0]', 3)"
        );
        assert_eq!(super::json_diff_text("doc", &[]).unwrap(), "doc");
    }

    use super::*;

    #[test]
    fn java_float_formats() {
        let cases: [(f64, &str); 12] = [
            (1.5, "1.5"),
            (100.0, "100.0"),
            (1e10, "1.0E10"),
            (1.0e7, "1.0E7"),
            (9999999.0, "9999999.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (-2.5e-5, "-2.5E-5"),
            (0.0, "0.0"),
            (123.456, "123.456"),
            (1.7976931348623157e308, "1.7976931348623157E308"),
            (-0.5, "-0.5"),
        ];
        for (x, want) in cases {
            assert_eq!(java_float(x, &x.to_string()), want, "{x}");
        }
        let f = 3.4028235e38f32;
        assert_eq!(java_float(f as f64, &f.to_string()), "3.4028235E38");
        let f = 0.1f32;
        assert_eq!(java_float(f as f64, &f.to_string()), "0.1");
    }

    #[test]
    fn fractions_keep_exactly_fsp_digits() {
        assert_eq!(fraction(120_000, 3), ".120");
        assert_eq!(fraction(5, 6), ".000005");
        assert_eq!(fraction(999_999, 0), "");
    }

    #[test]
    fn binary_round_trips_through_latin1() {
        let bytes = [0u8, 0x80, 0xff, b'a'];
        let text = latin1(&bytes);
        let back: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(back, bytes);
    }

    #[test]
    fn json_uses_mysql_separators() {
        let v: serde_json::Value = serde_json::from_str(r#"{"a":[1,2.5,"x"],"b":null}"#).unwrap();
        assert_eq!(mysql_json_text(&v), r#"{"a": [1, 2.5, "x"], "b": null}"#);
    }
}
