//! Prints the CanalInstance CRD as YAML (`make crds` writes it to crds/ and the chart).

use kube::CustomResourceExt;

fn main() {
    match serde_yaml::to_string(&canal_api::CanalInstance::crd()) {
        Ok(yaml) => print!("{yaml}"),
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::exit(1);
        }
    }
}
