//! The second step: turn a CanalInstance and what it refers to into a [`Validated`] value, or say why not. Pure,
//! so it is tested from inline YAML. The rendered instance configuration is validated here and carried in
//! [`Validated`], and [`crate::children::build`] deploys that very value, so what is validated is what is deployed.

use canal_api::{CanalInstance, ConfigError, InstanceConfig};
use kube::ResourceExt;

use crate::dereference::Referenced;

/// A CanalInstance that passed every check, with everything the build step needs.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The resource as it was validated (its metadata names and owns the children).
    pub instance: CanalInstance,
    /// The configuration every pod runs with, exactly as validated.
    pub config: InstanceConfig,
    /// Versions of the referenced Secrets, in spec order, for the config hash.
    pub secret_versions: Vec<String>,
}

/// Why a CanalInstance cannot be deployed. Nothing to retry until the spec or a Secret changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("Secret {name} does not exist in namespace {namespace}; create it or fix the Secret reference in the spec")]
    SecretMissing { name: String, namespace: String },
}

impl Invalid {
    /// The Condition and Event reason: a fixed string per kind.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Config(_) => "InvalidSpec",
            Invalid::SecretMissing { .. } => "SecretMissing",
        }
    }
}

/// The configuration a pod of `ci` runs with: the spec's instance part, with the settings only a pod can have.
pub fn rendered_config(ci: &CanalInstance) -> InstanceConfig {
    let mut config = ci.spec.instance_config(&ci.name_any());
    // Pods publish their own IP (POD_IP) in ZooKeeper and listen on every interface.
    config.server.register_ip = None;
    config.server.host = "0.0.0.0".into();
    config
}

/// Checks what the CRD's schema cannot, with the very checks a standalone canal-instance applies (regexes, time
/// zone, ...), and that every referenced Secret exists.
pub fn validate(ci: &CanalInstance, referenced: &Referenced) -> Result<Validated, Invalid> {
    let config = rendered_config(ci);
    canal_api::validate(&config)?;
    let mut secret_versions = Vec::new();
    for name in crate::dereference::secret_names(ci) {
        // A Secret that dereferencing did not look at counts as missing: nothing unchecked is deployed.
        let version = referenced
            .secrets
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.resource_version.clone());
        match version {
            Some(version) => secret_versions.push(version),
            None => {
                return Err(Invalid::SecretMissing {
                    name: name.to_string(),
                    namespace: ci.namespace().unwrap_or_default(),
                });
            }
        }
    }
    Ok(Validated {
        instance: ci.clone(),
        config,
        secret_versions,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dereference::ReferencedSecret;
    use crate::resources::tests::{ORDERS, canal_instance};

    /// What dereferencing finds when every Secret `ci` names exists.
    pub fn all_found(ci: &CanalInstance) -> Referenced {
        Referenced {
            secrets: crate::dereference::secret_names(ci)
                .map(|name| ReferencedSecret {
                    name: name.into(),
                    resource_version: Some("1".into()),
                })
                .collect(),
        }
    }

    /// ORDERS-like YAML, validated; panics when it is not valid.
    pub fn validated(yaml: &str) -> Validated {
        validated_instance(&canal_instance(yaml))
    }

    /// `ci` validated as if every Secret it names exists at version 7 (what the controller tests' mock answers).
    pub fn validated_instance(ci: &CanalInstance) -> Validated {
        let mut referenced = all_found(ci);
        referenced
            .secrets
            .iter_mut()
            .for_each(|s| s.resource_version = Some("7".into()));
        validate(ci, &referenced).expect("valid CanalInstance")
    }

    #[test]
    fn the_validated_config_is_the_one_pods_run() {
        let v = validated(ORDERS);
        assert_eq!(v.config.destination, "orders");
        assert_eq!(v.config.server.host, "0.0.0.0");
        assert_eq!(v.config.server.register_ip, None);
        assert_eq!(v.secret_versions, ["7"]);
    }

    #[test]
    fn invalid_settings_are_refused_with_the_instances_message() {
        let ci = canal_instance(&ORDERS.replace("  zookeeper:", "  filter:\n    include: 'a('\n  zookeeper:"));
        let invalid = validate(&ci, &all_found(&ci)).unwrap_err();
        assert_eq!(invalid.reason(), "InvalidSpec");
        assert!(invalid.to_string().contains("filter.include"), "{invalid}");
        let ci = canal_instance(&format!("{ORDERS}  timeZone: Mars/Base\n"));
        let message = validate(&ci, &all_found(&ci)).unwrap_err().to_string();
        assert!(message.contains("timeZone") && message.contains("IANA"), "{message}");
    }

    #[test]
    fn a_missing_secret_is_named() {
        let ci = canal_instance(ORDERS);
        let referenced = Referenced {
            secrets: vec![ReferencedSecret {
                name: "mysql-canal".into(),
                resource_version: None,
            }],
        };
        let invalid = validate(&ci, &referenced).unwrap_err();
        assert_eq!(invalid.reason(), "SecretMissing");
        let message = invalid.to_string();
        assert!(
            message.contains("mysql-canal") && message.contains("namespace shop"),
            "{message}"
        );
        let unlooked = validate(&ci, &Referenced::default()).unwrap_err();
        assert_eq!(
            unlooked.reason(),
            "SecretMissing",
            "a Secret nobody fetched is not assumed to exist"
        );
    }
}
