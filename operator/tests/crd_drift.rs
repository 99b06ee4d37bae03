//! The committed CRD YAML (crds/ and the Helm chart's copy) must equal what the types generate.
//! Regenerate with `make crds`.

use kube::CustomResourceExt;

fn generated() -> String {
    serde_yaml::to_string(&canal_api::CanalInstance::crd()).expect("CRD serializes")
}

#[test]
fn committed_crds_match_the_types() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for path in [
        "crds/canalinstance.yaml",
        "charts/canal-operator/crds/canalinstance.yaml",
    ] {
        let committed = std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_default();
        assert!(
            committed == generated(),
            "{path} drifted from the CanalInstance types: run `make crds`"
        );
    }
}
