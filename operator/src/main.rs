//! The `canal-operator` binary: parses its flags, serves the HTTP endpoints, and runs the controller while this
//! replica holds the leader lease (the loop itself is `canal_operator::leader`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use canal_operator::controller::{self, Context, MANAGER};
use canal_operator::http::{self, Status};
use canal_operator::leader::{self, LeaseSettings};
use canal_operator::metrics::Metrics;
use clap::{Parser, ValueEnum};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser)]
#[command(version, about = "Kubernetes operator for canal-rs CanalInstance resources")]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "CANAL_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Log format.
    #[arg(long, env = "CANAL_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Namespace of the leader-election Lease (normally the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "canal-operator-leader")]
    lease_name: String,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let client = Client::try_default().await?;

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let status = Arc::new(Status {
        registry,
        leading: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let server = tokio::spawn(http::serve(listener, status.clone(), shutdown.clone()));

    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("canal-operator-{}", std::process::id()));
    let lease = LeaseSettings::new(&args.namespace, &args.lease_name, &identity);
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(identity),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        metrics,
    ));
    let elected = leader::run(client, &lease, shutdown.clone(), &status.leading, |stop| {
        controller::run(ctx.clone(), stop)
    })
    .await;
    // Whatever ended the election, stop serving too.
    shutdown.cancel();
    let _ = server.await;
    elected?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
