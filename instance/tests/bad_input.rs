//! Bad input gets a clear error and loses nothing; the process does not crash.
//!
//! Wrong database password, a source whose binlog_format is not ROW, config typos and invalid values, clients that
//! send garbage or declare a 2 GB frame, a wrong canal password, and acks of batches that do not exist. Each test runs
//! its own instance; they share one MariaDB, except the STATEMENT-format test which needs its own.

mod common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canal_e2e::{InstanceProcess, MariaDb, free_port, rss_kib, wait_until};
use canal_instance::Error;
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::protocol::packet::{self, Packet, PacketType};
use common::{BINARY, Fixture, changes, exec, receive_rows, setup_schema, value_of};
use mysql_async::prelude::Queryable;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an instance may take to reach the binlog.
const READY: Duration = Duration::from_secs(30);
/// Generous bound for anything the server should answer at once.
const PROMPT: Duration = Duration::from_secs(10);

fn temp_dir() -> PathBuf {
    canal_e2e::fresh_dir("canal-bad-input-")
}

/// A standalone config, written out here because some tests need fields `standalone_config` does not write.
struct Config<'a> {
    address: String,
    username: &'a str,
    schema: &'a str,
    port: u16,
    dir: &'a Path,
    /// Indented lines added to `source:`.
    source_extra: &'a str,
    /// Indented lines added to `server:`.
    server_extra: &'a str,
    /// Appended at the top level.
    extra: &'a str,
}

impl<'a> Config<'a> {
    fn new(db: &MariaDb, schema: &'a str, port: u16, dir: &'a Path) -> Self {
        Self {
            address: db.address(),
            username: "canal",
            schema,
            port,
            dir,
            source_extra: "",
            server_extra: "",
            extra: "",
        }
    }

    fn yaml(&self) -> String {
        format!(
            "destination: example\n\
             source:\n  address: {}\n  username: {}\n  serverId: {}\n{}\
             filter:\n  include: '{}\\..*'\n\
             server:\n  host: 127.0.0.1\n  port: {}\n  metricsPort: 0\n{}\
             dataDir: {}\n{}",
            self.address,
            self.username,
            server_id(self.port),
            self.source_extra,
            self.schema,
            self.port,
            self.server_extra,
            self.dir.join("data").display(),
            self.extra,
        )
    }
}

fn server_id(port: u16) -> u32 {
    1000 + port as u32 % 50000
}

/// How often `needle` occurs in the instance log.
fn occurrences(instance: &InstanceProcess, needle: &str) -> usize {
    instance.log().matches(needle).count()
}

/// Connects, subscribes and gets once, each bounded by [`PROMPT`], so a server that never answers fails the test
/// instead of hanging it.
async fn assert_serves(address: &str, username: &str, password: &str) -> CanalClient {
    let mut client = tokio::time::timeout(PROMPT, CanalClient::connect(address, username, password))
        .await
        .unwrap_or_else(|_| panic!("the canal server at {address} sent no handshake/auth reply within {PROMPT:?}"))
        .expect("connect to the canal server");
    tokio::time::timeout(PROMPT, client.subscribe("example", "1001", ""))
        .await
        .expect("subscribe answered in time")
        .expect("subscribe");
    tokio::time::timeout(PROMPT, client.get_without_ack(100, GetWait::No))
        .await
        .expect("get answered in time")
        .expect("get");
    client
}

/// Reads one canal frame (4-byte big-endian length, then the payload) from a raw socket.
async fn read_frame(stream: &mut TcpStream) -> Packet {
    let read = async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut payload).await?;
        std::io::Result::Ok(payload)
    };
    let payload = tokio::time::timeout(PROMPT, read)
        .await
        .expect("a frame within the timeout")
        .expect("read a frame");
    Packet::decode(payload.as_slice()).expect("the server's frame is a canal Packet")
}

