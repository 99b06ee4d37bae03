//! The reconciler. Each pass over a CanalInstance is a pipeline of small steps:
//! [`dereference`](crate::dereference) (fetch the Secrets the spec names), [`validate`](crate::validate::validate)
//! (pure), [`build`](crate::children::build) (pure, one [`Children`](crate::children::Children) value),
//! [`apply`](crate::children::Children::apply) (server-side apply, and delete children that no longer belong), and
//! [`status`](crate::status) (written only when it changed). A finalizer applies the ZooKeeper deletion policy when
//! the resource is deleted.
//!
//! The pods report into the status every few seconds. The main watch passes on only the changes a reconcile acts
//! on ([`relevant`]), and the operator writes the status only when it differs, so an idle instance is not
//! reconciled again and again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use canal_api::{CanalInstance, DeletionPolicy};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::children::{self, WATCH_SELECTOR};
use crate::dereference::{dereference, secret_names};
use crate::metrics::Metrics;
use crate::status::{self, OperatorStatus};
use crate::validate::{Invalid, validate};
use crate::{Error, zookeeper};

pub use crate::children::MANAGER;

/// Held on every CanalInstance so its ZooKeeper data is handled (per its deletion policy) before it goes away.
pub const FINALIZER: &str = "canal.rs/zookeeper-cleanup";

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per CanalInstance (`namespace/name`), for exponential back-off.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            recorder,
            metrics,
            failures: Default::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(ci: &CanalInstance) -> String {
    format!("{}/{}", ci.namespace().unwrap_or_default(), ci.name_any())
}

/// Back-off after `failures` consecutive failures: 5 s doubling up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(300))
}

/// The parts of a CanalInstance a reconcile acts on, hashed: the spec (through its generation), deletion and
/// finalizers (the finalizer helper needs both), and the two status fields the pods write that the operator turns
/// into Conditions and Events. Pod reports that change only positions, lag or heartbeats hash the same.
pub fn relevant(ci: &CanalInstance) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    ci.metadata.generation.hash(&mut hasher);
    ci.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    ci.metadata.finalizers.hash(&mut hasher);
    if let Some(status) = &ci.status {
        status.active_pod.hash(&mut hasher);
        status.failovers.hash(&mut hasher);
    }
    Some(hasher.finish())
}

async fn publish(ctx: &Context, ci: &CanalInstance, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ci.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish an event");
    }
}

/// Pods count failovers in the status; the operator turns each new one into an Event (and [`status`] then records
/// it as announced).
async fn announce_failover(ctx: &Context, ci: &CanalInstance) {
    if let Some(status) = &ci.status
        && status.failovers > status.announced_failovers
    {
        let active = status.active_pod.clone().unwrap_or_else(|| "another pod".into());
        let note = format!(
            "{active} took over as the active instance (failover {})",
            status.failovers
        );
        publish(ctx, ci, EventType::Normal, "Failover", note).await;
    }
}

/// Applies the operator's part of the status, unless the status already says exactly that.
async fn write_status(ctx: &Context, ci: &CanalInstance, desired: &OperatorStatus) -> Result<(), Error> {
    if status::unchanged(ci.status.as_ref(), desired) {
        return Ok(());
    }
    let api: Api<CanalInstance> = Api::namespaced(ctx.client.clone(), &ci.namespace().unwrap_or_default());
    let params = PatchParams::apply(MANAGER).force();
    api.patch_status(&ci.name_any(), &params, &Patch::Apply(status::apply_body(desired)))
        .await?;
    Ok(())
}

