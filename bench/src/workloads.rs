//! The workloads: each written into binlog files of its own (FLUSH BINARY LOGS before and after), so every consumer
//! reads exactly the same bytes and knows how many row changes to expect.

use mysql_async::prelude::Queryable;
use serde::Serialize;

use canal_e2e::MariaDb;

pub const SCHEMA: &str = "bench";

/// One workload as written.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub name: &'static str,
    pub description: String,
    /// Row changes (one per row image pair) a consumer must see.
    pub rows: u64,
    /// The binlog files holding it, in order, and their total size.
    pub files: Vec<String>,
    pub bytes: u64,
}

/// Sizes scaled by `scale` (1.0 = the full bench).
struct Sizes {
    narrow_rows: u64,
    single_rows: u64,
    wide_rows: u64,
    wide_updates: u64,
    big_rows: u64,
    mix_txns: u64,
}

impl Sizes {
    fn scaled(scale: f64) -> Self {
        let n = |full: u64| ((full as f64 * scale) as u64).max(100);
        Self {
            narrow_rows: n(1_000_000),
            single_rows: n(40_000),
            wide_rows: n(20_000),
            wide_updates: 5,
            big_rows: n(1_000_000),
            mix_txns: n(20_000),
        }
    }
}

async fn binlog_files(conn: &mut mysql_async::Conn) -> Vec<(String, u64)> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.expect("SHOW BINARY LOGS");
    rows.into_iter()
        .map(|r| {
            (
                r.get::<String, _>(0).unwrap_or_default(),
                r.get::<u64, _>(1).unwrap_or(0),
            )
        })
        .collect()
}

/// Runs `write` between two FLUSH BINARY LOGS and describes the files it filled.
async fn recorded(
    db: &MariaDb,
    name: &'static str,
    description: String,
    rows: u64,
    write: impl AsyncFnOnce(&MariaDb),
) -> Workload {
    let mut conn = db.admin().await;
    conn.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    let before: Vec<String> = binlog_files(&mut conn).await.into_iter().map(|(f, _)| f).collect();
    let first = before.last().cloned().expect("a binlog file");
    write(db).await;
    conn.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    let after = binlog_files(&mut conn).await;
    // Everything from the file the workload started in up to, not including, the fresh one.
    let files: Vec<(String, u64)> = after
        .iter()
        .filter(|(f, _)| *f >= first)
        .take_while(|(f, _)| Some(f) != after.last().map(|(l, _)| l))
        .cloned()
        .collect();
    eprintln!(
        "bench: workload {name}: {rows} row changes in {} ({:.1} MB)",
        files.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", "),
        files.iter().map(|(_, s)| *s).sum::<u64>() as f64 / 1e6
    );
    Workload {
        name,
        description,
        rows,
        bytes: files.iter().map(|(_, s)| *s).sum(),
        files: files.into_iter().map(|(f, _)| f).collect(),
    }
}

async fn exec(conn: &mut mysql_async::Conn, sql: &str) {
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", sql.chars().take(200).collect::<String>()));
}

