//! Role reporting inside Kubernetes: the pod labels itself `canal.rs/role: active|standby` (the client Service
//! selects the active pod) and server-side-applies its own `members` entry into the CanalInstance status under a
//! per-pod field manager; the active pod also owns `activePod` and `position`.
//!
//! Reporting runs beside the data path and never waits on it: API errors are logged and retried soon, backing off
//! to the refresh period. Outside Kubernetes (no POD_NAME, POD_NAMESPACE and CANAL_INSTANCE in the environment)
//! nothing runs.
//!
//! The active report is fenced like serving is: a process paused between deciding to report "active" and writing it
//! (SIGSTOP, a long GC-like stall) could otherwise name itself active after another pod took over. So the write is
//! dropped when this process no longer holds its lease, and it carries the resourceVersion it read, so a write that
//! is late anyway is refused by the API server once another pod has reported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ha::Standing;

/// How often a pod refreshes its report even when nothing changed (its `lastSeen`).
const REFRESH: Duration = Duration::from_secs(10);
/// The first pause after a report failed; it doubles up to [`REFRESH`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The label the client Service selects on.
pub const ROLE_LABEL: &str = "canal.rs/role";

/// The connection consuming one client id, for status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub client_id: i16,
    /// The consumer's `ip:port`, as the server sees it.
    pub address: String,
    pub since: jiff::Timestamp,
}

/// Where this pod reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    pub pod: String,
    pub namespace: String,
    /// Name of the CanalInstance the pod belongs to.
    pub instance: String,
}

impl PodIdentity {
    /// The identity from the pod environment; `None` outside Kubernetes.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            pod: env("POD_NAME").filter(|v| !v.is_empty())?,
            namespace: env("POD_NAMESPACE").filter(|v| !v.is_empty())?,
            instance: env("CANAL_INSTANCE").filter(|v| !v.is_empty())?,
        })
    }
}

/// Where the reader stands, shared with the reporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderPosition {
    /// `file:offset` of the last event read.
    pub position: String,
    /// When the source wrote that event (ms since the epoch); a heartbeat counts as "now", as in canal.
    pub event_time_ms: i64,
}

impl ReaderPosition {
    /// How far behind the source the reader is, as `1.5s`.
    pub fn lag(&self, now_ms: i64) -> String {
        format!("{:.1}s", (now_ms - self.event_time_ms).max(0) as f64 / 1000.0)
    }
}

/// The reader's latest position, shared with the reporter.
pub type SharedPosition = Arc<Mutex<Option<ReaderPosition>>>;

/// Reports this pod's role and position.
pub struct Reporter {
    client: kube::Client,
    identity: PodIdentity,
    /// Whether this process may still claim the active role (its lease holds); always, standalone.
    still_active: Arc<dyn Fn() -> bool + Send + Sync>,
}

fn role_name(standing: &Standing) -> &'static str {
    match standing {
        Standing::Active => "active",
        _ => "standby",
    }
}

impl Reporter {
    pub fn new(client: kube::Client, identity: PodIdentity) -> Self {
        Self {
            client,
            identity,
            still_active: Arc::new(|| true),
        }
    }

    /// Fences the active report with `still_active`, checked right before the status is written.
    pub fn fenced_by(mut self, still_active: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.still_active = Arc::new(still_active);
        self
    }