/// A raw connection that has read the server's handshake.
async fn raw_connection(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let handshake = read_frame(&mut stream).await;
    assert_eq!(
        handshake.r#type,
        PacketType::Handshake as i32,
        "first frame is the handshake"
    );
    stream
}

/// Asserts the server closes the connection: a read returns EOF (or a reset, when unread bytes were discarded).
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(PROMPT, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the server did not close the connection within {PROMPT:?}"));
    match read {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection closed, got {n} more bytes: {:?}", &buf[..n]),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!("unexpected read error: {e}"),
    }
}

fn server_error<T>(result: canal_instance::Result<T>) -> (i32, String) {
    match result {
        Err(Error::Server { code, message }) => (code, message),
        Err(other) => panic!("expected a canal server error, got {other}"),
        Ok(_) => panic!("expected a canal server error, got success"),
    }
}

/// 1. A wrong MySQL password is reported with what to fix and retried with backoff; the process keeps running.
#[tokio::test]
async fn wrong_mysql_password_is_named_and_retried() {
    let db = MariaDb::shared();
    let dir = temp_dir();
    let port = free_port();
    let config = Config::new(db, "bad_pw_db", port, &dir).yaml();
    let mut instance = InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "wrong")]);
    let started = Instant::now();
    wait_until(READY, "the auth error logged twice", || {
        occurrences(&instance, "rejected user `canal`") >= 2
    })
    .await;
    let elapsed = started.elapsed();
    let log = instance.log();
    assert!(log.contains("CANAL_SOURCE_PASSWORD"), "the error names the fix:\n{log}");
    assert!(
        log.contains("source.passwordFrom"),
        "the error names the config field:\n{log}"
    );
    assert!(
        log.contains("retry_in=1s") && log.contains("retry_in=2s"),
        "backoff 1 s then 2 s:\n{log}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "the second attempt waited for the backoff ({elapsed:?})"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(instance.running(), "the process keeps running:\n{log}");
    eprintln!("second auth error after {elapsed:?}");
}

/// 1a. The canal server answers clients while the source rejects the password, both when the start position is
/// configured and when it would have to be asked from the (unreachable) source.
#[tokio::test]
async fn canal_server_answers_while_the_source_rejects_the_password() {
    let db = MariaDb::shared();
    for (what, extra) in [
        (
            "configured start",
            "start:\n  journalName: mysql-bin.000001\n  position: 4\n",
        ),
        ("start from the binlog end", ""),
    ] {
        let dir = temp_dir();
        let port = free_port();
        let config = Config {
            extra,
            ..Config::new(db, "bad_pw_serve_db", port, &dir)
        }
        .yaml();
        let mut instance = InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "wrong")]);
        instance.wait_for_log("rejected user `canal`", READY).await;
        assert!(instance.log().contains("canal server listening"), "{what}");
        let handshake = tokio::time::timeout(PROMPT, CanalClient::connect(&instance.address(), "", "")).await;
        assert!(
            handshake.is_ok(),
            "{what}: the canal server accepted the TCP connection but sent no handshake within {PROMPT:?}:\n{}",
            instance.log()
        );
        drop(assert_serves(&instance.address(), "", "").await);
        assert!(instance.running(), "{what}: still running after serving a client");
    }
}

