//! The third and fourth steps: [`build`] turns a [`Validated`] CanalInstance into one [`Children`] value that lists
//! every object it owns, and [`Children::apply`] makes the cluster match it, deleting what no longer belongs. The
//! list of children is written once, in the `children!` invocation below: the struct, the apply order, the
//! controller's `.owns(...)` watches and [`KINDS`] all come from it.

use std::fmt::Debug;

use canal_api::CanalInstance;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::validate::Validated;
use crate::{Error, resources};

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "canal-operator";

/// What the operator wants for one child: present with this content, or absent.
#[derive(Clone, Debug, PartialEq)]
pub enum Child<K> {
    Apply(K),
    /// Deleted if it exists and this CanalInstance owns it (an object of the same name that someone else made is
    /// left alone).
    Absent {
        name: String,
    },
}

impl<K> Child<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
{
    pub fn name(&self) -> String {
        match self {
            Child::Apply(object) => object.name_any(),
            Child::Absent { name } => name.clone(),
        }
    }

    pub fn object(&self) -> Option<&K> {
        match self {
            Child::Apply(object) => Some(object),
            Child::Absent { .. } => None,
        }
    }

    /// Server-side applies the child, or deletes it; returns what the API server holds afterwards.
    async fn reconcile(&self, client: &Client, owner: &CanalInstance) -> Result<Option<K>, Error> {
        let api: Api<K> = Api::namespaced(client.clone(), &owner.namespace().unwrap_or_default());
        match self {
            Child::Apply(object) => {
                let params = PatchParams::apply(MANAGER).force();
                Ok(Some(
                    api.patch(&object.name_any(), &params, &Patch::Apply(object)).await?,
                ))
            }
            Child::Absent { name } => {
                let Some(existing) = api.get_opt(name).await? else {
                    return Ok(None);
                };
                let ours = existing
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == owner.metadata.uid.as_ref());
                if ours {
                    match api.delete(name, &DeleteParams::background()).await {
                        Ok(_) => {}
                        // Gone in between: that is what we wanted.
                        Err(kube::Error::Api(status)) if status.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None)
            }
        }
    }
}

/// Declares the children, grouped by kind, in the order they are applied.
macro_rules! children {
    ($($kind:ident { $($field:ident),+ $(,)? }),+ $(,)?) => {
        /// Every object one CanalInstance owns.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Children {
            $($(pub $field: Child<$kind>,)+)+
        }

        /// What the API server holds for each child after [`Children::apply`] (`None` where it is absent).
        #[derive(Clone, Debug, Default)]
        pub struct Applied {
            $($(pub $field: Option<$kind>,)+)+
        }

        /// The resource (plural) names of the kinds of children, as `kubectl get` takes them.
        pub const KINDS: &[&str] = &[$(<$kind as k8s_openapi::Resource>::URL_PATH_SEGMENT),+];

        impl Children {
            /// Applies the children one after the other, in declaration order, and deletes the absent ones.
            pub async fn apply(&self, client: &Client, owner: &CanalInstance) -> Result<Applied, Error> {
                // Struct expressions evaluate their fields in the order written: the declaration order.
                Ok(Applied {
                    $($($field: self.$field.reconcile(client, owner).await?,)+)+
                })
            }

            /// The present children as JSON, in apply order (for manifests and checks).
            pub fn manifests(&self) -> Vec<serde_json::Value> {
                let mut manifests = Vec::new();
                $($(if let Some(object) = self.$field.object() {
                    manifests.push(serde_json::to_value(object).unwrap_or_default());
                })+)+
                manifests
            }

            /// The API path of every child (`/api/v1/namespaces/ns/configmaps/name`), in apply order.
            pub fn paths(&self, namespace: &str) -> Vec<String> {
                vec![$($(
                    format!("{}/{}", <$kind as Resource>::url_path(&(), Some(namespace)), self.$field.name()),
                )+)+]
            }

            /// `(kind, name, present)` of every child, in apply order.
            pub fn list(&self) -> Vec<(&'static str, String, bool)> {
                vec![$($((
                    <$kind as k8s_openapi::Resource>::KIND,
                    self.$field.name(),
                    self.$field.object().is_some(),
                ),)+)+]
            }
        }

        /// Adds a watch per kind of child, so a change to any child (or its deletion) reconciles its owner.
        pub fn owns(
            controller: Controller<CanalInstance>,
            client: &Client,
            config: &watcher::Config,
        ) -> Controller<CanalInstance> {
            controller $(.owns(Api::<$kind>::all(client.clone()), config.clone()))+
        }
    };
}

