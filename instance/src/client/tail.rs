//! `canal-instance tail`: prints each change from a canal server as one JSON line and acknowledges as it goes.

use std::io::Write;
use std::time::Duration;

use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::client::{ClusterClient, GetWait, HaConsumer, Message};
use crate::error::{Error, Result};
use crate::protocol::entry::{Column, RowChange};
use crate::protocol::{Entry, EntryType, EventType};

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
    /// Client-side HA (with --zookeeper): of several tails with the same client id, only the one holding canal's
    /// `{clientId}/running` node fetches; the others take over when it goes away.
    #[arg(long)]
    pub client_ha: bool,
    /// ZooKeeper session timeout for --client-ha, in seconds.
    #[arg(long, default_value_t = 10)]
    pub zookeeper_session_timeout: u32,
    /// How long standby tails wait before taking over from a vanished one (--client-ha), in seconds.
    #[arg(long, default_value_t = 5)]
    pub failover_delay: u32,
}

/// Turns one entry into JSON lines: one per row change, one per statement, none for transaction markers.
pub fn change_lines(destination: &str, entry: &Entry) -> Result<Vec<Value>> {
    if entry.entry_type() != EntryType::Rowdata {
        return Ok(Vec::new());
    }
    let header = entry.header.clone().unwrap_or_default();
    let change = RowChange::decode(entry.store_value.clone().unwrap_or_default())
        .map_err(|e| Error::Protocol(format!("undecodable RowChange: {e}")))?;
    let mut base = json!({
        "destination": destination,
        "schema": header.schema_name(),
        "table": header.table_name(),
        "type": header.event_type().as_str_name(),
        "executeTime": header.execute_time(),
        "position": format!("{}:{}", header.logfile_name(), header.logfile_offset()),
    });
    if !header.gtid().is_empty() {
        base["gtid"] = json!(header.gtid());
    }
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

/// Where batches come from: one server, the active server found in ZooKeeper, or that plus client-side HA.
enum Consumer {
    Single(ClusterClient),
    Replica(HaConsumer),
}

impl Consumer {
    async fn get(&mut self, batch_size: i32) -> Result<Message> {
        let wait = GetWait::Up(Duration::from_secs(1));
        match self {
            Consumer::Single(c) => c.get_without_ack(batch_size, wait).await,
            Consumer::Replica(c) => c.get_without_ack(batch_size, wait).await,
        }
    }

    async fn ack(&mut self, batch_id: i64) -> Result<()> {
        match self {
            Consumer::Single(c) => c.ack(batch_id).await,
            Consumer::Replica(c) => c.ack(batch_id).await,
        }
    }

    async fn close(self) {
        if let Consumer::Replica(c) = self {
            c.close().await;
        }
    }
}

/// Prints changes until interrupted (or `max_changes` are printed). Failed requests reconnect (to the active
/// server, with `--zookeeper`) and roll back, so delivery is at least once.
pub async fn run(args: TailArgs) -> Result<()> {
    let client = match &args.zookeeper {
        Some(zookeeper) => ClusterClient::new(zookeeper, &args.destination, &args.client_id, &args.filter),
        None => ClusterClient::direct(&args.server, &args.destination, &args.client_id, &args.filter),
    }
    .with_credentials(&args.username, &args.password);
    let mut client = client;
    // An interactive tail keeps trying for as long as it runs.
    client.attempts = u32::MAX;
    let mut consumer = match (&args.zookeeper, args.client_ha) {
        (Some(zookeeper), true) => {
            let client_id: i16 = args
                .client_id
                .parse()
                .map_err(|_| Error::Protocol(format!("--client-id {} is not a number", args.client_id)))?;
            let config = canal_api::ZooKeeperConfig {
                servers: zookeeper.clone(),
                session_timeout_seconds: args.zookeeper_session_timeout,
                failover_delay_seconds: args.failover_delay,
                cursor_flush_period_ms: 0,
            };
            Consumer::Replica(HaConsumer::start(config, client, &args.destination, client_id))
        }
        (None, true) => return Err(Error::Protocol("--client-ha needs --zookeeper".into())),
        _ => Consumer::Single(client),
    };
    eprintln!("tail: consuming {} as client {}", args.destination, args.client_id);
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let result = loop {
        let message = match consumer.get(args.batch_size).await {
            Ok(message) => message,
            Err(e) => break Err(e),
        };
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
        consumer.ack(message.batch_id).await?;
        if args.max_changes > 0 && printed >= args.max_changes {
            // The server reads the ack before it sees the connection close, so it is processed.
            break Ok(());
        }
    };
    consumer.close().await;
    result
}