    fn canal_instances(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("canal.rs", "v1alpha1", "CanalInstance");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "canalinstances");
        Api::namespaced_with(self.client.clone(), &self.identity.namespace, &resource)
    }

    /// One report: the pod label, then the status entry.
    pub async fn report(
        &self,
        standing: &Standing,
        position: Option<&ReaderPosition>,
        consumers: &[Consumer],
    ) -> Result<(), kube::Error> {
        let role = role_name(standing);
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), &self.identity.namespace);
        let label = json!({"metadata": {"labels": {ROLE_LABEL: role}}});
        pods.patch(&self.identity.pod, &PatchParams::default(), &Patch::Merge(&label))
            .await?;

        let active = role == "active";
        let mut resource_version = None;
        let mut member = json!({
            "name": self.identity.pod,
            "role": role,
            "lastSeen": jiff::Timestamp::now().to_string(),
        });
        let mut status = json!({"members": []});
        if let Some(at) = position.filter(|_| active) {
            member["position"] = json!(at.position);
            status["position"] = json!(at.position);
            status["lag"] = json!(at.lag(jiff::Timestamp::now().as_millisecond()));
        }
        if active {
            status["activePod"] = json!(self.identity.pod);
            // Sent even when empty: the list is atomic, so this replaces what a previous active pod wrote.
            status["consumers"] = consumers
                .iter()
                .map(|c| json!({"clientId": c.client_id, "address": c.address, "since": c.since.to_string()}))
                .collect();
            // The pod that takes over counts the failover. It restates the count on every report, because
            // server-side apply drops fields a manager stops sending.
            let current = self.canal_instances().get_status(&self.identity.instance).await?;
            if !(self.still_active)() {
                tracing::info!("no longer holds the active lease; the active report is dropped");
                return Ok(());
            }
            resource_version = current.metadata.resource_version.clone();
            let previous = &current.data["status"];
            let mut failovers = previous["failovers"].as_i64().unwrap_or(0);
            let mut last = previous["lastFailoverTime"].clone();
            let took_over = previous["activePod"].as_str().is_some_and(|p| p != self.identity.pod);
            if took_over {
                failovers += 1;
                last = json!(jiff::Timestamp::now().to_string());
                tracing::info!(previous = %previous["activePod"], failovers, "took over from another pod");
            }
            status["failovers"] = json!(failovers);
            if !last.is_null() {
                status["lastFailoverTime"] = last;
            }
        }
        status["members"] = json!([member]);
        let mut body = json!({"apiVersion": "canal.rs/v1alpha1", "kind": "CanalInstance", "status": status});
        if let Some(version) = resource_version {
            // A precondition: the status this report was computed from is still the current one.
            body["metadata"] = json!({"resourceVersion": version});
        }
        let manager = format!("canal-instance-{}", self.identity.pod);
        self.canal_instances()
            .patch_status(
                &self.identity.instance,
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(&body),
            )
            .await?;
        Ok(())
    }

    /// Reports on every role change, soon after consumers come and go, and every [`REFRESH`], until `shutdown`.
    pub async fn run(
        self,
        mut standing: watch::Receiver<Standing>,
        position: SharedPosition,
        consumers: impl Fn() -> Vec<Consumer>,
        mut consumer_changes: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut refresh = tokio::time::interval(REFRESH);
        // Standalone, the standing never changes and its sender is gone; keep refreshing `lastSeen` anyway.
        let mut open = true;
        let mut retry = FIRST_RETRY;
        loop {
            let current = standing.borrow_and_update().clone();
            let at = position.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Err(e) = self.report(&current, at.as_ref(), &consumers()).await {
                tracing::warn!(error = %e, retry_in = ?retry, "cannot report the pod's role to Kubernetes; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(REFRESH);
                continue;
            }
            retry = FIRST_RETRY;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = standing.changed(), if open => open = changed.is_ok(),
                // At most one report a second however fast clients reconnect.
                Ok(()) = consumer_changes.changed() => tokio::time::sleep(Duration::from_secs(1)).await,
                _ = refresh.tick() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;

    /// A reporter for pod `pod` of CanalInstance `shop/orders`, talking to `service`.
    fn mocked_reporter(service: tower_test::mock::Mock<Request<Body>, Response<Body>>, pod: &str) -> Reporter {
        let identity = PodIdentity {
            pod: pod.into(),
            namespace: "shop".into(),
            instance: "orders".into(),
        };
        Reporter::new(kube::Client::new(service, "shop"), identity)
    }

    #[test]
    fn nothing_runs_outside_kubernetes() {
        assert_eq!(PodIdentity::from_env(&|_| None), None);
        let partial = |k: &str| (k == "POD_NAME").then(|| "orders-0".to_string());
        assert_eq!(PodIdentity::from_env(&partial), None);
    }

    #[tokio::test]
    async fn a_pod_whose_lease_lapsed_does_not_write_itself_active() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = mocked_reporter(service, "orders-0").fenced_by(|| false);
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PATCH, "the label first");
            send.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::GET);
            let current = json!({"apiVersion": "canal.rs/v1alpha1", "kind": "CanalInstance",
                "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "9"},
                "status": {"activePod": "orders-1"}});
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&current).unwrap()))
                    .unwrap(),
            );
            // No status write follows: the mock sees the client go away instead.
            assert!(
                handle.next_request().await.is_none(),
                "no status write after the lease lapsed"
            );
        });
        reporter.report(&Standing::Active, None, &[]).await.unwrap();
        drop(reporter);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn active_pod_labels_itself_and_applies_its_member_entry() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = mocked_reporter(service, "orders-1");
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PATCH);
            assert_eq!(request.uri().to_string(), "/api/v1/namespaces/shop/pods/orders-1?");
            assert_eq!(request.headers()["content-type"], "application/merge-patch+json");
            let body: serde_json::Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body, json!({"metadata": {"labels": {"canal.rs/role": "active"}}}));
            send.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());

            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::GET);
            assert_eq!(
                request.uri().to_string(),
                "/apis/canal.rs/v1alpha1/namespaces/shop/canalinstances/orders/status"
            );
            let current = json!({"apiVersion": "canal.rs/v1alpha1", "kind": "CanalInstance",
                "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "4711"},
                "status": {"activePod": "orders-0", "failovers": 2}});
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&current).unwrap()))
                    .unwrap(),
            );

            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PATCH);
            assert_eq!(
                request.uri().to_string(),
                "/apis/canal.rs/v1alpha1/namespaces/shop/canalinstances/orders/status?&force=true&fieldManager=canal-instance-orders-1"
            );
            let body: serde_json::Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body["status"]["activePod"], "orders-1");
            assert_eq!(
                body["metadata"]["resourceVersion"], "4711",
                "the write is conditional on the status it was computed from"
            );
            assert_eq!(body["status"]["position"], "mysql-bin.000003:4321");
            assert!(
                body["status"]["lag"].as_str().unwrap().starts_with('2'),
                "{}",
                body["status"]["lag"]
            );
            assert_eq!(body["status"]["members"][0]["name"], "orders-1");
            assert_eq!(body["status"]["members"][0]["role"], "active");
            assert!(body["status"]["members"][0]["lastSeen"].is_string());
            assert_eq!(body["status"]["failovers"], 3, "orders-1 took over from orders-0");
            assert!(body["status"]["lastFailoverTime"].is_string());
            assert_eq!(
                body["status"]["consumers"],
                json!([{"clientId": 1001, "address": "10.0.0.9:53122", "since": "2026-11-23T18:00:00Z"}])
            );
            let reply = json!({"apiVersion": "canal.rs/v1alpha1", "kind": "CanalInstance",
                "metadata": {"name": "orders", "namespace": "shop"}});
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        });
        let at = ReaderPosition {
            position: "mysql-bin.000003:4321".into(),
            event_time_ms: jiff::Timestamp::now().as_millisecond() - 2_000,
        };
        let consumers = [Consumer {
            client_id: 1001,
            address: "10.0.0.9:53122".into(),
            since: "2026-11-23T18:00:00Z".parse().unwrap(),
        }];
        reporter.report(&Standing::Active, Some(&at), &consumers).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn standby_reports_no_active_pod_or_position() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = mocked_reporter(service, "orders-0");
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());
            let (request, send) = handle.next_request().await.unwrap();
            let body: serde_json::Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body["status"].get("activePod"), None);
            assert_eq!(body["status"].get("position"), None);
            assert_eq!(body["status"]["members"][0]["role"], "standby");
            assert_eq!(
                body["status"].get("consumers"),
                None,
                "only the active pod has consumers"
            );
            send.send_response(Response::builder().body(Body::from(b"{\"apiVersion\":\"canal.rs/v1alpha1\",\"kind\":\"CanalInstance\",\"metadata\":{\"name\":\"orders\"}}".to_vec())).unwrap());
        });
        reporter
            .report(
                &Standing::Standby(Some("10.0.0.2:11111".into())),
                Some(&ReaderPosition {
                    position: "x:4".into(),
                    event_time_ms: 0,
                }),
                &[],
            )
            .await
            .unwrap();
        server.await.unwrap();
    }
}
