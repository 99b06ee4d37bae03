//! The reconciler. For each CanalInstance it runs a pipeline: validate the spec (a pure function), build the
//! children ([`crate::resources`]), server-side apply them under one field manager, then apply the operator's part
//! of the status. A finalizer applies the ZooKeeper deletion policy when the resource is deleted.

use std::sync::Arc;
use std::time::Duration;

use canal_api::{CanalInstance, DeletionPolicy};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::metrics::Metrics;
use crate::{Error, resources};

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "canal-operator";
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

/// Checks what the CRD's schema cannot: the instance itself validates the rendered configuration (regexes, time
/// zone, ...), exactly as a standalone `canal-instance` would.
pub fn validate(ci: &CanalInstance) -> Result<(), Error> {
    let config = ci.spec.instance_config(&ci.name_any());
    // Passwords come from Secrets at run time; validation only needs them to be present.
    canal_instance::config::Settings::from_config(config, &|_| Some(String::new()))
        .map(|_| ())
        .map_err(|e| Error::InvalidSpec(e.to_string()))
}

fn patch_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply_child<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    Ok(api.patch(&name, &patch_params(), &Patch::Apply(object)).await?)
}

fn condition(type_: &str, ok: bool, reason: &str, message: String, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(jiff::Timestamp::now()),
    }
}

/// Applies the operator's part of the status. `ready` is `ready/desired` pods, once the StatefulSet exists.
async fn apply_status(
    api: &Api<CanalInstance>,
    ci: &CanalInstance,
    conditions: Vec<Condition>,
    ready: Option<String>,
) -> Result<(), Error> {
    let announced = ci.status.as_ref().map_or(0, |s| s.failovers.max(s.announced_failovers));
    let mut status = json!({
        "observedGeneration": ci.metadata.generation,
        "conditions": conditions,
        "announcedFailovers": announced,
    });
    if let Some(ready) = ready {
        status["readyReplicas"] = json!(ready);
    }
    let status = json!({
        "apiVersion": CanalInstance::api_version(&()),
        "kind": CanalInstance::kind(&()),
        "status": status,
    });
    api.patch_status(&ci.name_any(), &patch_params(), &Patch::Apply(status))
        .await?;
    Ok(())
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

/// Brings the children of `ci` to the desired state.
async fn apply(ci: &CanalInstance, ctx: &Context) -> Result<Action, Error> {
    let namespace = ci.namespace().unwrap_or_default();
    let api: Api<CanalInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = ci.metadata.generation;
    if let Err(e) = validate(ci) {
        publish(ctx, ci, EventType::Warning, "InvalidSpec", e.to_string()).await;
        apply_status(
            &api,
            ci,
            vec![condition("Ready", false, "InvalidSpec", e.to_string(), generation)],
            None,
        )
        .await?;
        // Nothing to retry until the spec changes.
        return Ok(Action::await_change());
    }

    // Pods count failovers in the status; the operator turns each new one into an Event.
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

    let config_map = resources::config_map(ci)?;
    // Pods read passwords at start: fold the Secrets' versions into the hash so a rotated password rolls them.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut versions = Vec::new();
    for secret in std::iter::once(&ci.spec.source_password_secret).chain(ci.spec.server_password_secret.as_ref()) {
        match secrets.get_opt(&secret.name).await? {
            Some(s) => versions.push(s.resource_version().unwrap_or_default()),
            None => {
                let message = format!("Secret {} does not exist in namespace {namespace}", secret.name);
                publish(ctx, ci, EventType::Warning, "SecretMissing", message.clone()).await;
                apply_status(
                    &api,
                    ci,
                    vec![condition("Ready", false, "SecretMissing", message, generation)],
                    None,
                )
                .await?;
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
        }
    }
    let hash = resources::config_hash(&config_map, &versions);

    let client = &ctx.client;
    apply_child(client, &namespace, &config_map).await?;
    apply_child(client, &namespace, &resources::service_account(ci)).await?;
    apply_child(client, &namespace, &resources::role(ci)).await?;
    apply_child(client, &namespace, &resources::role_binding(ci)).await?;
    apply_child(client, &namespace, &resources::headless_service(ci)).await?;
    apply_child(client, &namespace, &resources::client_service(ci)).await?;
    apply_child(client, &namespace, &resources::pod_disruption_budget(ci)).await?;
    let sts = apply_child(client, &namespace, &resources::stateful_set(ci, &hash)).await?;

    let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let ready_condition = if ci.status.as_ref().and_then(|s| s.active_pod.as_ref()).is_some() && ready > 0 {
        condition(
            "Ready",
            true,
            "Serving",
            format!("{ready} of {} pods ready", ci.spec.replicas),
            generation,
        )
    } else {
        condition(
            "Ready",
            false,
            "WaitingForPods",
            format!("{ready} of {} pods ready", ci.spec.replicas),
            generation,
        )
    };
    let ready_pods = format!("{ready}/{}", ci.spec.replicas);
    apply_status(&api, ci, vec![ready_condition], Some(ready_pods)).await?;
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
        let client = canal_instance::ha::zk::connect(&ci.spec.zookeeper)
            .await
            .map_err(|e| Error::ZooKeeper(e.to_string()))?;
        let path = canal_instance::ha::zk::Paths::new(&destination);
        canal_instance::ha::zk::delete_recursive(&client, path.destination())
            .await
            .map_err(|e| Error::ZooKeeper(format!("delete {}: {e}", path.destination())))?;
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
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=canal-operator");
    let controller = Controller::new(instances, watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        .owns(Api::<StatefulSet>::all(client.clone()), config.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), config.clone())
        .owns(Api::<Service>::all(client.clone()), config.clone())
        .owns(Api::<ServiceAccount>::all(client.clone()), config.clone())
        .owns(Api::<Role>::all(client.clone()), config.clone())
        .owns(Api::<RoleBinding>::all(client.clone()), config.clone())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), config)
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
                    .filter(|ci| {
                        ci.namespace() == namespace
                            && (ci.spec.source_password_secret.name == name
                                || ci.spec.server_password_secret.as_ref().is_some_and(|s| s.name == name))
                    })
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
}
