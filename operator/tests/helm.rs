//! The chart with the real helm (v4, built from Go modules by `e2e/tools/build.sh` on first use): `helm lint
//! --strict` and `helm template` with the defaults and with every `ci/` values file, and the monitoring objects
//! (`ci/monitoring-values.yaml` turns them all on) checked against what they must select and include.
//! `chart_render.rs` checks the operator's own objects in depth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use canal_operator::values::Values;
use serde::Deserialize;

const RELEASE: &str = "canal-operator";
const NAMESPACE: &str = "canal-system";
/// The oldest Kubernetes the operator supports (k8s-openapi `earliest`).
const KUBE_VERSION: &str = "1.33.0";
const SCHEMA_ERROR: &str = "values don't meet the specifications of the schema";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/canal-operator")
}

/// Every file in ci/, which chart-testing (`ct lint`) would install with.
fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "ci/ has the test and monitoring values: {files:?}");
    files
}

fn helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(canal_e2e::helm())
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm/data"),
        )
        .output()
        .expect("run helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn lint(values: Option<&Path>) {
    let chart = chart_dir();
    let mut args = vec![
        "lint",
        "--strict",
        "--kube-version",
        KUBE_VERSION,
        "--namespace",
        NAMESPACE,
    ];
    let values = values.map(|v| v.display().to_string());
    if let Some(v) = &values {
        args.extend(["-f", v]);
    }
    let chart = chart.display().to_string();
    args.push(&chart);
    let (ok, stdout, stderr) = helm(&args);
    assert!(ok, "helm {}:\n{stdout}{stderr}", args.join(" "));
    assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
}

