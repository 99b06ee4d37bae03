//! The Kubernetes objects of one CanalInstance, one builder each. Pure functions of the resource (and, for the
//! ConfigMap, of the validated configuration), unit-tested from inline YAML; [`crate::children::build`] assembles
//! them into the one list the controller applies.

use std::collections::BTreeMap;

use canal_api::{CanalInstance, InstanceConfig, SecretKeyRef};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha1::{Digest, Sha1};

use crate::Error;

/// Label every pod carries with its role; the client Service selects `active`.
pub const ROLE_LABEL: &str = "canal.rs/role";
/// Annotation on the pod template that changes when the rendered config changes, so pods roll.
pub const CONFIG_HASH_ANNOTATION: &str = "canal.rs/config-hash";
const CONFIG_FILE: &str = "config.yaml";
const CONFIG_DIR: &str = "/etc/canal";
const CONTAINER: &str = "canal-instance";
/// Non-root user of the canal-instance image.
const RUN_AS_USER: i64 = 65532;
/// Room for a graceful handover: stop serving, write cursors, release the running node.
const TERMINATION_GRACE_SECONDS: i64 = 30;

/// Labels shared by every object of one CanalInstance (and the selector of its pods).
pub fn selector_labels(ci: &CanalInstance) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "canal-instance".to_string()),
        ("app.kubernetes.io/instance".to_string(), ci.name_any()),
    ])
}

fn labels(ci: &CanalInstance) -> BTreeMap<String, String> {
    let mut labels = selector_labels(ci);
    labels.insert("app.kubernetes.io/managed-by".into(), "canal-operator".into());
    labels
}

fn metadata(ci: &CanalInstance, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ci.namespace(),
        labels: Some(labels(ci)),
        owner_references: ci.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

pub fn headless_service_name(ci: &CanalInstance) -> String {
    format!("{}-headless", ci.name_any())
}

/// The pods' names, in ordinal order.
pub fn pod_names(ci: &CanalInstance) -> Vec<String> {
    (0..ci.spec.replicas.max(0))
        .map(|i| format!("{}-{i}", ci.name_any()))
        .collect()
}

/// The rendered instance configuration, `config` as validated: the same YAML a standalone user writes.
pub fn config_map(ci: &CanalInstance, config: &InstanceConfig) -> Result<ConfigMap, Error> {
    let yaml = serde_yaml::to_string(config).map_err(|e| Error::Render(e.to_string()))?;
    Ok(ConfigMap {
        metadata: metadata(ci, ci.name_any()),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), yaml)])),
        ..Default::default()
    })
}

/// A digest of the rendered config and the referenced Secrets' versions, stable across operator versions, to roll
/// the pods when either changes.
pub fn config_hash(config_map: &ConfigMap, secret_versions: &[String]) -> String {
    let mut hasher = Sha1::new();
    let parts = config_map
        .data
        .iter()
        .flatten()
        .flat_map(|(k, v)| [k, v])
        .chain(secret_versions);
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

fn ports(ci: &CanalInstance) -> Vec<ServicePort> {
    vec![
        ServicePort {
            name: Some("canal".into()),
            port: ci.spec.server.port as i32,
            target_port: Some(IntOrString::String("canal".into())),
            ..Default::default()
        },
        ServicePort {
            name: Some("metrics".into()),
            port: ci.spec.server.metrics_port as i32,
            target_port: Some(IntOrString::String("metrics".into())),
            ..Default::default()
        },
    ]
}

/// Gives every pod a stable DNS name; lists pods whether ready or not.
pub fn headless_service(ci: &CanalInstance) -> Service {
    Service {
        metadata: metadata(ci, headless_service_name(ci)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(ci)),
            ports: Some(ports(ci)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What clients connect to: only the active pod.
pub fn client_service(ci: &CanalInstance) -> Service {
    let mut selector = selector_labels(ci);
    selector.insert(ROLE_LABEL.into(), "active".into());
    Service {
        metadata: metadata(ci, ci.name_any()),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(ports(ci)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service_account(ci: &CanalInstance) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(ci, ci.name_any()),
        ..Default::default()
    }
}

/// The least the pods need: report into this CanalInstance's status and label themselves.
pub fn role(ci: &CanalInstance) -> Role {
    Role {
        metadata: metadata(ci, ci.name_any()),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["canal.rs".into()]),
                resources: Some(vec!["canalinstances/status".into()]),
                resource_names: Some(vec![ci.name_any()]),
                verbs: vec!["get".into(), "patch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                resource_names: Some(pod_names(ci)),
                verbs: vec!["patch".into()],
                ..Default::default()
            },
        ]),
    }
}

pub fn role_binding(ci: &CanalInstance) -> RoleBinding {
    RoleBinding {
        metadata: metadata(ci, ci.name_any()),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: ci.name_any(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: ci.name_any(),
            namespace: ci.namespace(),
            ..Default::default()
        }]),
    }
}

