//! Active/standby through a real 3-node ZooKeeper ensemble, two instances, a real MariaDB, a continuous write load
//! and a consumer that records every row. Faults: SIGKILL, SIGTERM, SIGSTOP past the session timeout, and a silent
//! network cut between the active instance and ZooKeeper. After every fault: every committed row is delivered, no
//! row whose ack a server processed is delivered again, and no two instances ever serve at once: each instance's
//! serving terms, rebuilt from its own timestamped log on the machine's one clock, never overlap another's (a
//! prober that asks both instances all along checks that those terms cover every moment it saw one serving).
//! Failover times are printed (measurements belong in the benchmark report, not in assertions).

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use canal_e2e::{
    InstanceProcess, MariaDb, TcpProxy, ZooKeeper, eventually, free_port, http_get, log_line_time, wait_until,
};
use canal_instance::client::{CanalClient, GetWait, running_server};
use canal_instance::error::Error;
use common::{BINARY, changes, setup_schema, value_of};
use mysql_async::prelude::Queryable;

const SESSION_TIMEOUT_S: u64 = 4;

struct Node {
    port: u16,
    metrics_port: u16,
    dir: PathBuf,
    config: String,
    process: Option<InstanceProcess>,
    /// Processes of this node that have exited.
    past: Vec<Lifetime>,
}

/// What one instance process logged, and the latest moment it can have served: when it was seen dead, or, for one
/// still running, when the log was read.
struct Lifetime {
    log: String,
    ended: SystemTime,
}

/// A span of time in which an instance may have served.
#[derive(Clone, Copy)]
struct Term {
    from: SystemTime,
    to: SystemTime,
}

impl std::fmt::Debug for Term {
    /// Seconds since the epoch, to the microsecond, as in the instance logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        write!(f, "{:.6}..{:.6}", seconds(self.from), seconds(self.to))
    }
}

impl Term {
    fn overlaps(&self, other: &Term) -> bool {
        self.from < other.to && other.from < self.to
    }
}

/// The terms in which a process may have served, from its own log. A term starts at "became the active instance",
/// logged before a winner serves anything, and ends when its lease is revoked, less the time the lease had already
/// lapsed by then (a paused process stops serving when its lease lapses, not when it wakes up and notices); a term
/// still open when the process ended lasts until then. Every bound errs towards a longer term.
fn serving_terms(life: &Lifetime) -> Vec<Term> {
    let mut terms = Vec::new();
    let mut open: Option<SystemTime> = None;
    for line in life.log.lines() {
        let Some(at) = log_line_time(line) else { continue };
        if line.contains("became the active instance") {
            open.get_or_insert(at);
        } else if line.contains("lease revoked")
            && let Some(from) = open.take()
        {
            let lapsed_us: u64 = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("lapsed_us="))
                .and_then(|us| us.parse().ok())
                .unwrap_or_else(|| panic!("no lapsed_us in `{line}`"));
            let to = (at - Duration::from_micros(lapsed_us)).max(from);
            terms.push(Term { from, to });
        }
    }
    if let Some(from) = open {
        terms.push(Term { from, to: life.ended });
    }
    terms
}

impl Node {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        self.process = Some(InstanceProcess::spawn(
            BINARY,
            &self.dir,
            &self.config,
            self.port,
            &[("CANAL_SOURCE_PASSWORD", "canal")],
        ));
    }

    fn process(&mut self) -> &mut InstanceProcess {
        self.process.as_mut().expect("node started")
    }

    /// Records the log of the current process, which has exited (or been killed) by now.
    fn retire(&mut self) {
        let process = self.process.take().expect("node started");
        self.past.push(Lifetime {
            log: process.log(),
            ended: SystemTime::now(),
        });
    }

    /// Every term this node's processes may have served in, so far.
    fn terms(&self) -> Vec<Term> {
        let current = self.process.as_ref().map(|p| Lifetime {
            log: p.log(),
            ended: SystemTime::now(),
        });
        self.past.iter().chain(&current).flat_map(serving_terms).collect()
    }
}

fn node(db: &MariaDb, zk_servers: &str, index: u32) -> Node {
    let dir = canal_e2e::fresh_dir("canal-ha-");
    let port = free_port();
    let metrics_port = free_port();
    let config = format!(
        "destination: example\n\
         source:\n  address: {}\n  username: canal\n  serverId: {}\n\
         filter:\n  include: 'ha_db\\..*'\n\
         server:\n  host: 127.0.0.1\n  port: {port}\n  metricsPort: {metrics_port}\n\
         dataDir: {}\n\
         zookeeper:\n  servers: '{zk_servers}'\n  sessionTimeoutSeconds: {SESSION_TIMEOUT_S}\n  failoverDelaySeconds: 1\n",
        db.address(),
        500 + index,
        dir.join("data").display()
    );
    Node {
        port,
        metrics_port,
        dir,
        config,
        process: None,
        past: Vec::new(),
    }
}