/// 1b. Nothing needs a restart once the operator fixes the database side: the instance connects on its next retry
/// and delivers what is written afterwards.
#[tokio::test]
async fn wrong_mysql_password_recovers_when_the_database_is_fixed() {
    let db = MariaDb::shared();
    setup_schema(
        db,
        "bad_pw_fix_db",
        &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"],
    )
    .await;
    {
        let mut admin = db.admin().await;
        for s in [
            "SET SESSION sql_log_bin = 0",
            "DROP USER IF EXISTS 'canal_fix'@'%'",
            "CREATE USER 'canal_fix'@'%' IDENTIFIED BY 'old'",
            "GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'canal_fix'@'%'",
        ] {
            admin.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
    let dir = temp_dir();
    let port = free_port();
    let config = Config {
        username: "canal_fix",
        ..Config::new(db, "bad_pw_fix_db", port, &dir)
    }
    .yaml();
    let mut instance = InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "new")]);
    instance.wait_for_log("rejected user `canal_fix`", READY).await;
    {
        let mut admin = db.admin().await;
        admin.query_drop("SET SESSION sql_log_bin = 0").await.unwrap();
        admin
            .query_drop("ALTER USER 'canal_fix'@'%' IDENTIFIED BY 'new'")
            .await
            .unwrap();
    }
    instance
        .wait_for_log("binlog dump started", Duration::from_secs(60))
        .await;
    assert!(instance.running());
    let mut client = assert_serves(&instance.address(), "", "").await;
    exec(db, "bad_pw_fix_db", &["INSERT INTO t VALUES (1, 'a'), (2, 'b')"]).await;
    let rows = changes(&receive_rows(&mut client, 2, READY).await);
    let ids: Vec<&str> = rows.iter().map(|c| value_of(&c.row.after_columns, "id")).collect();
    assert_eq!(ids, ["1", "2"]);
}

/// 2. A source with binlog_format=STATEMENT is named as the problem, with ROW as the fix; the process keeps running.
#[tokio::test]
async fn statement_binlog_format_is_named() {
    let db = MariaDb::start(&["--binlog-format=STATEMENT"]);
    let dir = temp_dir();
    let port = free_port();
    let config = Config::new(&db, "stmt_db", port, &dir).yaml();
    let mut instance = InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "canal")]);
    instance.wait_for_log("binlog_format is STATEMENT", READY).await;
    wait_until(READY, "the setting error logged twice", || {
        occurrences(&instance, "binlog_format is STATEMENT") >= 2
    })
    .await;
    let log = instance.log();
    assert!(log.contains("needs ROW") && log.contains("binlog_format=ROW"), "{log}");
    assert!(log.contains("not usable for change capture"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(instance.running(), "the process keeps running:\n{log}");
}

/// 3. Misspelt fields and invalid values stop the process at once with exit code 2 and a message naming the field.
#[tokio::test]
async fn config_mistakes_exit_2_naming_the_field() {
    let db = MariaDb::shared();
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        // (what, source_extra, server_extra, extra, expected log fragments)
        (
            "misspelt source field",
            "  adress: x\n",
            "",
            "",
            &["unknown field `adress`", "address"],
        ),
        (
            "misspelt top-level field",
            "",
            "",
            "stor:\n  bufferSize: 1\n",
            &["unknown field `stor`", "store"],
        ),
        ("port out of range", "", "", "", &["server.port", "99999"]),
        (
            "zero buffer",
            "",
            "",
            "store:\n  bufferSize: 0\n",
            &["store.bufferSize", "greater than 0"],
        ),
        ("zero server id", "", "", "", &["source.serverId"]),
        ("bad regex", "", "", "", &["filter.include"]),
    ];
    for (what, source_extra, server_extra, extra, expected) in cases {
        let dir = temp_dir();
        let port = free_port();
        let mut yaml = Config {
            source_extra,
            server_extra,
            extra,
            ..Config::new(db, "cfg_db", port, &dir)
        }
        .yaml();
        match *what {
            "port out of range" => yaml = yaml.replace(&format!("port: {port}"), "port: 99999"),
            "zero server id" => yaml = yaml.replace(&format!("serverId: {}", server_id(port)), "serverId: 0"),
            "bad regex" => yaml = yaml.replace("include: 'cfg_db\\..*'", "include: 'cfg_db\\.(t'"),
            _ => {}
        }
        let started = Instant::now();
        let mut instance = InstanceProcess::spawn(BINARY, &dir, &yaml, port, &[("CANAL_SOURCE_PASSWORD", "canal")]);
        let code = instance.wait_exit(PROMPT).await;
        let log = instance.log();
        assert_eq!(code, Some(2), "{what}: exit code\n{yaml}\n{log}");
        for fragment in *expected {
            assert!(log.contains(fragment), "{what}: log names `{fragment}`:\n{log}");
        }
        assert!(!log.contains("panicked"), "{what}: {log}");
        assert!(
            !log.contains("canal server listening"),
            "{what}: nothing started:\n{log}"
        );
        let message = log.lines().find(|l| l.contains("ERROR")).unwrap_or_default();
        eprintln!("{what}: exit 2 after {:?}: {message}", started.elapsed());
    }
}