/// `helm template` with `values`; the rendered documents, or helm's output when it fails.
fn template(values: &[&Path], set: &[&str]) -> Result<Vec<serde_yaml::Value>, String> {
    let chart = chart_dir().display().to_string();
    let mut args: Vec<String> = [
        "template",
        RELEASE,
        &chart,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ]
    .map(String::from)
    .to_vec();
    for v in values {
        args.extend(["-f".into(), v.display().to_string()]);
    }
    for s in set {
        args.extend(["--set".into(), s.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = helm(&args);
    if !ok {
        return Err(format!("{stdout}{stderr}"));
    }
    Ok(serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect())
}

fn kinds(docs: &[serde_yaml::Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

/// Helm's merge: maps merge key by key, anything else replaces.
fn merge(base: &mut serde_yaml::Value, over: &serde_yaml::Value) {
    match (base.as_mapping_mut(), over.as_mapping()) {
        (Some(b), Some(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_mapping() && v.is_mapping() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *base = over.clone(),
    }
}

fn values_with(file: &Path) -> Values {
    let read = |p: &Path| serde_yaml::from_str::<serde_yaml::Value>(&std::fs::read_to_string(p).unwrap()).unwrap();
    let mut base = read(&chart_dir().join("values.yaml"));
    merge(&mut base, &read(file));
    serde_yaml::from_value(base).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

const OPERATOR_OBJECTS: [&str; 7] = [
    "ClusterRole/canal-operator",
    "ClusterRoleBinding/canal-operator",
    "Deployment/canal-operator",
    "Service/canal-operator-metrics",
    "ServiceAccount/canal-operator",
    "ValidatingAdmissionPolicy/canal-operator-instance-own-pod",
    "ValidatingAdmissionPolicyBinding/canal-operator-instance-own-pod",
];

#[test]
fn lint_strict_with_defaults_and_every_ci_values_file() {
    lint(None);
    for file in ci_values() {
        lint(Some(&file));
    }
}

#[test]
fn template_with_defaults_renders_no_monitoring_objects() {
    let docs = template(&[], &[]).unwrap_or_else(|e| panic!("helm template: {e}"));
    assert_eq!(kinds(&docs), OPERATOR_OBJECTS);
    let values: Values =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap()).unwrap();
    let m = &values.monitoring;
    assert!(!m.pod_monitor.enabled && !m.prometheus_rule.enabled && !m.grafana_dashboard.enabled);
    // The operator's default resources: requests for scheduling, a memory limit, no CPU limit.
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let resources = &deployment["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "50m");
    assert_eq!(resources["requests"]["memory"], "64Mi");
    assert_eq!(resources["limits"]["memory"], "256Mi");
    assert!(resources["limits"]["cpu"].is_null());
}

#[test]
fn template_with_every_ci_values_file() {
    for file in ci_values() {
        let docs = template(&[&file], &[]).unwrap_or_else(|e| panic!("helm template -f {}: {e}", file.display()));
        let values = values_with(&file);
        let kinds = kinds(&docs);
        for object in OPERATOR_OBJECTS {
            assert!(
                kinds.iter().any(|k| k == object),
                "{}: no {object} in {kinds:?}",
                file.display()
            );
        }
        let m = &values.monitoring;
        let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
        assert_eq!(
            count("PodMonitor"),
            if m.pod_monitor.enabled { 2 } else { 0 },
            "{}",
            file.display()
        );
        assert_eq!(
            count("PrometheusRule"),
            usize::from(m.prometheus_rule.enabled),
            "{}",
            file.display()
        );
        assert_eq!(
            count("ConfigMap"),
            usize::from(m.grafana_dashboard.enabled),
            "{}",
            file.display()
        );
        for doc in &docs {
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE,
                "{doc:?}"
            );
        }
    }
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {:?}", kinds(docs)))
}

fn string_map(value: &serde_yaml::Value) -> BTreeMap<String, String> {
    serde_yaml::from_value(value.clone()).unwrap_or_default()
}

fn monitoring_docs() -> Vec<serde_yaml::Value> {
    let file = chart_dir().join("ci/monitoring-values.yaml");
    template(&[&file], &[]).unwrap_or_else(|e| panic!("helm template: {e}"))
}

/// The PodMonitors select the operator's pods and the pods the operator builds for a CanalInstance, on a
/// container port that exists, in the namespaces asked for.
#[test]
fn pod_monitors_select_the_operator_and_instance_pods() {
    let docs = monitoring_docs();
    let values = values_with(&chart_dir().join("ci/monitoring-values.yaml"));
    let pm = &values.monitoring.pod_monitor;

    let deployment = find(&docs, "Deployment", RELEASE);
    let operator_pod = &deployment["spec"]["template"];
    let operator = find(&docs, "PodMonitor", RELEASE);
    check_pod_monitor(operator, pm, &string_map(&operator_pod["metadata"]["labels"]), &{
        let ports = &operator_pod["spec"]["containers"][0]["ports"];
        ports
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(operator["spec"]["namespaceSelector"]["matchNames"][0], NAMESPACE);

    // What the operator deploys for the example CanalInstance.
    let example = std::fs::read_to_string(chart_dir().join("../../examples/canalinstance.yaml")).unwrap();
    let ci = serde_yaml::Deserializer::from_str(&example)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "CanalInstance")
        .unwrap();
    let mut ci: canal_api::CanalInstance = serde_yaml::from_value(ci).unwrap();
    ci.metadata.namespace = Some("shop".into());
    let sts = canal_operator::resources::stateful_set(&ci, "hash");
    let pod = sts.spec.template;
    let labels = pod.metadata.unwrap().labels.unwrap();
    let ports: Vec<String> = pod.spec.unwrap().containers[0]
        .ports
        .clone()
        .unwrap()
        .iter()
        .filter(|p| p.container_port == i32::from(ci.spec.server.metrics_port))
        .filter_map(|p| p.name.clone())
        .collect();
    assert_eq!(ports, ["metrics"], "canal-instance's metrics port is named");
    let instances = find(&docs, "PodMonitor", &format!("{RELEASE}-instances"));
    check_pod_monitor(instances, pm, &labels, &ports);
    let namespaces: Vec<String> =
        serde_yaml::from_value(instances["spec"]["namespaceSelector"]["matchNames"].clone()).unwrap();
    assert_eq!(namespaces, pm.instance_namespaces);

    // Without instanceNamespaces, every namespace.
    let docs = template(
        &[&chart_dir().join("ci/monitoring-values.yaml")],
        &["monitoring.podMonitor.instanceNamespaces=null"],
    )
    .unwrap();
    let instances = find(&docs, "PodMonitor", &format!("{RELEASE}-instances"));
    assert_eq!(instances["spec"]["namespaceSelector"]["any"], true, "{instances:?}");
}

fn check_pod_monitor(
    doc: &serde_yaml::Value,
    values: &canal_operator::values::PodMonitor,
    pod_labels: &BTreeMap<String, String>,
    ports: &[String],
) {
    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
    let labels = string_map(&doc["metadata"]["labels"]);
    for (k, v) in &values.labels {
        assert_eq!(labels.get(k), Some(v), "PodMonitor label {k}");
    }
    let spec = &doc["spec"];
    let selector = string_map(&spec["selector"]["matchLabels"]);
    assert!(!selector.is_empty());
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "selector {selector:?} does not match the pod labels {pod_labels:?}"
    );
    let endpoints = spec["podMetricsEndpoints"].as_sequence().unwrap();
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    let port = endpoint["port"].as_str().unwrap();
    assert!(ports.iter().any(|p| p == port), "port {port} not in {ports:?}");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"].as_str(), Some(values.interval.as_str()));
    assert_eq!(endpoint["scrapeTimeout"].as_str(), Some(values.scrape_timeout.as_str()));
}

/// The PrometheusRule holds exactly the rules of files/alerts.rules.yaml, which promtool tests.
#[test]
fn prometheus_rule_is_the_rules_file() {
    let docs = monitoring_docs();
    let rule = find(&docs, "PrometheusRule", RELEASE);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let file: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("files/alerts.rules.yaml")).unwrap()).unwrap();
    assert_eq!(
        rule["spec"], file,
        "the PrometheusRule's spec differs from files/alerts.rules.yaml"
    );
    let spec = rule["spec"].as_mapping().unwrap();
    assert_eq!(spec.len(), 1, "only groups: {spec:?}");
}

/// The dashboard ConfigMap is what Grafana's sidecar loads: the label, the JSON as in dashboards/.
#[test]
fn grafana_dashboard_config_map() {
    let docs = monitoring_docs();
    let cm = find(&docs, "ConfigMap", &format!("{RELEASE}-dashboard"));
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    let labels = string_map(&cm["metadata"]["labels"]);
    assert_eq!(labels.get("grafana_dashboard").map(String::as_str), Some("1"));
    assert_eq!(labels.get("team").map(String::as_str), Some("cdc"));
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "CDC");
    let data = string_map(&cm["data"]);
    assert_eq!(data.len(), 1);
    let json: serde_json::Value = serde_json::from_str(&data["canal-rs.json"]).expect("dashboard JSON");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart_dir().join("dashboards/canal-rs.json")).unwrap()).unwrap();
    assert_eq!(json, file);
    assert_eq!(json["uid"], "canal-rs");
    // A ConfigMap holds at most 1 MiB.
    assert!(data["canal-rs.json"].len() < 512 * 1024);

    // Without a namespace it goes to the release's.
    let docs = template(
        &[&chart_dir().join("ci/monitoring-values.yaml")],
        &["monitoring.grafanaDashboard.namespace="],
    )
    .unwrap();
    let cm = find(&docs, "ConfigMap", &format!("{RELEASE}-dashboard"));
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
}

/// values.schema.json (generated from operator/src/values.rs) rejects bad monitoring values at `helm template`.
#[test]
fn schema_rejects_bad_monitoring_values() {
    for set in [
        "monitoring.podMonitor.interval=30 seconds",
        "monitoring.podMonitor.enabeld=true",
        "monitoring.prometheusRule.enabled=yes",
        "monitoring.podMonitor.instanceNamespaces=shop",
        "monitoring.alertmanager.enabled=true",
    ] {
        let err = template(&[], &[set]).expect_err(set);
        assert!(err.contains(SCHEMA_ERROR), "{set}: not rejected by the schema:\n{err}");
    }
}

/// NOTES.txt renders (helm install --dry-run prints it).
#[test]
fn notes_render() {
    let chart = chart_dir().display().to_string();
    let (ok, stdout, stderr) = helm(&["install", RELEASE, &chart, "--namespace", NAMESPACE, "--dry-run=client"]);
    assert!(ok, "{stdout}{stderr}");
    let notes = stdout.split("NOTES:").nth(1).expect("NOTES");
    assert!(notes.contains("kubectl get canalinstances"), "{notes}");
    assert!(notes.contains(&format!("{RELEASE}-metrics.{NAMESPACE}")), "{notes}");
}