/// Rows the writer committed.
#[derive(Default)]
struct Written {
    committed: Vec<u32>,
}

async fn writer(db_port: u16, stop: Arc<AtomicBool>, written: Arc<Mutex<Written>>) {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db_port)
        .user(Some("root"))
        .pass(Some("root"))
        .prefer_socket(false);
    let mut conn: Option<mysql_async::Conn> = None;
    let mut id = 1u32;
    while !stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            conn = mysql_async::Conn::new(opts.clone()).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match c.query_drop(format!("INSERT INTO ha_db.t VALUES ({id})")).await {
            // 1062: an earlier attempt whose answer was lost did commit.
            Ok(()) | Err(mysql_async::Error::Server(mysql_async::ServerError { code: 1062, .. })) => {
                written.lock().unwrap().committed.push(id);
                id += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            // The database is restarting: retry the same row on a new connection.
            Err(_) => conn = None,
        }
    }
}

/// What the consumer saw.
#[derive(Default)]
struct Seen {
    delivered: Vec<u32>,
    /// Rows of batches whose ack a server is known to have processed (a later request on the same connection
    /// succeeded).
    confirmed: HashSet<u32>,
    redelivered_after_confirmed_ack: Vec<u32>,
    reconnects: u32,
}

async fn consumer(zk: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::SeqCst) {
        let session = async {
            let server = running_server(&zk, "example").await?;
            let mut client = CanalClient::connect(&server, "", "").await?;
            client.subscribe("example", "1001", "").await?;
            client.rollback(0).await?;
            let mut unconfirmed: Vec<u32> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let message = tokio::time::timeout(
                    Duration::from_secs(3),
                    client.get_without_ack(50, GetWait::Up(Duration::from_millis(100))),
                )
                .await
                .map_err(|_| Error::Protocol("get timed out".into()))??;
                {
                    let mut seen = seen.lock().unwrap();
                    seen.confirmed.extend(unconfirmed.drain(..));
                    for change in changes(&message.entries) {
                        let id: u32 = value_of(&change.row.after_columns, "id").parse().unwrap();
                        if seen.confirmed.contains(&id) {
                            seen.redelivered_after_confirmed_ack.push(id);
                        }
                        seen.delivered.push(id);
                        unconfirmed.push(id);
                    }
                }
                if message.batch_id == -1 {
                    continue;
                }
                client.ack(message.batch_id).await?;
            }
            Ok::<(), Error>(())
        };
        if session.await.is_err() {
            seen.lock().unwrap().reconnects += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether an instance serves: a GET for a client that never subscribed is answered "should subscribe first" by the
/// active instance and "should start first" by a standby; nothing is consumed either way.
async fn serves(client: &mut Option<CanalClient>, address: &str) -> bool {
    if client.is_none() {
        *client = tokio::time::timeout(Duration::from_millis(200), CanalClient::connect(address, "", ""))
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(c) = client.as_mut() {
            c.resume_subscription("example", "999");
        }
    }
    let Some(c) = client.as_mut() else { return false };
    match tokio::time::timeout(Duration::from_millis(200), c.get_without_ack(1, GetWait::No)).await {
        Ok(Err(Error::Server { message, .. })) if message.contains("should subscribe first") => true,
        Ok(Err(Error::Server { .. })) => false,
        _ => {
            *client = None;
            false
        }
    }
}

/// Samples both instances continuously; records every moment both served, and when each started serving.
#[derive(Default)]
struct Probe {
    both_serving: Vec<Instant>,
    /// (instance index, time it was first seen serving after not serving)
    takeovers: Vec<(usize, Instant)>,
    /// (instance index, the request/answer window of an answer that showed it serving)
    served: Vec<(usize, Term)>,
}

async fn prober(addresses: [String; 2], stop: Arc<AtomicBool>, probe: Arc<Mutex<Probe>>) {
    let mut clients: [Option<CanalClient>; 2] = [None, None];
    let mut was = [false, false];
    while !stop.load(Ordering::SeqCst) {
        let asked_a = SystemTime::now();
        let a = serves(&mut clients[0], &addresses[0]).await;
        let asked_b = SystemTime::now();
        let b = serves(&mut clients[1], &addresses[1]).await;
        let answered_b = SystemTime::now();
        let now = Instant::now();
        {
            let mut probe = probe.lock().unwrap();
            if a {
                probe.served.push((
                    0,
                    Term {
                        from: asked_a,
                        to: asked_b,
                    },
                ));
            }
            if b {
                probe.served.push((
                    1,
                    Term {
                        from: asked_b,
                        to: answered_b,
                    },
                ));
            }
            if a && b {
                probe.both_serving.push(now);
            }
            for (i, serving) in [a, b].into_iter().enumerate() {
                if serving && !was[i] {
                    probe.takeovers.push((i, now));
                }
                was[i] = serving;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Index of the serving instance, once one serves (after the given moment).
async fn wait_for_takeover(probe: &Arc<Mutex<Probe>>, after: Instant, timeout: Duration) -> (usize, Duration) {
    eventually(timeout, "a takeover", async || {
        match probe.lock().unwrap().takeovers.iter().find(|(_, at)| *at > after) {
            Some((i, at)) => Ok((*i, *at - after)),
            None => Err(format!("no instance took over within {timeout:?}")),
        }
    })
    .await
}

async fn wait_for_rows(seen: &Arc<Mutex<Seen>>, written: &Arc<Mutex<Written>>, timeout: Duration) {
    let target = written.lock().unwrap().committed.len();
    wait_for_delivered(seen, target, timeout).await;
}

/// Waits until rows 1 to `target` are all delivered.
async fn wait_for_delivered(seen: &Arc<Mutex<Seen>>, target: usize, timeout: Duration) {
    eventually(timeout, "every committed row to be delivered", async || {
        let delivered: HashSet<u32> = seen.lock().unwrap().delivered.iter().copied().collect();
        if (1..=target as u32).all(|id| delivered.contains(&id)) {
            Ok(())
        } else {
            Err(format!("rows up to {target} not all delivered within {timeout:?}"))
        }
    })
    .await
}

/// Waits until the writer has committed `more` rows beyond what it had, and all of them are delivered: the load runs
/// through the active instance before the next fault.
async fn wait_for_more_rows(seen: &Arc<Mutex<Seen>>, written: &Arc<Mutex<Written>>, more: usize) {
    let target = written.lock().unwrap().committed.len() + more;
    eventually(Duration::from_secs(30), "the writer to commit more rows", async || {
        let committed = written.lock().unwrap().committed.len();
        if committed >= target {
            Ok(())
        } else {
            Err(format!("{committed} of {target} committed"))
        }
    })
    .await;
    wait_for_delivered(seen, target, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_loses_nothing_and_never_serves_twice() {
    let zookeeper = ZooKeeper::ensemble();
    let mut db = MariaDb::start(&[]);
    setup_schema(&db, "ha_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;

    // Instance 0 reaches ZooKeeper through proxies the test can cut.
    let mut proxies = Vec::new();
    for server in zookeeper.servers.split(',') {
        proxies.push(TcpProxy::start(server).await);
    }
    let proxied: Vec<String> = proxies.iter().map(|p| p.address.clone()).collect();
    let mut nodes = [node(&db, &proxied.join(","), 0), node(&db, &zookeeper.servers, 1)];
    nodes[0].start();
    nodes[0]
        .process()
        .wait_for_log("became the active instance", Duration::from_secs(30))
        .await;
    nodes[1].start();
    nodes[1]
        .process()
        .wait_for_log("connected to ZooKeeper", Duration::from_secs(30))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(Written::default()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let probe = Arc::new(Mutex::new(Probe::default()));
    let tasks = [
        tokio::spawn(writer(db.port, stop.clone(), written.clone())),
        tokio::spawn(consumer(zookeeper.servers.clone(), stop.clone(), seen.clone())),
        tokio::spawn(prober(
            [nodes[0].address(), nodes[1].address()],
            stop.clone(),
            probe.clone(),
        )),
    ];
    wait_for_rows(&seen, &written, Duration::from_secs(30)).await;
    let ready = |node: &Node| http_get(&format!("127.0.0.1:{}", node.metrics_port), "/readyz").unwrap();
    let (code, body) = ready(&nodes[0]);
    assert_eq!((code, body.as_str()), (200, "active: serving clients\n"));
    wait_until(Duration::from_secs(10), "the standby to report itself ready", || {
        ready(&nodes[1]).0 == 200
    })
    .await;
    let (_, body) = ready(&nodes[1]);
    assert!(
        body.starts_with("standby") && body.contains(&nodes[0].address()),
        "{body}"
    );
    let mut active = 0usize;
    let mut report = Vec::new();

    for fault in [
        "SIGKILL",
        "SIGTERM",
        "SIGKILL",
        "SIGSTOP",
        "cut",
        "zookeeper-leader",
        "mariadb",
    ] {
        if fault == "zookeeper-leader" || fault == "mariadb" {
            // Neither needs a failover: the active instance rides it out.
            wait_for_more_rows(&seen, &written, 20).await;
            let before = Instant::now();
            if fault == "zookeeper-leader" {
                let leader = zookeeper.leader().expect("the ensemble has a leader");
                zookeeper.stop_node(leader);
                zookeeper.start_node(leader);
            } else {
                db.stop_server();
                db.start_server();
            }
            wait_for_rows(&seen, &written, Duration::from_secs(60)).await;
            let takeovers: Vec<usize> = probe
                .lock()
                .unwrap()
                .takeovers
                .iter()
                .filter(|(_, at)| *at > before)
                .map(|(i, _)| *i)
                .collect();
            assert!(
                takeovers.iter().all(|i| *i == active),
                "{fault}: no failover expected, saw {takeovers:?}"
            );
            report.push(format!(
                "{fault}: no failover ({} brief re-verifications)",
                takeovers.len()
            ));
            continue;
        }
        wait_for_more_rows(&seen, &written, 20).await;
        let before = Instant::now();
        match fault {
            "SIGKILL" => {
                nodes[active].process().kill();
                nodes[active].retire();
            }
            "SIGTERM" => {
                nodes[active].process().signal("TERM");
            }
            "SIGSTOP" => nodes[active].process().signal("STOP"),
            "cut" => {
                assert_eq!(active, 0, "the cut applies to the proxied instance");
                proxies.iter().for_each(TcpProxy::cut);
            }
            _ => unreachable!(),
        }
        let (next, took) = wait_for_takeover(&probe, before, Duration::from_secs(30)).await;
        assert_ne!(next, active, "{fault}: the other instance took over");
        report.push(format!("{fault}: new active serving after {took:?}"));
        // Bring the faulted instance back as a standby. A paused or cut-off instance is let go only now that the
        // other one serves: its running node went with its session, so it was held past its session timeout.
        match fault {
            "SIGSTOP" => nodes[active].process().signal("CONT"),
            "cut" => proxies.iter().for_each(TcpProxy::restore),
            _ => {
                if fault == "SIGTERM" {
                    assert_eq!(
                        nodes[active].process().wait_exit(Duration::from_secs(30)).await,
                        Some(0)
                    );
                    nodes[active].retire();
                }
                nodes[active].start();
            }
        }
        let old = active;
        nodes[old]
            .process()
            .wait_for_log("connected to ZooKeeper", Duration::from_secs(30))
            .await;
        active = next;
        wait_for_rows(&seen, &written, Duration::from_secs(60)).await;
    }

    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    wait_for_rows(&seen, &written, Duration::from_secs(30)).await;
    let seen = seen.lock().unwrap();
    let probe = probe.lock().unwrap();
    eprintln!(
        "failover report ({} rows written, {} delivered, {} consumer reconnects):",
        written.lock().unwrap().committed.len(),
        seen.delivered.len(),
        seen.reconnects
    );
    for line in &report {
        eprintln!("  {line}");
    }
    // The measurements go to a report file, not into assertions (machines are shared and noisy).
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/failover-report.txt");
    let _ = std::fs::write(&path, report.join("\n") + "\n");
    let terms = [nodes[0].terms(), nodes[1].terms()];
    eprintln!(
        "serving terms of instance 0: {:?}\nserving terms of instance 1: {:?}",
        terms[0], terms[1]
    );
    // Six failovers' worth: the first term and one per fault that moves the active instance.
    assert!(
        terms[0].len() + terms[1].len() >= 6 && terms.iter().all(|t| !t.is_empty()),
        "each instance's log shows its serving terms: {terms:?}"
    );
    // The terms are the evidence only if they cover what the prober saw.
    let uncovered: Vec<&(usize, Term)> = probe
        .served
        .iter()
        .filter(|(i, seen)| !terms[*i].iter().any(|term| term.overlaps(seen)))
        .collect();
    assert!(
        uncovered.is_empty(),
        "the prober saw an instance serve outside the terms its log shows: {uncovered:?}\nterms: {terms:?}"
    );
    let overlapping: Vec<(&Term, &Term)> = terms[0]
        .iter()
        .flat_map(|a| terms[1].iter().filter(|b| a.overlaps(b)).map(move |b| (a, b)))
        .collect();
    assert!(
        overlapping.is_empty(),
        "two instances served at once (terms of instance 0, instance 1): {overlapping:?}\nall terms: {terms:?}"
    );
    assert!(
        probe.both_serving.is_empty(),
        "two instances served at once {} times",
        probe.both_serving.len()
    );
    assert!(
        seen.redelivered_after_confirmed_ack.is_empty(),
        "rows delivered again after their ack was processed: {:?}",
        &seen.redelivered_after_confirmed_ack[..seen.redelivered_after_confirmed_ack.len().min(20)]
    );
}
