//! `canal-instance tail`: prints each change from a canal server as one JSON line and acknowledges as it goes.

use std::io::Write;
use std::time::Duration;

use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::client::{CanalClient, GetWait, running_server};
use crate::error::{Error, Result};
use crate::proto::entry::{Column, RowChange};
use crate::proto::{Entry, EntryType, EventType};

/// What to tail.
#[derive(Clone, Debug, clap::Args)]
pub struct TailArgs {
    /// canal server address, host:port.
    #[arg(long, default_value = "127.0.0.1:11111")]
    pub server: String,
    /// ZooKeeper connect string: find the active server there (and follow it through failovers) instead of
    /// using --server.
    #[arg(long)]
    pub zookeeper: Option<String>,
    /// Destination to subscribe to.
    #[arg(long, default_value = "example")]
    pub destination: String,
    /// Client id (a number, canal's default is 1001).
    #[arg(long, default_value = "1001")]
    pub client_id: String,
    /// Subscription filter; empty keeps the server's.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// User name for the canal server.
    #[arg(long, default_value = "")]
    pub username: String,
    /// Password for the canal server.
    #[arg(long, env = "CANAL_PASSWORD", default_value = "", hide_env_values = true)]
    pub password: String,
    /// Entries per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: i32,
    /// Exit after printing this many changes (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    pub max_changes: u64,
}

/// Turns one entry into JSON lines: one per row change, one per statement, none for transaction markers.
pub fn change_lines(destination: &str, entry: &Entry) -> Result<Vec<Value>> {
    if entry.entry_type() != EntryType::Rowdata {
        return Ok(Vec::new());
    }
    let header = entry.header.clone().unwrap_or_default();
    let change = RowChange::decode(entry.store_value.clone().unwrap_or_default())
        .map_err(|e| Error::Protocol(format!("undecodable RowChange: {e}")))?;
    let base = json!({
        "destination": destination,
        "schema": header.schema_name(),
        "table": header.table_name(),
        "type": header.event_type().as_str_name(),
        "executeTime": header.execute_time(),
        "position": format!("{}:{}", header.logfile_name(), header.logfile_offset()),
    });
    if change.is_ddl() || change.row_datas.is_empty() {
        let mut line = base;
        line["isDdl"] = json!(change.is_ddl());
        line["sql"] = json!(change.sql());
        return Ok(vec![line]);
    }
    let row_map = |columns: &[Column]| -> Value {
        if columns.is_empty() {
            return Value::Null;
        }
        let map: Map<String, Value> = columns
            .iter()
            .map(|c| {
                let v = if c.is_null() { Value::Null } else { json!(c.value()) };
                (c.name().to_string(), v)
            })
            .collect();
        Value::Object(map)
    };
    Ok(change
        .row_datas
        .iter()
        .map(|row| {
            let mut line = base.clone();
            line["before"] = row_map(&row.before_columns);
            line["after"] = row_map(&row.after_columns);
            if header.event_type() == EventType::Update {
                let updated: Vec<&str> = row
                    .after_columns
                    .iter()
                    .filter(|c| c.updated())
                    .map(|c| c.name())
                    .collect();
                line["updated"] = json!(updated);
            }
            line
        })
        .collect())
}

/// Prints changes until interrupted (or `max_changes` are printed), reconnecting when the server goes away.
pub async fn run(args: TailArgs) -> Result<()> {
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let session = async {
            let server = match &args.zookeeper {
                Some(zookeeper) => running_server(zookeeper, &args.destination).await?,
                None => args.server.clone(),
            };
            let mut client = CanalClient::connect(&server, &args.username, &args.password).await?;
            client
                .subscribe(&args.destination, &args.client_id, &args.filter)
                .await?;
            // Whatever an earlier session fetched but did not acknowledge comes again.
            client.rollback(0).await?;
            eprintln!(
                "tail: subscribed to {} on {server} as client {}",
                args.destination, args.client_id
            );
            loop {
                let message = client
                    .get_without_ack(args.batch_size, GetWait::Up(Duration::from_secs(1)))
                    .await?;
                if message.batch_id == -1 {
                    continue;
                }
                let mut out = stdout.lock();
                for entry in &message.entries {
                    for line in change_lines(&args.destination, entry)? {
                        writeln!(out, "{line}").map_err(|e| Error::io("write to stdout", e))?;
                        printed += 1;
                    }
                }
                out.flush().map_err(|e| Error::io("write to stdout", e))?;
                drop(out);
                client.ack(message.batch_id).await?;
                if args.max_changes > 0 && printed >= args.max_changes {
                    // The server reads the ack before it sees the connection close, so it is processed.
                    return Ok::<_, Error>(());
                }
            }
        };
        match session.await {
            Ok(()) => return Ok(()),
            Err(e @ Error::Server { code: 400, .. }) if e.to_string().contains("auth failed") => return Err(e),
            Err(e) => {
                eprintln!("tail: {e}; reconnecting in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
