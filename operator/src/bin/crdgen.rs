//! Writes generated artifacts to stdout: the CanalInstance CRD as YAML (default), or with `values-schema` the Helm
//! chart's values.schema.json. `make crds` writes both into the tree.

use kube::CustomResourceExt;

fn main() {
    let output = match std::env::args().nth(1).as_deref() {
        None => serde_yaml::to_string(&canal_api::CanalInstance::crd()).map_err(|e| e.to_string()),
        Some("values-schema") => Ok(canal_operator::values::schema_json()),
        Some(other) => Err(format!(
            "unknown artifact `{other}`; use no argument (CRD) or `values-schema`"
        )),
    };
    match output {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("crdgen: {e}");
            std::process::exit(1);
        }
    }
}
