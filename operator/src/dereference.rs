//! The first step of a reconcile: fetch what the spec names but does not contain, so that the steps after it are
//! pure functions. Today that is the Secrets holding the passwords; their versions go into the config hash, so a
//! rotated password rolls the pods.

use canal_api::CanalInstance;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::Error;

/// A Secret the spec names, as found in the CanalInstance's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferencedSecret {
    pub name: String,
    /// `None` when the Secret does not exist.
    pub resource_version: Option<String>,
}

/// Everything outside the CanalInstance that it refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Referenced {
    /// In spec order: the source password's Secret, then the server password's.
    pub secrets: Vec<ReferencedSecret>,
}

/// The names of the Secrets `ci` refers to, in spec order; the controller's Secret watch uses it too.
pub fn secret_names(ci: &CanalInstance) -> impl Iterator<Item = &str> {
    std::iter::once(&ci.spec.source_password_secret)
        .chain(ci.spec.server_password_secret.as_ref())
        .map(|s| s.name.as_str())
}

/// Fetches what `ci` refers to. A missing Secret is recorded, not an error: validation reports it.
pub async fn dereference(client: &Client, ci: &CanalInstance) -> Result<Referenced, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ci.namespace().unwrap_or_default());
    let mut referenced = Referenced::default();
    for name in secret_names(ci) {
        let found = secrets.get_opt(name).await?;
        referenced.secrets.push(ReferencedSecret {
            name: name.to_string(),
            resource_version: found.map(|s| s.resource_version().unwrap_or_default()),
        });
    }
    Ok(referenced)
}
