//! The Helm chart's values contract: values.yaml and the CI values parse into the typed struct (unknown keys are
//! errors), and values.schema.json is what the struct generates (`make crds` regenerates it).

use canal_operator::values::{Values, schema_json};

fn chart_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/canal-operator/").to_string() + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn values_files_match_the_typed_values() {
    for file in ["values.yaml", "ci/test-values.yaml", "ci/monitoring-values.yaml"] {
        let text = chart_file(file);
        if file == "values.yaml" {
            serde_yaml::from_str::<Values>(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        } else {
            // CI values override some keys; merged over the defaults they must still be valid.
            let mut base: serde_yaml::Value = serde_yaml::from_str(&chart_file("values.yaml")).unwrap();
            let over: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            if let (Some(b), Some(o)) = (base.as_mapping_mut(), over.as_mapping()) {
                for (k, v) in o {
                    b.insert(k.clone(), v.clone());
                }
            }
            serde_yaml::from_value::<Values>(base).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    let typo = chart_file("values.yaml").replace("logFormat:", "logFromat:");
    assert!(
        serde_yaml::from_str::<Values>(&typo).is_err(),
        "unknown keys are rejected"
    );
}

#[test]
fn values_schema_is_generated_from_the_struct() {
    assert!(
        chart_file("values.schema.json") == schema_json(),
        "values.schema.json drifted: run `make crds`"
    );
}

#[test]
fn example_canal_instance_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/canalinstance.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "a Secret and a CanalInstance");
    let ci: canal_api::CanalInstance = serde_yaml::from_value(docs[1].clone()).expect("CanalInstance parses");
    // As if its Secret (the first document) exists: validation is what the operator would deploy.
    let referenced = canal_operator::dereference::Referenced {
        secrets: vec![canal_operator::dereference::ReferencedSecret {
            name: docs[0]["metadata"]["name"].as_str().unwrap().into(),
            resource_version: Some("1".into()),
        }],
    };
    canal_operator::validate::validate(&ci, &referenced).expect("the example passes the operator's validation");
    assert_eq!(
        ci.spec.source_password_secret.name,
        docs[0]["metadata"]["name"].as_str().unwrap()
    );
}

#[test]
fn example_consumer_deployment_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/consumer-deployment.yaml"
    ))
    .unwrap();
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_yaml::from_str(&text).expect("a Deployment");
    assert_eq!(deployment.spec.replicas, Some(2));
    let container = &deployment.spec.template.spec.unwrap().containers[0];
    let args = container.args.clone().unwrap();
    assert!(args.iter().any(|a| a == "--client-ha"), "{args:?}");
}