/// 4. A frame that is not a protobuf gets an error reply and the connection is closed; nothing else is affected.
#[tokio::test]
async fn garbage_frame_gets_an_error_and_is_closed() {
    let db = MariaDb::shared();
    setup_schema(db, "garbage_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let mut fixture = Fixture::start(db, "garbage_db", "").await;
    let address = fixture.instance.address();

    let mut stream = raw_connection(&address).await;
    let garbage = [0xFFu8; 16];
    stream.write_all(&(garbage.len() as u32).to_be_bytes()).await.unwrap();
    stream.write_all(&garbage).await.unwrap();
    let reply = read_frame(&mut stream).await;
    assert_eq!(reply.r#type, PacketType::Ack as i32, "an error Ack");
    let ack = packet::Ack::decode(reply.body).expect("Ack body");
    assert_eq!(
        ack.error_code_present,
        Some(packet::ack::ErrorCodePresent::ErrorCode(400))
    );
    assert!(ack.error_message.contains("malformed packet"), "{}", ack.error_message);
    assert_closed(&mut stream).await;

    // The same after authenticating: garbage in place of a request.
    let mut client = fixture.client().await;
    exec(db, "garbage_db", &["INSERT INTO t VALUES (1)"]).await;
    let mut stream = raw_connection(&address).await;
    let auth = Packet {
        r#type: PacketType::Clientauthentication as i32,
        body: packet::ClientAuth::default().encode_to_vec().into(),
        ..Default::default()
    }
    .encode_to_vec();
    stream.write_all(&(auth.len() as u32).to_be_bytes()).await.unwrap();
    stream.write_all(&auth).await.unwrap();
    let ok = read_frame(&mut stream).await;
    assert_eq!(ok.r#type, PacketType::Ack as i32);
    assert!(
        packet::Ack::decode(ok.body).unwrap().error_code_present.is_none(),
        "authenticated"
    );
    stream.write_all(&(garbage.len() as u32).to_be_bytes()).await.unwrap();
    stream.write_all(&garbage).await.unwrap();
    let reply = read_frame(&mut stream).await;
    let ack = packet::Ack::decode(reply.body).expect("Ack body");
    assert!(ack.error_message.contains("malformed packet"), "{}", ack.error_message);
    assert_closed(&mut stream).await;

    // A normal client, connected before, still works and loses nothing; once it leaves, the next one is served.
    let rows = changes(&receive_rows(&mut client, 1, READY).await);
    assert_eq!(value_of(&rows[0].row.after_columns, "id"), "1");
    drop(client);
    drop(assert_serves(&address, "", "").await);
    assert!(fixture.instance.log().contains("not a canal packet"));
    assert!(fixture.instance.running());
}

/// 5. A declared 2 GB frame closes the connection before anything is allocated for it.
#[tokio::test]
async fn huge_declared_frame_is_refused_without_allocating() {
    let db = MariaDb::shared();
    let mut fixture = Fixture::start(db, "huge_frame_db", "").await;
    let address = fixture.instance.address();
    let pid = fixture.instance.pid();
    drop(assert_serves(&address, "", "").await);
    let rss_before = rss_kib(pid);
    assert!(rss_before > 0);

    for _ in 0..3 {
        let mut stream = raw_connection(&address).await;
        stream.write_all(&0x7FFF_FFF0u32.to_be_bytes()).await.unwrap();
        stream.write_all(b"abcdefgh").await.unwrap();
        assert_closed(&mut stream).await;
    }
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 50 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(fixture.instance.log().contains("unreadable frame"));
    drop(assert_serves(&address, "", "").await);
    assert!(fixture.instance.running());
    eprintln!("RSS {rss_before} KiB -> {rss_after} KiB");
}

/// 6. With a server password, a wrong password or user is refused with canal's message; the right one works.
#[tokio::test]
async fn wrong_canal_password_is_refused() {
    let db = MariaDb::shared();
    setup_schema(db, "canal_pw_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let dir = temp_dir();
    let port = free_port();
    let server_extra = "  username: canal\n  passwordFrom:\n    env: CANAL_SERVER_PASSWORD\n";
    let config = Config {
        server_extra,
        ..Config::new(db, "canal_pw_db", port, &dir)
    }
    .yaml();
    let mut instance = InstanceProcess::spawn(
        BINARY,
        &dir,
        &config,
        port,
        &[("CANAL_SOURCE_PASSWORD", "canal"), ("CANAL_SERVER_PASSWORD", "secret")],
    );
    instance.wait_for_log("binlog dump started", READY).await;
    let address = instance.address();

    for (user, password) in [("canal", "wrong"), ("canal", ""), ("other", "secret")] {
        let result = tokio::time::timeout(PROMPT, CanalClient::connect(&address, user, password))
            .await
            .expect("auth answered in time");
        let (code, message) = server_error(result);
        assert_eq!(code, 400, "{user}/{password}: {message}");
        assert!(
            message.contains(&format!("auth failed for user:{user}")),
            "{user}/{password}: {message}"
        );
    }
    let mut client = assert_serves(&address, "canal", "secret").await;
    exec(db, "canal_pw_db", &["INSERT INTO t VALUES (7)"]).await;
    let rows = changes(&receive_rows(&mut client, 1, READY).await);
    assert_eq!(value_of(&rows[0].row.after_columns, "id"), "7");
    assert!(instance.running());
}

/// 7. An ack of an unknown batch is refused as the error of the next request; the stream continues and loses
/// nothing.
#[tokio::test]
async fn ack_of_unknown_batch_is_refused_and_nothing_is_lost() {
    let db = MariaDb::shared();
    setup_schema(db, "bad_ack_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let mut fixture = Fixture::start(db, "bad_ack_db", "").await;
    exec(db, "bad_ack_db", &["INSERT INTO t VALUES (1), (2), (3)"]).await;

    let mut client = fixture.client().await;
    client.ack(12345).await.expect("an ack gets no reply");
    let (code, message) = server_error(
        client
            .get_without_ack(100, GetWait::Up(Duration::from_millis(200)))
            .await,
    );
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("batchId:12345 is not exist"), "{message}");
    // The following gets work again and every row arrives (the server answered the refused-ack round's GET too;
    // canal's protocol leaves that reply to be read by the next request).
    let rows = changes(&receive_rows(&mut client, 3, READY).await);
    let ids: Vec<&str> = rows.iter().map(|c| value_of(&c.row.after_columns, "id")).collect();
    assert_eq!(ids, ["1", "2", "3"]);

    // batchId 0 is canal's 402, on a fresh connection so no earlier reply is still in flight. The first
    // connection goes first: one connection per client id.
    drop(client);
    let mut client = fixture.client().await;
    client.ack(0).await.expect("an ack gets no reply");
    let (code, message) = server_error(client.get_without_ack(100, GetWait::No).await);
    assert_eq!(code, 402, "{message}");
    assert!(message.contains("batchId should assign value"), "{message}");
    client
        .get_without_ack(100, GetWait::No)
        .await
        .expect("the next get works");

    assert!(fixture.instance.log().contains("request refused"));
    assert!(fixture.instance.running());
}
