//! The `CanalInstance` custom resource (`canal.rs/v1alpha1`): one canal destination run as a StatefulSet of
//! `canal-instance` pods that share active/standby through ZooKeeper.
//!
//! The spec reuses the instance configuration types ([`SourceConfig`], [`FilterConfig`], ...), so the operator
//! renders exactly what a standalone user writes, and adds what only a pod needs: replicas, image, resources,
//! scheduling, and Secret references for passwords.

// kube's `printcolumn(...)` entries repeat keys such as `type_ = "string"`, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{FilterConfig, InstanceConfig, ServerConfig, SourceConfig, StartPosition, StoreConfig, ZooKeeperConfig};

/// Desired state of a CanalInstance.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "canal.rs",
    version = "v1alpha1",
    kind = "CanalInstance",
    plural = "canalinstances",
    shortname = "canal",
    namespaced,
    status = "CanalInstanceStatus",
    derive = "PartialEq",
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activePod"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.readyReplicas"),
    printcolumn(name = "Position", type_ = "string", json_path = ".status.position"),
    printcolumn(name = "Lag", type_ = "string", json_path = ".status.lag", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[cfg_attr(feature = "cel", kube(cel))]
#[x_kube(validation = Rule::new("self.replicas >= 1 && self.replicas <= 5").message("replicas must be between 1 and 5"))]
#[x_kube(validation = Rule::new("has(self.destination) == has(oldSelf.destination) && (!has(self.destination) || self.destination == oldSelf.destination)").message("destination is immutable: create a new CanalInstance instead"))]
#[serde(rename_all = "camelCase")]
pub struct CanalInstanceSpec {
    /// Name clients subscribe to. Default: the CanalInstance's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Number of canal-instance pods; one is active, the others stand by.
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Container image of canal-instance.
    #[serde(default = "default_image")]
    pub image: String,
    /// The MySQL or MariaDB server (the password comes from `sourcePasswordSecret`).
    #[x_kube(validation = Rule::new("self.address.matches('^[^:/ ]+:[0-9]{1,5}$')").message("source.address must be host:port"))]
    pub source: SourceConfig,
    /// Secret key holding the MySQL password.
    pub source_password_secret: SecretKeyRef,
    /// Where to start when no client has a cursor yet. Absent: the current end of the binlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartPosition>,
    /// Which tables and kinds of change are delivered (canal's filter semantics).
    #[serde(default)]
    pub filter: FilterConfig,
    /// The canal protocol server of each pod.
    #[serde(default)]
    pub server: ServerConfig,
    /// Secret key holding the password clients must present. Absent: no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_password_secret: Option<SecretKeyRef>,
    /// The in-memory event store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Time zone for TIMESTAMP values (IANA name).
    #[serde(default = "crate::default_time_zone")]
    pub time_zone: String,
    /// ZooKeeper for active/standby and cursors (required: pods have no local state).
    pub zookeeper: ZooKeeperConfig,
    /// What happens to the destination's ZooKeeper data (cursors, subscriptions) when the CanalInstance is deleted.
    #[serde(default)]
    pub zookeeper_deletion_policy: DeletionPolicy,
    /// Compute resources of the canal-instance container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the pods. Default: prefer spreading the pods over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// A key in a Secret of the CanalInstance's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_password_key")]
    pub key: String,
}

/// What to do with ZooKeeper data when the CanalInstance is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep cursors and subscriptions, so a new CanalInstance of the same destination resumes where this one was.
    #[default]
    Retain,
    /// Delete `/otter/canal/destinations/<destination>` and everything below it.
    Delete,
}

/// Observed state of a CanalInstance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanalInstanceStatus {
    /// Ready, Progressing and Degraded, as metav1.Condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready pods out of the desired replicas, such as `2/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<String>,
    /// The pod that dumps the binlog and serves clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_pod: Option<String>,
    /// Every pod's own report, keyed by pod name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub members: Vec<Member>,
    /// The active pod's binlog position, `file:offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// How far the active pod is behind the source, as a duration such as `1.5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
    /// How many times another pod became active.
    #[serde(default)]
    pub failovers: i64,
    /// When the last failover happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_time: Option<Time>,
    /// Failovers the operator has published an Event for.
    #[serde(default)]
    pub announced_failovers: i64,
    /// The connection consuming each client id on the active pod. Written whole by the active pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub consumers: Vec<ConnectedConsumer>,
}

/// A client connection consuming one client id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedConsumer {
    /// canal's clientId (a Java short).
    pub client_id: i32,
    /// The consumer's `ip:port`, as the server sees its connection.
    pub address: String,
    /// When this connection became the consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// One pod's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Pod name.
    pub name: String,
    /// `active` or `standby`.
    pub role: String,
    /// The pod's binlog position, when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// When the pod last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
}

impl CanalInstanceSpec {
    /// The instance configuration a pod runs with; passwords come from environment variables set from Secrets.
    pub fn instance_config(&self, name: &str) -> InstanceConfig {
        InstanceConfig {
            destination: self.destination.clone().unwrap_or_else(|| name.to_string()),
            source: self.source.clone(),
            start: self.start.clone(),
            filter: self.filter.clone(),
            server: self.server.clone(),
            store: self.store.clone(),
            time_zone: self.time_zone.clone(),
            data_dir: "/tmp/canal".into(),
            zookeeper: Some(self.zookeeper.clone()),
        }
    }
}

fn default_replicas() -> i32 {
    2
}
fn default_image() -> String {
    "canal-rs/canal-instance:latest".into()
}
fn default_password_key() -> String {
    "password".into()
}

#[cfg(all(test, feature = "cel"))]
mod cel_tests {
    use super::*;

    fn instance(yaml: &str) -> CanalInstance {
        let spec: CanalInstanceSpec = serde_yaml::from_str(yaml).expect("spec parses");
        CanalInstance::new("orders", spec)
    }

    const VALID: &str = "source:\n  address: mysql.db:3306\n  username: canal\n\
                         sourcePasswordSecret:\n  name: mysql\nzookeeper:\n  servers: zk:2181\n";

    #[test]
    fn valid_spec_passes() {
        instance(VALID).validate_cel().expect("valid");
    }

    #[test]
    fn replicas_and_address_are_checked_with_clear_messages() {
        let err = instance(&format!("{VALID}replicas: 9\n"))
            .validate_cel()
            .unwrap_err()
            .to_string();
        assert!(err.contains("replicas must be between 1 and 5"), "{err}");
        let err = instance(&VALID.replace("mysql.db:3306", "mysql.db"))
            .validate_cel()
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.address must be host:port"), "{err}");
    }

    #[test]
    fn destination_is_immutable() {
        let old = instance(&format!("{VALID}destination: a\n"));
        instance(&format!("{VALID}destination: a\n"))
            .validate_cel_update(&old)
            .expect("unchanged is fine");
        let err = instance(&format!("{VALID}destination: b\n"))
            .validate_cel_update(&old)
            .unwrap_err()
            .to_string();
        assert!(err.contains("destination is immutable"), "{err}");
        let err = instance(VALID).validate_cel_update(&old).unwrap_err().to_string();
        assert!(err.contains("destination is immutable"), "{err}");
    }
}