/// Brings the children of `ci` to the desired state: dereference, validate, build, apply, status.
async fn apply(ci: &CanalInstance, ctx: &Context) -> Result<Action, Error> {
    announce_failover(ctx, ci).await;
    let referenced = dereference(&ctx.client, ci).await?;
    let validated = match validate(ci, &referenced) {
        Ok(validated) => validated,
        Err(invalid) => {
            publish(ctx, ci, EventType::Warning, invalid.reason(), invalid.to_string()).await;
            write_status(ctx, ci, &status::invalid(ci, &invalid, &status::now())).await?;
            return Ok(match invalid {
                // The Secret watch brings it back when the Secret appears; the requeue covers a missed event.
                Invalid::SecretMissing { .. } => Action::requeue(Duration::from_secs(30)),
                // Nothing to retry until the spec changes.
                Invalid::Config(_) => Action::await_change(),
            });
        }
    };
    let children = children::build(&validated)?;
    let applied = children.apply(&ctx.client, ci).await?;
    let desired = status::deployed(ci, applied.stateful_set.as_ref(), &status::now());
    write_status(ctx, ci, &desired).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Under the Delete policy the pods stop before the ZooKeeper data goes: a running pod would register itself and
/// write cursors again. Scales the StatefulSet to zero and reports [`Error::WaitingForPods`] until its pods are gone
/// (its status changes trigger the next attempt).
async fn stop_pods(ci: &CanalInstance, ctx: &Context) -> Result<(), Error> {
    let namespace = ci.namespace().unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = ci.name_any();
    let Some(sts) = api.get_opt(&name).await? else {
        return Ok(());
    };
    let desired = sts.spec.replicas;
    if desired != Some(0) {
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await?;
    }
    let running = sts.status.as_ref().map_or(0, |s| s.replicas);
    if desired == Some(0) && running == 0 {
        Ok(())
    } else {
        Err(Error::WaitingForPods(format!(
            "{running} pod(s) of StatefulSet {name} still run; ZooKeeper data is deleted once they stopped"
        )))
    }
}

/// Applies the ZooKeeper deletion policy before the finalizer is removed.
async fn cleanup(ci: &CanalInstance, ctx: &Context) -> Result<Action, Error> {
    if ci.spec.zookeeper_deletion_policy == DeletionPolicy::Delete {
        stop_pods(ci, ctx).await?;
        let destination = ci.spec.destination.clone().unwrap_or_else(|| ci.name_any());
        let client = zookeeper::connect(&ci.spec.zookeeper).await?;
        let path = canal_api::zk::Paths::new(&destination);
        zookeeper::delete_recursive(&client, path.destination()).await?;
        publish(
            ctx,
            ci,
            EventType::Normal,
            "ZooKeeperDataDeleted",
            format!("deleted {}", path.destination()),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Reconciles one CanalInstance.
pub async fn reconcile(ci: Arc<CanalInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = ci
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a CanalInstance must live in a namespace".into()))?;
    let api: Api<CanalInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = key(&ci);
    let action = finalizer(&api, FINALIZER, ci, |event| async {
        match event {
            Finalizer::Apply(ci) => apply(&ci, &ctx).await,
            Finalizer::Cleanup(ci) => cleanup(&ci, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.failures().remove(&key);
    Ok(action)
}

/// Counts the failure and retries later.
pub fn error_policy(ci: Arc<CanalInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.metric_label() == "waiting_for_pods" {
        tracing::info!(name = %ci.name_any(), reason = %error, "deletion in progress");
        return Action::requeue(Duration::from_secs(2));
    }
    ctx.metrics.reconcile_failed(error);
    let failures = {
        let mut failures = ctx.failures();
        let count = failures.entry(key(&ci)).or_insert(0);
        *count += 1;
        *count
    };
    let delay = backoff(failures);
    tracing::warn!(name = %ci.name_any(), error = %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let instances: Api<CanalInstance> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let main = reflector::reflector(
        writer,
        watcher::watcher(instances, watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(relevant, PredicateConfig::default());
    let controller = Controller::for_stream(main, store.clone());
    let children = watcher::Config::default().labels(WATCH_SELECTOR);
    children::owns(controller, &client, &children)
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default(),
            move |secret: Secret| {
                // A Secret change reaches every CanalInstance of its namespace that references it.
                let name = secret.name_any();
                let namespace = secret.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|ci| ci.namespace() == namespace && secret_names(ci).any(|n| n == name))
                    .map(|ci| ObjectRef::from_obj(&*ci))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    //! Request-level tests: a mock API server answers the reconciler and pins each verb, URI and body.

    use super::*;
    use crate::resources::tests::{ORDERS, canal_instance};
    use assert_json_diff::assert_json_include;
    use http::{Method, Request, Response};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::client::Body;
    use kube::runtime::events::Reporter;
    use prometheus_client::registry::Registry;
    use serde_json::Value;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn context() -> (Arc<Context>, Handle, Registry) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: None,
            },
        );
        (Arc::new(Context::new(client, recorder, metrics)), handle, registry)
    }

    fn finalized(yaml: &str) -> CanalInstance {
        let mut ci = canal_instance(yaml);
        ci.metadata.finalizers = Some(vec![FINALIZER.into()]);
        ci.metadata.generation = Some(3);
        ci
    }

    async fn body_json(request: Request<Body>) -> Value {
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }

    fn respond(send: tower_test::mock::SendResponse<Response<Body>>, body: &Value) {
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        );
    }

    /// Expects the next request: method and exact URI; answers with `reply` (or the request body itself).
    async fn expect(handle: &mut Handle, method: Method, uri: &str, reply: Option<Value>) -> Value {
        let (request, send) = handle.next_request().await.expect("another request");
        assert_eq!((request.method(), request.uri().to_string().as_str()), (&method, uri));
        let body = if method == Method::GET {
            Value::Null
        } else {
            body_json(request).await
        };
        respond(send, reply.as_ref().unwrap_or(&body));
        body
    }

    const SSA: &str = "?&force=true&fieldManager=canal-operator";
    const STATUS: &str = "/apis/canal.rs/v1alpha1/namespaces/shop/canalinstances/orders/status";

    fn secret(name: &str) -> Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7"}})
    }

    /// Answers the children's requests in the order [`children::Children::list`] gives: an SSA patch for each
    /// present child (echoed back), a GET for each absent one (answered with `absent_found` when given, which is
    /// then expected to be deleted). Returns the StatefulSet patch body.
    async fn serve_children(handle: &mut Handle, ci: &CanalInstance, absent_found: Option<Value>) -> Value {
        let v = crate::validate::tests::validated_instance(ci);
        let children = children::build(&v).unwrap();
        let mut sts = Value::Null;
        for ((kind, _, present), path) in children.list().into_iter().zip(children.paths("shop")) {
            if present {
                let body = expect(handle, Method::PATCH, &format!("{path}{SSA}"), None).await;
                if kind == "StatefulSet" {
                    sts = body;
                }
                continue;
            }
            let (request, send) = handle.next_request().await.expect("a GET of the absent child");
            assert_eq!(
                (request.method(), request.uri().to_string()),
                (&Method::GET, path.clone())
            );
            match &absent_found {
                None => send.send_response(
                    Response::builder()
                        .status(404)
                        .body(Body::from(
                            serde_json::to_vec(&serde_json::json!({"kind": "Status", "apiVersion": "v1",
                                "status": "Failure", "reason": "NotFound", "code": 404}))
                            .unwrap(),
                        ))
                        .unwrap(),
                ),
                Some(found) => {
                    respond(send, found);
                    let (request, send) = handle.next_request().await.expect("a DELETE of the absent child");
                    assert_eq!(
                        (request.method(), request.uri().to_string()),
                        (&Method::DELETE, format!("{path}?"))
                    );
                    let body = body_json(request).await;
                    assert_eq!(body["propagationPolicy"], "Background", "{body}");
                    respond(send, found);
                }
            }
        }
        sts
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[tokio::test]
    async fn adds_the_finalizer_first() {
        let (ctx, mut handle, _) = context();
        let ci = canal_instance(ORDERS);
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PATCH);
            assert_eq!(
                request.uri().to_string(),
                "/apis/canal.rs/v1alpha1/namespaces/shop/canalinstances/orders?"
            );
            let patch = body_json(request).await;
            assert_eq!(patch[1]["op"], "add");
            assert_eq!(patch[1]["value"], serde_json::json!([FINALIZER]));
            let mut updated = finalized(ORDERS);
            updated.metadata.resource_version = Some("2".into());
            respond(send, &serde_json::to_value(updated).unwrap());
        });
        let action = reconcile(Arc::new(ci), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn applies_every_child_then_the_status() {
        let (ctx, mut handle, _) = context();
        let ci = finalized(ORDERS);
        let server = tokio::spawn(async move {
            let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "mysql-canal", "namespace": "shop", "resourceVersion": "7"}});
            expect(
                &mut handle,
                Method::GET,
                "/api/v1/namespaces/shop/secrets/mysql-canal",
                Some(secret),
            )
            .await;
            let cm = expect(
                &mut handle,
                Method::PATCH,
                &format!("/api/v1/namespaces/shop/configmaps/orders{SSA}"),
                None,
            )
            .await;
            assert_json_include!(actual: cm, expected: serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "orders", "ownerReferences": [{"kind": "CanalInstance", "name": "orders", "controller": true}]}}));
            let base = "/api/v1/namespaces/shop";
            let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop";
            expect(
                &mut handle,
                Method::PATCH,
                &format!("{base}/serviceaccounts/orders{SSA}"),
                None,
            )
            .await;
            let role = expect(&mut handle, Method::PATCH, &format!("{rbac}/roles/orders{SSA}"), None).await;
            assert_eq!(role["rules"][0]["resourceNames"], serde_json::json!(["orders"]));
            expect(
                &mut handle,
                Method::PATCH,
                &format!("{rbac}/rolebindings/orders{SSA}"),
                None,
            )
            .await;
            expect(
                &mut handle,
                Method::PATCH,
                &format!("{base}/services/orders-headless{SSA}"),
                None,
            )
            .await;
            let svc = expect(
                &mut handle,
                Method::PATCH,
                &format!("{base}/services/orders{SSA}"),
                None,
            )
            .await;
            assert_eq!(svc["spec"]["selector"]["canal.rs/role"], "active");
            expect(
                &mut handle,
                Method::PATCH,
                &format!("/apis/policy/v1/namespaces/shop/poddisruptionbudgets/orders{SSA}"),
                None,
            )
            .await;
            let sts = expect(
                &mut handle,
                Method::PATCH,
                &format!("/apis/apps/v1/namespaces/shop/statefulsets/orders{SSA}"),
                None,
            )
            .await;
            assert_eq!(sts["spec"]["replicas"], 3);
            assert!(sts["spec"]["template"]["metadata"]["annotations"]["canal.rs/config-hash"].is_string());
            let status = expect(
                &mut handle,
                Method::PATCH,
                &format!("/apis/canal.rs/v1alpha1/namespaces/shop/canalinstances/orders/status{SSA}"),
                Some(serde_json::to_value(finalized(ORDERS)).unwrap()),
            )
            .await;
            assert_json_include!(actual: status, expected: serde_json::json!({"apiVersion": "canal.rs/v1alpha1",
                "kind": "CanalInstance", "status": {"observedGeneration": 3, "readyReplicas": "0/3",
                "conditions": [{"type": "Ready", "status": "False", "reason": "WaitingForPods"}]}}));
        });
        let action = reconcile(Arc::new(ci), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(300)));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn invalid_spec_is_reported_by_event_and_condition() {
        let (ctx, mut handle, _) = context();
        let ci = finalized(&ORDERS.replace("  zookeeper:", "  filter:\n    include: 'a('\n  zookeeper:"));
        let server = tokio::spawn(async move {
            // Dereferencing comes first: validation is a pure function of what it fetched.
            expect(
                &mut handle,
                Method::GET,
                "/api/v1/namespaces/shop/secrets/mysql-canal",
                Some(secret("mysql-canal")),
            )
            .await;
            let event = expect(
                &mut handle,
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?",
                None,
            )
            .await;
            assert_eq!(event["reason"], "InvalidSpec");
            assert!(event["note"].as_str().unwrap().contains("filter.include"), "{event}");
            let status = expect(
                &mut handle,
                Method::PATCH,
                &format!("/apis/canal.rs/v1alpha1/namespaces/shop/canalinstances/orders/status{SSA}"),
                Some(serde_json::to_value(finalized(ORDERS)).unwrap()),
            )
            .await;
            assert_eq!(status["status"]["conditions"][0]["reason"], "InvalidSpec");
        });
        assert_eq!(reconcile(Arc::new(ci), ctx).await.unwrap(), Action::await_change());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn deletion_with_retain_removes_only_the_finalizer() {
        let (ctx, mut handle, _) = context();
        let mut ci = finalized(ORDERS);
        ci.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PATCH);
            let patch = body_json(request).await;
            assert_eq!(patch[1]["op"], "remove", "{patch}");
            respond(send, &serde_json::to_value(canal_instance(ORDERS)).unwrap());
        });
        assert_eq!(reconcile(Arc::new(ci), ctx).await.unwrap(), Action::await_change());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn api_errors_are_counted_by_kind() {
        let (ctx, mut handle, registry) = context();
        let ci = Arc::new(finalized(ORDERS));
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "etcd is down", "reason": "InternalError", "code": 500});
            send.send_response(
                Response::builder()
                    .status(500)
                    .body(Body::from(serde_json::to_vec(&status).unwrap()))
                    .unwrap(),
            );
        });
        let error = reconcile(ci.clone(), ctx.clone()).await.unwrap_err();
        server.await.unwrap();
        assert_eq!(
            error_policy(ci.clone(), &error, ctx.clone()),
            Action::requeue(Duration::from_secs(5))
        );
        assert_eq!(
            error_policy(ci, &error, ctx),
            Action::requeue(Duration::from_secs(10)),
            "backs off"
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"canal_operator_reconcile_failures_total{error="kube"} 2"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_new_failover_becomes_an_event_once() {
        let (ctx, mut handle, _) = context();
        let mut ci = canal_instance(ORDERS);
        ci.metadata.finalizers = Some(vec![FINALIZER.into()]);
        ci.status = Some(canal_api::CanalInstanceStatus {
            active_pod: Some("orders-1".into()),
            failovers: 1,
            ..Default::default()
        });
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::POST);
            let event: serde_json::Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(event["reason"], "Failover");
            assert!(
                event["note"].as_str().unwrap().contains("orders-1 took over"),
                "{event}"
            );
            send.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());
            // Answer the children's requests with their own bodies until the status apply.
            loop {
                let (request, send) = handle.next_request().await.unwrap();
                let uri = request.uri().to_string();
                let is_get = request.method() == Method::GET;
                let bytes = request.into_body().collect_bytes().await.unwrap();
                if uri.contains("/status?") {
                    let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(status["status"]["announcedFailovers"], 1, "announced once");
                    let reply = serde_json::to_vec(&canal_instance(ORDERS)).unwrap();
                    send.send_response(Response::builder().body(Body::from(reply)).unwrap());
                    break;
                }
                let reply = if is_get {
                    br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"mysql-canal","resourceVersion":"1"}}"#
                        .to_vec()
                } else {
                    bytes.to_vec()
                };
                send.send_response(Response::builder().body(Body::from(reply)).unwrap());
            }
        });
        reconcile(Arc::new(ci), ctx).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_secret_is_reported_and_nothing_is_applied() {
        let (ctx, mut handle, _) = context();
        let ci = finalized(ORDERS);
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().to_string(), "/api/v1/namespaces/shop/secrets/mysql-canal");
            let not_found = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404});
            send.send_response(
                Response::builder()
                    .status(404)
                    .body(Body::from(serde_json::to_vec(&not_found).unwrap()))
                    .unwrap(),
            );
            let event = expect(
                &mut handle,
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?",
                None,
            )
            .await;
            assert_eq!(event["reason"], "SecretMissing");
            let status = expect(
                &mut handle,
                Method::PATCH,
                &format!("{STATUS}{SSA}"),
                Some(serde_json::to_value(finalized(ORDERS)).unwrap()),
            )
            .await;
            let reasons: Vec<(&str, &str)> = status["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["type"].as_str().unwrap(), c["reason"].as_str().unwrap()))
                .collect();
            assert_eq!(
                reasons,
                [
                    ("Ready", "SecretMissing"),
                    ("Progressing", "SecretMissing"),
                    ("Degraded", "SecretMissing")
                ]
            );
        });
        let action = reconcile(Arc::new(ci), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(30)));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_disruption_budget_is_deleted_when_replicas_drop_to_one() {
        let (ctx, mut handle, _) = context();
        let ci = finalized(&ORDERS.replace("replicas: 3", "replicas: 1"));
        let owned = serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "orders", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "canal.rs/v1alpha1", "kind": "CanalInstance", "name": "orders",
                    "uid": "uid-1", "controller": true}]}});
        let expected = ci.clone();
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                Method::GET,
                "/api/v1/namespaces/shop/secrets/mysql-canal",
                Some(secret("mysql-canal")),
            )
            .await;
            let sts = serve_children(&mut handle, &expected, Some(owned)).await;
            assert_eq!(sts["spec"]["replicas"], 1);
            expect(
                &mut handle,
                Method::PATCH,
                &format!("{STATUS}{SSA}"),
                Some(serde_json::to_value(&expected).unwrap()),
            )
            .await;
        });
        reconcile(Arc::new(ci), ctx).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_budget_someone_else_made_is_left_alone() {
        let (ctx, mut handle, _) = context();
        let ci = finalized(&ORDERS.replace("replicas: 3", "replicas: 1"));
        let expected = ci.clone();
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                Method::GET,
                "/api/v1/namespaces/shop/secrets/mysql-canal",
                Some(secret("mysql-canal")),
            )
            .await;
            let v = crate::validate::tests::validated_instance(&expected);
            let children = children::build(&v).unwrap();
            for ((_, _, present), path) in children.list().into_iter().zip(children.paths("shop")) {
                if present {
                    expect(&mut handle, Method::PATCH, &format!("{path}{SSA}"), None).await;
                } else {
                    let foreign = serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "metadata": {"name": "orders", "namespace": "shop"}});
                    expect(&mut handle, Method::GET, &path, Some(foreign)).await;
                }
            }
            expect(
                &mut handle,
                Method::PATCH,
                &format!("{STATUS}{SSA}"),
                Some(serde_json::to_value(&expected).unwrap()),
            )
            .await;
        });
        reconcile(Arc::new(ci), ctx).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_written_again() {
        let (ctx, mut handle, _) = context();
        let mut ci = finalized(ORDERS);
        // The status as the previous pass left it: the same StatefulSet (echoed back, so no pods ready yet).
        let v = crate::validate::tests::validated_instance(&ci);
        let sts = children::build(&v).unwrap().stateful_set.object().cloned();
        let before = status::deployed(&ci, sts.as_ref(), &status::now());
        ci.status = Some(canal_api::CanalInstanceStatus {
            observed_generation: before.observed_generation,
            conditions: before.conditions.clone(),
            announced_failovers: before.announced_failovers,
            ready_replicas: before.ready_replicas.clone(),
            ..Default::default()
        });
        let expected = ci.clone();
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                Method::GET,
                "/api/v1/namespaces/shop/secrets/mysql-canal",
                Some(secret("mysql-canal")),
            )
            .await;
            serve_children(&mut handle, &expected, None).await;
            // No status patch follows: the handle is dropped here, so any further request would fail the reconcile.
        });
        let action = reconcile(Arc::new(ci), ctx)
            .await
            .expect("no request after the children");
        assert_eq!(action, Action::requeue(Duration::from_secs(300)));
        server.await.unwrap();
    }

    #[test]
    fn pod_reports_do_not_pass_the_main_watch() {
        let mut ci = finalized(ORDERS);
        ci.status = Some(canal_api::CanalInstanceStatus {
            active_pod: Some("orders-0".into()),
            position: Some("binlog.000001:4".into()),
            ..Default::default()
        });
        let before = relevant(&ci);
        let status = ci.status.as_mut().unwrap();
        status.position = Some("binlog.000001:900".into());
        status.lag = Some("0.1s".into());
        status.members.push(canal_api::Member {
            name: "orders-0".into(),
            role: "active".into(),
            ..Default::default()
        });
        status.announced_failovers = 3;
        assert_eq!(
            relevant(&ci),
            before,
            "positions, heartbeats and the operator's own writes are filtered"
        );
        for change in [
            (|ci: &mut CanalInstance| ci.metadata.generation = Some(4)) as fn(&mut CanalInstance),
            |ci| ci.status.as_mut().unwrap().active_pod = Some("orders-1".into()),
            |ci| ci.status.as_mut().unwrap().failovers = 1,
            |ci| ci.metadata.finalizers = None,
            |ci| ci.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now())),
        ] {
            let mut changed = ci.clone();
            change(&mut changed);
            assert_ne!(relevant(&changed), before);
        }
    }
}
