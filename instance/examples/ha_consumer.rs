//! An example consumer that can run as several replicas (for example a Kubernetes Deployment with `replicas: 2`):
//! only the replica holding canal's `{destination}/{clientId}/running` node fetches; the others wait and take over.
//!
//! ```sh
//! cargo run -p canal-instance --example ha_consumer -- 127.0.0.1:2181 example 1001
//! ```

use std::time::Duration;

use canal_api::ZooKeeperConfig;
use canal_instance::client::tail::change_lines;
use canal_instance::client::{ClusterClient, GetWait, HaConsumer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let zookeeper = args.next().unwrap_or_else(|| "127.0.0.1:2181".into());
    let destination = args.next().unwrap_or_else(|| "example".into());
    let client_id: i16 = args.next().unwrap_or_else(|| "1001".into()).parse()?;

    let config = ZooKeeperConfig {
        servers: zookeeper.clone(),
        session_timeout_seconds: 10,
        failover_delay_seconds: 5,
        cursor_flush_period_ms: 0,
    };
    let servers = ClusterClient::new(&zookeeper, &destination, &client_id.to_string(), "");
    let mut consumer = HaConsumer::start(config, servers, &destination, client_id);
    loop {
        // Waits while another replica is active; fetches once this one is.
        let message = consumer
            .get_without_ack(100, GetWait::Up(Duration::from_secs(1)))
            .await?;
        if message.batch_id == -1 {
            continue;
        }
        for entry in &message.entries {
            for change in change_lines(&destination, entry)? {
                // Process the change here (idempotently: delivery is at least once).
                println!("{change}");
            }
        }
        consumer.ack(message.batch_id).await?;
    }
}
