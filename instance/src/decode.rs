//! Binlog files as input: `canal-instance decode --binlog-file FILE` runs a local binlog file through the same
//! converter as a live dump and prints each change as a JSON line, the `tail` format.
//!
//! It reads what a server would send: files from MySQL 5.6 to 9.x and MariaDB, rows events v1 and v2, MySQL and
//! MariaDB GTID events, JSON (including partial updates) and compressed transaction payloads. A decode error stops
//! the run and names the offset, so a damaged file is reported rather than skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use clap::Args;
use mysql_common::binlog::consts::{BinlogVersion, EventType};
use mysql_common::binlog::events::{Event, TransactionPayloadEvent};
use mysql_common::binlog::{BinlogFileHeader, EventStreamReader};
use prost::Message;

use crate::binlog::gtid::{MysqlGtidSource, mysql_set};
use crate::binlog::position::ResumePoint;
use crate::convert::filter::{FieldFilter, TableFilter};
use crate::convert::{ConvertOptions, Converted, Converter};
use crate::error::{Error, Result};
use crate::protocol::Entry;
use crate::schema::SchemaTracker;

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The binlog file to read, for example a copy of `mysql-bin.000042`.
    #[arg(long, value_name = "FILE")]
    pub binlog_file: PathBuf,
    /// Tables to include, canal's comma-separated regexes on `schema.table`.
    #[arg(long, default_value = ".*\\..*")]
    pub include: String,
    /// Tables to leave out.
    #[arg(long, default_value = "")]
    pub exclude: String,
    /// Time zone TIMESTAMP values are rendered in (IANA name).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// A MySQL GTID set (`uuid:1-5,...`): leave out the transactions in it, as a server answering
    /// COM_BINLOG_DUMP_GTID with that set does.
    #[arg(long, value_name = "GTID_SET")]
    pub start_gtid: Option<String>,
}

/// Whether an entry belongs to a transaction of `set` (entries carry their transaction's `uuid[:tag]:gno`).
fn in_set(set: &[MysqlGtidSource], entry: &Entry) -> bool {
    let Some(gtid) = entry.header.as_ref().map(|h| h.gtid()).filter(|g| !g.is_empty()) else {
        return false;
    };
    let Some((source, gno)) = gtid.rsplit_once(':') else {
        return false;
    };
    let Ok(gno) = gno.parse::<u64>() else {
        return false;
    };
    set.iter().any(|s| s.name() == source && s.contains(gno))
}

/// What a run saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub entries: u64,
}

/// Converts every event of the binlog in `input` (named `name` in positions), handing each entry to `emit`.
/// `length` is the input's size in bytes: the events must account for all of it, because the file reader ends
/// quietly at an event it cannot read whole.
pub fn decode<R: BufRead>(
    name: &str,
    input: R,
    length: u64,
    options: ConvertOptions,
    filter: TableFilter,
    mut emit: impl FnMut(&Converted, Entry) -> Result<()>,
) -> Result<Summary> {
    let unreadable = |message: String| Error::Decode {
        position: name.to_string(),
        message,
    };
    let mut input = input;
    BinlogFileHeader::read(&mut input).map_err(|e| unreadable(e.to_string()))?;
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut converter = Converter::new(
        options,
        Arc::new(RwLock::new(filter)),
        &ResumePoint::at(name, 4),
        SchemaTracker::default(),
    );
    let mut summary = Summary::default();
    let mut convert = |event: &Event, summary: &mut Summary| -> Result<()> {
        summary.events += 1;
        for converted in converter.convert(event)? {
            let entry = Entry::decode(converted.bytes.clone()).map_err(|e| unreadable(format!("entry: {e}")))?;
            summary.entries += 1;
            emit(&converted, entry)?;
        }
        Ok(())
    };
    // The 4-byte magic number, then the events back to back.
    let mut read = 4u64;
    loop {
        let event = match reader.read(&mut input) {
            Ok(Some(event)) => event,
            // The end, or an event cut short: the length check below tells which.
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(unreadable(format!("at offset {read}: {e}"))),
        };
        read += u64::from(event.header().event_size());
        convert(&event, &mut summary)?;
        // MySQL's binlog_transaction_compression wraps a transaction's events in one compressed payload; a live
        // dump gets them unwrapped by the client library, a file does not.
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            let payload = event
                .read_event::<TransactionPayloadEvent<'_>>()
                .map_err(|e| unreadable(format!("transaction payload at offset {read}: {e}")))?;
            let mut inner = payload
                .decompressed()
                .map_err(|e| unreadable(format!("transaction payload at offset {read}: {e}")))?;
            while let Some(event) = reader
                .read_decompressed(&mut inner)
                .map_err(|e| unreadable(format!("inside the transaction payload at offset {read}: {e}")))?
            {
                convert(&event, &mut summary)?;
            }
        }
    }
    if read < length {
        return Err(Error::Decode {
            position: format!("{name}:{read}"),
            message: format!(
                "the file is truncated or damaged: {} of its {length} bytes follow the last whole event",
                length - read
            ),
        });
    }
    Ok(summary)
}

/// The `decode` command: prints one JSON line per change to stdout and a summary to stderr.
pub fn run(args: DecodeArgs) -> Result<()> {
    let file = std::fs::File::open(&args.binlog_file)
        .map_err(|e| Error::io(format!("cannot open {}", args.binlog_file.display()), e))?;
    let name = file_name(&args.binlog_file);
    let length = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot read {}", args.binlog_file.display()), e))?
        .len();
    let time_zone = jiff::tz::TimeZone::get(&args.time_zone).map_err(|e| Error::ConfigInvalid {
        field: "--time-zone".into(),
        message: format!("unknown time zone `{}` ({e})", args.time_zone),
    })?;
    let options = ConvertOptions {
        time_zone,
        fields: FieldFilter::default(),
        ..ConvertOptions::default()
    };
    let filter = TableFilter::new(&args.include, &args.exclude)?;
    let skipped = match &args.start_gtid {
        Some(text) => mysql_set(text).ok_or_else(|| Error::ConfigInvalid {
            field: "--start-gtid".into(),
            message: format!("`{text}` is not a MySQL GTID set such as 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
        })?,
        None => Vec::new(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = decode(&name, BufReader::new(file), length, options, filter, |_, entry| {
        if in_set(&skipped, &entry) {
            return Ok(());
        }
        for line in crate::client::tail::change_lines(&name, &entry)? {
            use std::io::Write;
            writeln!(out, "{line}").map_err(|e| Error::io("write to stdout", e))?;
        }
        Ok(())
    })?;
    tracing::info!(file = %name, events = summary.events, entries = summary.entries, "binlog file decoded");
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