/// Creates the tables and writes every workload.
pub async fn write_all(db: &MariaDb, scale: f64) -> Vec<Workload> {
    let sizes = Sizes::scaled(scale);
    let mut conn = db.admin().await;
    exec(&mut conn, &format!("DROP DATABASE IF EXISTS {SCHEMA}")).await;
    exec(&mut conn, &format!("CREATE DATABASE {SCHEMA}")).await;
    exec(&mut conn, &format!("USE {SCHEMA}")).await;
    exec(
        &mut conn,
        "CREATE TABLE narrow (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(32) NOT NULL)",
    )
    .await;
    let wide_columns: Vec<String> = (1..50)
        .map(|i| match i % 4 {
            0 => format!("c{i} INT"),
            1 => format!("c{i} VARCHAR(24)"),
            2 => format!("c{i} DECIMAL(12,2)"),
            _ => format!("c{i} DATETIME"),
        })
        .collect();
    exec(
        &mut conn,
        &format!("CREATE TABLE wide (id BIGINT PRIMARY KEY, {})", wide_columns.join(", ")),
    )
    .await;
    exec(
        &mut conn,
        "CREATE TABLE mix (id BIGINT PRIMARY KEY, n INT NOT NULL, s VARCHAR(64) NOT NULL)",
    )
    .await;
    drop(conn);

    let mut workloads = Vec::new();

    let rows = sizes.narrow_rows;
    workloads.push(
        recorded(
            db,
            "bulk-narrow",
            format!("{rows} narrow rows, 1000 per INSERT"),
            rows,
            async |db| {
                let mut conn = db.admin().await;
                let mut id = 0u64;
                while id < rows {
                    let values: Vec<String> = (id..(id + 1000).min(rows))
                        .map(|i| format!("({i},{},'row {i}')", i % 1000))
                        .collect();
                    id += values.len() as u64;
                    exec(
                        &mut conn,
                        &format!("INSERT INTO {SCHEMA}.narrow VALUES {}", values.join(",")),
                    )
                    .await;
                }
            },
        )
        .await,
    );

    let rows = sizes.single_rows;
    workloads.push(
        recorded(
            db,
            "single-row-txns",
            format!("{rows} one-row transactions"),
            rows,
            async |db| {
                // Two writers, as an application with a connection pool would.
                let half = rows / 2;
                let writer = |from: u64, to: u64| async move {
                    let mut conn = db.admin().await;
                    for i in from..to {
                        exec(
                            &mut conn,
                            &format!(
                                "INSERT INTO {SCHEMA}.narrow VALUES ({},{i},'single {i}')",
                                10_000_000 + i
                            ),
                        )
                        .await;
                    }
                };
                tokio::join!(writer(0, half), writer(half, rows));
            },
        )
        .await,
    );

    let (wide_rows, updates) = (sizes.wide_rows, sizes.wide_updates);
    workloads.push(
        recorded(
            db,
            "wide-updates",
            format!("{wide_rows} 50-column rows inserted, then each updated {updates} times, 1000 rows per UPDATE"),
            wide_rows * (updates + 1),
            async |db| {
                let mut conn = db.admin().await;
                let value = |i: u64, c: u64| match c % 4 {
                    0 => format!("{}", i * c),
                    1 => format!("'value {i} {c}'"),
                    2 => format!("{}.{:02}", i + c, c % 100),
                    _ => format!("'2024-01-{:02} 12:{:02}:00'", c % 28 + 1, i % 60),
                };
                let mut id = 0;
                while id < wide_rows {
                    let values: Vec<String> = (id..(id + 200).min(wide_rows))
                        .map(|i| format!("({i},{})", (1..50).map(|c| value(i, c)).collect::<Vec<_>>().join(",")))
                        .collect();
                    id += values.len() as u64;
                    exec(
                        &mut conn,
                        &format!("INSERT INTO {SCHEMA}.wide VALUES {}", values.join(",")),
                    )
                    .await;
                }
                for round in 0..updates {
                    let mut id = 0;
                    while id < wide_rows {
                        exec(
                            &mut conn,
                            &format!(
                                "UPDATE {SCHEMA}.wide SET c4 = c4 + 1, c1 = CONCAT('round {round} ', id), c2 = c2 + 1 \
                                 WHERE id >= {id} AND id < {}",
                                id + 1000
                            ),
                        )
                        .await;
                        id += 1000;
                    }
                }
            },
        )
        .await,
    );

    let rows = sizes.big_rows;
    workloads.push(
        recorded(
            db,
            "one-big-txn",
            format!("one transaction of {rows} rows"),
            rows,
            async |db| {
                let mut conn = db.admin().await;
                exec(
                    &mut conn,
                    &format!(
                        "INSERT INTO {SCHEMA}.narrow SELECT 20000000 + seq, seq % 1000, CONCAT('big ', seq) \
                     FROM {SCHEMA}.seq_1_to_{rows}"
                    ),
                )
                .await;
            },
        )
        .await,
    );

    let txns = sizes.mix_txns;
    // Per transaction: 3 inserts, 1 update of 2 rows, 1 delete = 6 row changes.
    workloads.push(
        recorded(
            db,
            "mix",
            format!("{txns} transactions of 3 inserts, a 2-row update and a delete, 2 writers"),
            txns * 6,
            async |db| {
                let writer = |from: u64, to: u64| async move {
                    let mut conn = db.admin().await;
                    for t in from..to {
                        let base = t * 3;
                        let sql = format!(
                            "BEGIN; INSERT INTO {SCHEMA}.mix VALUES ({base},1,'a'),({b1},2,'b'),({b2},3,'c'); \
                             UPDATE {SCHEMA}.mix SET n = n + 10 WHERE id IN ({base},{b1}); \
                             DELETE FROM {SCHEMA}.mix WHERE id = {b2}; COMMIT",
                            b1 = base + 1,
                            b2 = base + 2
                        );
                        exec(&mut conn, &sql).await;
                    }
                };
                tokio::join!(writer(0, txns / 2), writer(txns / 2, txns));
            },
        )
        .await,
    );
    workloads
}
