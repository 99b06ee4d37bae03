//! The Helm chart's values, typed. `values.schema.json` is generated from [`Values`] (Helm enforces it on install),
//! and a test keeps both the schema and the chart's `values.yaml` in line with this struct.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Values of the canal-operator chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Values {
    /// The operator's container image.
    pub image: Image,
    /// Operator replicas; one leads through a Lease, the others wait.
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// Log format of the operator.
    pub log_format: LogFormat,
    /// Port of /metrics, /healthz and /readyz.
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: u16,
    /// Compute resources of the operator container.
    #[serde(default)]
    pub resources: ResourceRequirements,
    /// Node labels the operator pods must match.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the operator pods.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the operator pods.
    #[serde(default)]
    pub affinity: Affinity,
    /// Prometheus Operator and Grafana objects for the operator and every canal-instance pod; all off by default.
    #[serde(default)]
    pub monitoring: Monitoring,
}

/// Monitoring objects. Each needs its CRD or collector in the cluster (Prometheus Operator's PodMonitor and
/// PrometheusRule, Grafana's dashboard sidecar), so each is off until enabled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitoring {
    /// PodMonitors (monitoring.coreos.com/v1) scraping the operator pods and the canal-instance pods.
    pub pod_monitor: PodMonitor,
    /// A PrometheusRule (monitoring.coreos.com/v1) with canal-rs's alerts (the chart's files/alerts.rules.yaml).
    pub prometheus_rule: PrometheusRule,
    /// A ConfigMap labelled `grafana_dashboard: "1"` holding the canal-rs Grafana dashboard.
    pub grafana_dashboard: GrafanaDashboard,
}

/// Prometheus duration, as Prometheus Operator's CRDs accept it (`30s`, `1m30s`).
const DURATION_PATTERN: &str =
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$";

/// PodMonitors for the operator's pods (in the release namespace) and the canal-instance pods (port `metrics`,
/// 11112 unless a CanalInstance sets `server.metricsPort`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMonitor {
    /// Create the PodMonitors.
    pub enabled: bool,
    /// Extra labels on the PodMonitors, for the Prometheus `podMonitorSelector` (such as `release: prometheus`).
    pub labels: BTreeMap<String, String>,
    /// Scrape interval.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Scrape timeout; empty: Prometheus's default.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub scrape_timeout: String,
    /// Namespaces whose canal-instance pods are scraped; empty: every namespace.
    pub instance_namespaces: Vec<String>,
}

impl Default for PodMonitor {
    fn default() -> Self {
        Self {
            enabled: false,
            labels: BTreeMap::new(),
            interval: "30s".into(),
            scrape_timeout: String::new(),
            instance_namespaces: Vec::new(),
        }
    }
}

/// The alerting rules, in the release namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusRule {
    /// Create the PrometheusRule.
    pub enabled: bool,
    /// Extra labels on the PrometheusRule, for the Prometheus `ruleSelector` (such as `release: prometheus`).
    pub labels: BTreeMap<String, String>,
}

/// The Grafana dashboard, for Grafana's sidecar that loads ConfigMaps labelled `grafana_dashboard`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaDashboard {
    /// Create the dashboard ConfigMap.
    pub enabled: bool,
    /// Extra labels on the ConfigMap (it always has `grafana_dashboard: "1"`).
    pub labels: BTreeMap<String, String>,
    /// Annotations on the ConfigMap (such as the sidecar's `grafana_folder`).
    pub annotations: BTreeMap<String, String>,
    /// Namespace of the ConfigMap, where the Grafana sidecar looks; empty: the release namespace.
    pub namespace: String,
}

/// A container image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    pub pull_policy: PullPolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The JSON schema Helm validates values against (draft-07).
pub fn schema_json() -> String {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Values>();
    let mut value = serde_json::to_value(&schema).unwrap_or_default();
    close_objects(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// Rejects unknown keys everywhere, including inside the embedded Kubernetes types (whose generated schemas allow
/// them), so a typo such as `efect:` in a toleration fails at `helm install` rather than silently.
fn close_objects(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), serde_json::Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}