/// At most one pod down at a time through voluntary disruptions.
pub fn pod_disruption_budget(ci: &CanalInstance) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(ci, ci.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(ci)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Spread the pods over nodes when possible, so one node failure leaves a standby.
fn default_affinity(ci: &CanalInstance) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    topology_key: "kubernetes.io/hostname".into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(ci)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pods: canal-instance with the rendered config, passwords from Secrets, probes and a locked-down context.
pub fn stateful_set(ci: &CanalInstance, config_hash: &str) -> StatefulSet {
    let spec = &ci.spec;
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        // Pods report their role into this CanalInstance's status.
        EnvVar {
            name: "CANAL_INSTANCE".into(),
            value: Some(ci.name_any()),
            ..Default::default()
        },
        secret_env(canal_api::DEFAULT_SOURCE_PASSWORD_ENV, &spec.source_password_secret),
    ];
    if let Some(secret) = &spec.server_password_secret {
        env.push(secret_env(canal_api::DEFAULT_SERVER_PASSWORD_ENV, secret));
    }
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        args: Some(vec!["--config".into(), format!("{CONFIG_DIR}/{CONFIG_FILE}")]),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("canal".into()),
                container_port: spec.server.port as i32,
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: spec.server.metrics_port as i32,
                ..Default::default()
            },
        ]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let mut pod_labels = selector_labels(ci);
    pod_labels.insert(ROLE_LABEL.into(), "standby".into());
    StatefulSet {
        metadata: metadata(ci, ci.name_any()),
        spec: StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless_service_name(ci)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(ci)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.into(),
                        config_hash.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(ci.name_any()),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    affinity: Some(spec.affinity.clone().unwrap_or_else(|| default_affinity(ci))),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        // The Pod Security "restricted" profile requires a seccomp profile.
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: ci.name_any(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn canal_instance(yaml: &str) -> CanalInstance {
        let mut ci: CanalInstance = serde_yaml::from_str(yaml).expect("test CanalInstance parses");
        ci.metadata.uid = Some("uid-1".into());
        ci
    }

    pub const ORDERS: &str = "apiVersion: canal.rs/v1alpha1
kind: CanalInstance
metadata:
  name: orders
  namespace: shop
spec:
  replicas: 3
  image: registry.local/canal-instance:1.0
  source:
    address: mysql.shop:3306
    username: canal
  sourcePasswordSecret:
    name: mysql-canal
  zookeeper:
    servers: zk-0.zk:2181,zk-1.zk:2181
";

    /// The ConfigMap the build step makes of `yaml`.
    fn built_config_map(yaml: &str) -> ConfigMap {
        let v = crate::validate::tests::validated(yaml);
        config_map(&v.instance, &v.config).unwrap()
    }

    #[test]
    fn config_map_holds_the_instance_config_a_standalone_user_would_write() {
        let cm = built_config_map(ORDERS);
        let yaml = &cm.data.as_ref().unwrap()["config.yaml"];
        let config: canal_api::InstanceConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(
            config.destination, "orders",
            "destination defaults to the resource name"
        );
        assert_eq!(config.source.address, "mysql.shop:3306");
        assert_eq!(config.zookeeper.unwrap().servers, "zk-0.zk:2181,zk-1.zk:2181");
        assert_eq!(cm.metadata.owner_references.unwrap()[0].kind, "CanalInstance");
    }

    #[test]
    fn client_service_selects_only_the_active_pod() {
        let svc = client_service(&canal_instance(ORDERS));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.selector.unwrap()[ROLE_LABEL], "active");
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [11111, 11112]);
        let headless = headless_service(&canal_instance(ORDERS)).spec.unwrap();
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert!(!headless.selector.unwrap().contains_key(ROLE_LABEL));
    }

    #[test]
    fn stateful_set_runs_locked_down_pods_with_secrets_and_probes() {
        let ci = canal_instance(ORDERS);
        let sts = stateful_set(&ci, "abc");
        assert_eq!(sts.spec.replicas, Some(3));
        assert_eq!(sts.spec.service_name.as_deref(), Some("orders-headless"));
        let template = sts.spec.template;
        assert_eq!(
            template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION],
            "abc"
        );
        let pod = template.spec.unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        assert!(
            pod.affinity.unwrap().pod_anti_affinity.is_some(),
            "spread over nodes by default"
        );
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/canal-instance:1.0"));
        assert_eq!(c.args.as_ref().unwrap(), &["--config", "/etc/canal/config.yaml"]);
        let env: Vec<&str> = c.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            env,
            [
                "POD_NAME",
                "POD_NAMESPACE",
                "POD_IP",
                "CANAL_INSTANCE",
                "CANAL_SOURCE_PASSWORD"
            ]
        );
        assert_eq!(c.env.as_ref().unwrap()[3].value.as_deref(), Some("orders"));
        let password = c.env.as_ref().unwrap()[4]
            .value_from
            .clone()
            .unwrap()
            .secret_key_ref
            .unwrap();
        assert_eq!(
            (password.name.as_str(), password.key.as_str()),
            ("mysql-canal", "password")
        );
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(
            c.readiness_probe.clone().unwrap().http_get.unwrap().path.as_deref(),
            Some("/readyz")
        );
    }

    #[test]
    fn role_grants_only_status_of_this_instance_and_its_own_pods() {
        let rules = role(&canal_instance(ORDERS)).rules.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].resources.as_ref().unwrap(), &["canalinstances/status"]);
        assert_eq!(rules[0].resource_names.as_ref().unwrap(), &["orders"]);
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        assert_eq!(
            rules[1].resource_names.as_ref().unwrap(),
            &["orders-0", "orders-1", "orders-2"]
        );
        assert_eq!(rules[1].verbs, ["patch"]);
    }

    #[test]
    fn config_changes_change_the_hash() {
        let a = built_config_map(ORDERS);
        let b = built_config_map(&ORDERS.replace("mysql.shop:3306", "mysql2.shop:3306"));
        assert_ne!(config_hash(&a, &[]), config_hash(&b, &[]));
        assert_eq!(config_hash(&a, &[]), config_hash(&a.clone(), &[]));
        assert_ne!(
            config_hash(&a, &["1".into()]),
            config_hash(&a, &["2".into()]),
            "a rotated Secret rolls pods"
        );
    }
}