children! {
    ConfigMap { config_map },
    ServiceAccount { service_account },
    Role { role },
    RoleBinding { role_binding },
    Service { headless_service, client_service },
    PodDisruptionBudget { pod_disruption_budget },
    StatefulSet { stateful_set },
}

/// The labels every child carries, for the controller's watches: only the operator's own objects.
pub const WATCH_SELECTOR: &str = "app.kubernetes.io/managed-by=canal-operator";

/// Builds every child of a validated CanalInstance. Pure: the same input gives the same objects.
pub fn build(v: &Validated) -> Result<Children, Error> {
    let ci = &v.instance;
    let config_map = resources::config_map(ci, &v.config)?;
    let hash = resources::config_hash(&config_map, &v.secret_versions);
    // With one pod a budget of one unavailable pod still lets a drain take it, and with fewer pods than that the
    // budget guards nothing; it exists only while there is a standby to keep.
    let pod_disruption_budget = if ci.spec.replicas >= 2 {
        Child::Apply(resources::pod_disruption_budget(ci))
    } else {
        Child::Absent { name: ci.name_any() }
    };
    Ok(Children {
        config_map: Child::Apply(config_map),
        service_account: Child::Apply(resources::service_account(ci)),
        role: Child::Apply(resources::role(ci)),
        role_binding: Child::Apply(resources::role_binding(ci)),
        headless_service: Child::Apply(resources::headless_service(ci)),
        client_service: Child::Apply(resources::client_service(ci)),
        pod_disruption_budget,
        stateful_set: Child::Apply(resources::stateful_set(ci, &hash)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::ORDERS;
    use crate::validate::tests::validated;

    #[test]
    fn every_child_is_listed_once_in_apply_order() {
        let children = build(&validated(ORDERS)).unwrap();
        let list = children.list();
        let listed: Vec<(&str, &str, bool)> = list
            .iter()
            .map(|(kind, name, present)| (*kind, name.as_str(), *present))
            .collect();
        assert_eq!(
            listed,
            [
                ("ConfigMap", "orders", true),
                ("ServiceAccount", "orders", true),
                ("Role", "orders", true),
                ("RoleBinding", "orders", true),
                ("Service", "orders-headless", true),
                ("Service", "orders", true),
                ("PodDisruptionBudget", "orders", true),
                ("StatefulSet", "orders", true),
            ]
        );
        assert_eq!(
            KINDS,
            [
                "configmaps",
                "serviceaccounts",
                "roles",
                "rolebindings",
                "services",
                "poddisruptionbudgets",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn every_child_is_owned_by_the_instance_and_labelled_for_the_watches() {
        let children = build(&validated(ORDERS)).unwrap();
        let metas = [
            children.config_map.object().map(|o| o.meta().clone()),
            children.service_account.object().map(|o| o.meta().clone()),
            children.role.object().map(|o| o.meta().clone()),
            children.role_binding.object().map(|o| o.meta().clone()),
            children.headless_service.object().map(|o| o.meta().clone()),
            children.client_service.object().map(|o| o.meta().clone()),
            children.pod_disruption_budget.object().map(|o| o.meta().clone()),
            children.stateful_set.object().map(|o| o.meta().clone()),
        ];
        for meta in metas.into_iter().flatten() {
            let owner = &meta.owner_references.as_ref().expect("owner")[0];
            assert_eq!((owner.kind.as_str(), owner.controller), ("CanalInstance", Some(true)));
            assert_eq!(
                meta.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
                "canal-operator"
            );
            assert_eq!(meta.namespace.as_deref(), Some("shop"));
        }
    }

    #[test]
    fn one_replica_has_no_disruption_budget() {
        let children = build(&validated(&ORDERS.replace("replicas: 3", "replicas: 1"))).unwrap();
        assert_eq!(children.pod_disruption_budget, Child::Absent { name: "orders".into() });
        assert_eq!(children.stateful_set.object().unwrap().spec.replicas, Some(1));
    }

    #[test]
    fn the_deployed_config_is_the_validated_one() {
        let v = validated(ORDERS);
        let children = build(&v).unwrap();
        let yaml = &children.config_map.object().unwrap().data.as_ref().unwrap()["config.yaml"];
        let deployed: canal_api::InstanceConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(deployed, v.config);
    }
}
