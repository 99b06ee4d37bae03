//! Character sets as the server names them: which encoding a collation id stands for, and text in it.
//!
//! Row values, ENUM/SET member names in table maps and declared types all need this, so it lives upstream of both
//! the table descriptions and the converter.

use std::collections::HashMap;
use std::sync::LazyLock;

use mysql_common::collations::{Collation, CollationId};

/// The collation's character set name and maximum bytes per character.
pub fn charset_of(collation: u16) -> (String, u8) {
    let c = Collation::resolve(CollationId::from(collation));
    (c.charset().to_string(), c.max_len().max(1))
}

/// The default collation id of a character set named as `information_schema` or a DDL names it; 0 when unknown.
pub fn default_collation(charset: &str) -> u16 {
    static DEFAULTS: LazyLock<HashMap<String, u16>> = LazyLock::new(|| {
        let mut defaults = HashMap::new();
        for id in 1..=2047u16 {
            let c = Collation::resolve(CollationId::from(id));
            if c.is_default() && c.id() as u16 == id {
                defaults.entry(c.charset().to_ascii_lowercase()).or_insert(id);
            }
        }
        defaults
    });
    let charset = charset.to_ascii_lowercase();
    let alias = match charset.as_str() {
        "utf8" => "utf8mb3",
        "utf8mb3" => "utf8",
        other => other,
    };
    DEFAULTS
        .get(&charset)
        .or_else(|| DEFAULTS.get(alias))
        .copied()
        .unwrap_or(0)
}

/// Maps each byte to the character with the same code point, as canal does for binary data (ISO-8859-1).
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| *b as char).collect()
}

/// Decodes text in the column's character set; collation 0 (unknown) is read as UTF-8.
pub fn decode_text(bytes: &[u8], collation: u16) -> String {
    let resolved = (collation != 0).then(|| Collation::resolve(CollationId::from(collation)));
    let charset = resolved.as_ref().map_or("utf8mb4", |c| c.charset());
    let label = match charset {
        "utf8mb4" | "utf8mb3" | "utf8" => return String::from_utf8_lossy(bytes).into_owned(),
        "binary" => return latin1(bytes),
        "latin1" | "ascii" => "windows-1252",
        "gb2312" | "gbk" => "gbk",
        "sjis" | "cp932" => "shift_jis",
        "ujis" | "eucjpms" => "euc-jp",
        "euckr" => "euc-kr",
        "latin2" => "iso-8859-2",
        "greek" => "iso-8859-7",
        "hebrew" => "iso-8859-8",
        "koi8r" => "koi8-r",
        "koi8u" => "koi8-u",
        "ucs2" | "utf16" => "utf-16be",
        other => other,
    };
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(encoding) => encoding.decode_without_bom_handling(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}
