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
