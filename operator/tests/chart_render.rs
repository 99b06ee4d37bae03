//! Render of the Helm chart with the real helm (v4, built from Go modules by `e2e/tools/build.sh`): `helm lint
//! --strict`, then `helm template` as release `canal-operator` in `canal-system`. Every rendered document must
//! deserialize into its k8s-openapi type with no unknown field, must mean what the operator needs (CLI args, env,
//! probes, RBAC), and must pass `kubernetes-validate --strict` (venv from `e2e/python/chart_venv.sh`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use canal_operator::values::Values;
use k8s_openapi::Resource;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount, Toleration};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

const RELEASE: &str = "canal-operator";
const NAMESPACE: &str = "canal-system";
/// The oldest Kubernetes the operator supports (k8s-openapi `earliest`) and the one its types are built for (`latest`).
const KUBE_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];
/// What Helm says when values.schema.json rejects the values.
const SCHEMA_ERROR: &str = "values don't meet the specifications of the schema";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn chart_dir() -> PathBuf {
    root().join("charts/canal-operator")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-render");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `helm lint --strict` and `helm template` with `values` (a file, merged over values.yaml as `helm -f` does);
/// on success writes the manifests to `out` and returns them, else returns helm's output (and writes nothing).
fn helm_render(values: Option<&Path>, out: &Path) -> Result<String, String> {
    let _ = std::fs::remove_file(out);
    let chart = chart_dir();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(canal_e2e::helm());
        cmd.args(args)
            .args(["--namespace", NAMESPACE, "--kube-version", KUBE_VERSIONS[0]]);
        if let Some(values) = values {
            cmd.arg("-f").arg(values);
        }
        let result = cmd.arg(&chart).output().expect("run helm");
        let text = String::from_utf8_lossy(&result.stdout).to_string();
        let stderr = String::from_utf8_lossy(&result.stderr).to_string();
        (result.status.success(), text, stderr)
    };
    let (ok, stdout, stderr) = run(&["lint", "--strict"]);
    if !ok {
        return Err(format!("helm lint --strict:\n{stdout}{stderr}"));
    }
    let (ok, manifests, stderr) = run(&["template", RELEASE]);
    if !ok {
        return Err(format!("helm template:\n{manifests}{stderr}"));
    }
    std::fs::write(out, &manifests).unwrap();
    Ok(manifests)
}

/// Renders and returns the output file and its text, failing with helm's output.
fn render(values: Option<&Path>, name: &str) -> (PathBuf, String) {
    let out = out_dir().join(format!("{name}.yaml"));
    let started = Instant::now();
    let text = helm_render(values, &out).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("rendered {name} in {:.1?}", started.elapsed());
    (out, text)
}

/// Deserializes into `T`, failing on any field `T` does not know (k8s-openapi would silently drop it).
fn strict<T: DeserializeOwned>(doc: serde_yaml::Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let value: T = serde_ignored::deserialize(doc, |path| unknown.push(path.to_string())).map_err(|e| e.to_string())?;
    if unknown.is_empty() {
        Ok(value)
    } else {
        Err(format!("unknown fields: {unknown:?}"))
    }
}

/// The chart's objects, each typed.
struct Manifests {
    deployment: Deployment,
    service_account: ServiceAccount,
    cluster_role: ClusterRole,
    binding: ClusterRoleBinding,
    service: Service,
    instance_policy: ValidatingAdmissionPolicy,
    instance_policy_binding: ValidatingAdmissionPolicyBinding,
}

fn once<T>(slot: &mut Option<T>, value: T, kind: &str) {
    assert!(slot.replace(value).is_none(), "more than one {kind}");
}

fn parse(text: &str) -> Result<Manifests, String> {
    let (mut deployment, mut service_account, mut cluster_role, mut binding, mut service) =
        (None, None, None, None, None);
    let (mut instance_policy, mut instance_policy_binding) = (None, None);
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| format!("invalid YAML: {e}"))?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let context = |e: String| format!("{kind} {name}: {e}");
        match kind.as_str() {
            Deployment::KIND => once(&mut deployment, strict(value).map_err(context)?, &kind),
            ServiceAccount::KIND => once(&mut service_account, strict(value).map_err(context)?, &kind),
            ClusterRole::KIND => once(&mut cluster_role, strict(value).map_err(context)?, &kind),
            ClusterRoleBinding::KIND => once(&mut binding, strict(value).map_err(context)?, &kind),
            Service::KIND => once(&mut service, strict(value).map_err(context)?, &kind),
            ValidatingAdmissionPolicy::KIND => once(&mut instance_policy, strict(value).map_err(context)?, &kind),
            ValidatingAdmissionPolicyBinding::KIND => {
                once(&mut instance_policy_binding, strict(value).map_err(context)?, &kind)
            }
            other => return Err(format!("unexpected kind {other:?} ({name})")),
        }
    }
    Ok(Manifests {
        deployment: deployment.ok_or("no Deployment")?,
        service_account: service_account.ok_or("no ServiceAccount")?,
        cluster_role: cluster_role.ok_or("no ClusterRole")?,
        binding: binding.ok_or("no ClusterRoleBinding")?,
        service: service.ok_or("no Service")?,
        instance_policy: instance_policy.ok_or("no ValidatingAdmissionPolicy")?,
        instance_policy_binding: instance_policy_binding.ok_or("no ValidatingAdmissionPolicyBinding")?,
    })
}

/// The policy that keeps an instance pod's token to its own pod: it denies, and it is bound to itself. What it
/// allows and refuses is tried on a real API server in `kubernetes_e2e.rs`.
fn check_instance_policy(m: &Manifests) {
    let name = m.instance_policy.metadata.name.clone().unwrap();
    let binding = &m.instance_policy_binding.spec;
    assert_eq!(binding.policy_name, name);
    assert_eq!(binding.validation_actions, vec!["Deny".to_string()]);
    let spec = m.instance_policy.spec.as_ref().unwrap();
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    let selector = spec
        .match_constraints
        .as_ref()
        .unwrap()
        .object_selector
        .as_ref()
        .unwrap();
    assert_eq!(
        selector
            .match_labels
            .as_ref()
            .unwrap()
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("canal-instance"),
        "the policy selects the pods the operator builds"
    );
}

/// values.yaml with `overrides` merged over it (top-level keys, as the CI values use), typed.
fn chart_values(overrides: Option<&Path>) -> Values {
    let mut base: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap()).unwrap();
    if let Some(path) = overrides {
        let over: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let base = base.as_mapping_mut().unwrap();
        for (k, v) in over.as_mapping().unwrap() {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_yaml::from_value(base).unwrap()
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).unwrap().as_str().unwrap().to_string()
}

fn container(m: &Manifests) -> &Container {
    let pod = m.deployment.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    &pod.containers[0]
}

/// The Deployment runs the operator with the values' settings and a hardened pod.
fn check_deployment(m: &Manifests, values: &Values) {
    let d = &m.deployment;
    assert_eq!(d.metadata.name.as_deref(), Some(RELEASE));
    assert_eq!(d.metadata.namespace.as_deref(), Some(NAMESPACE));
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(values.replicas));
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    assert!(!selector.is_empty(), "the Deployment selects by labels");
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "selector {selector:?} ⊄ {pod_labels:?}"
    );

    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, m.service_account.metadata.name);
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert!(pod_security.run_as_user.is_some_and(|uid| uid != 0), "non-root uid");
    let node_selector = (!values.node_selector.is_empty()).then(|| values.node_selector.clone());
    assert_eq!(pod.node_selector, node_selector);
    let tolerations = (!values.tolerations.is_empty()).then(|| values.tolerations.clone());
    assert_eq!(pod.tolerations, tolerations);
    let affinity = (values.affinity != Default::default()).then(|| values.affinity.clone());
    assert_eq!(pod.affinity, affinity);

    let c = container(m);
    let image = format!("{}:{}", values.image.repository, values.image.tag);
    assert_eq!(c.image.as_deref(), Some(image.as_str()));
    assert_eq!(c.image_pull_policy, Some(enum_str(&values.image.pull_policy)));
    let args = c.args.clone().unwrap_or_default();
    let listen = format!("--listen=0.0.0.0:{}", values.metrics_port);
    let log_format = format!("--log-format={}", enum_str(&values.log_format));
    assert!(args.contains(&listen), "{args:?} lacks {listen}");
    assert!(args.contains(&log_format), "{args:?} lacks {log_format}");
    let env = c.env.clone().unwrap_or_default();
    for (var, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let from = env
            .iter()
            .find(|e| e.name == var)
            .unwrap_or_else(|| panic!("no env {var}"));
        let field_ref = from.value_from.as_ref().and_then(|f| f.field_ref.as_ref());
        assert_eq!(field_ref.map(|f| f.field_path.as_str()), Some(field), "{var}");
    }
    let ports = c.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].container_port, i32::from(values.metrics_port));
    let port_name = ports[0].name.clone().expect("named port");
    for (probe, path) in [(&c.readiness_probe, "/readyz"), (&c.liveness_probe, "/healthz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert!(
            get.port == IntOrString::String(port_name.clone())
                || get.port == IntOrString::Int(i32::from(values.metrics_port)),
            "probe {path} on {:?}",
            get.port
        );
    }
    assert_eq!(c.resources.as_ref(), Some(&values.resources));
    let security = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let dropped = security
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.clone())
        .unwrap_or_default();
    assert!(
        dropped.iter().any(|d| d == "ALL"),
        "drops ALL capabilities: {dropped:?}"
    );
    assert_ne!(security.run_as_user, Some(0));
}

/// The chart's args are ones the operator binary accepts: clap parses (and checks the values of) every argument
/// before `--help` stops it.
fn check_args_parse(m: &Manifests) {
    let args = container(m).args.clone().unwrap_or_default();
    let out = Command::new(env!("CARGO_BIN_EXE_canal-operator"))
        .args(&args)
        .arg("--help")
        .env_remove("CANAL_OPERATOR_LISTEN")
        .env_remove("CANAL_OPERATOR_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "canal-operator rejects the chart's args {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rule_allows(rule: &PolicyRule, group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Option<Vec<String>>, item: &str| list.as_deref().unwrap_or_default().iter().any(|x| x == item);
    has(&rule.api_groups, group)
        && has(&rule.resources, resource)
        && rule.verbs.iter().any(|v| v == verb)
        && rule.resource_names.as_ref().is_none_or(|n| n.is_empty())
}

fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| rule_allows(r, group, resource, verb))
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// Least privilege that still covers what the controller does and what the Roles it creates grant.
fn check_cluster_role(m: &Manifests) {
    let rules = m.cluster_role.rules.clone().unwrap_or_default();
    for rule in &rules {
        let wildcard = |list: &[String]| list.iter().any(|x| x == "*");
        assert!(!wildcard(&rule.verbs), "wildcard verbs in {rule:?}");
        assert!(
            !wildcard(rule.resources.as_deref().unwrap_or_default()),
            "wildcard resources in {rule:?}"
        );
        assert!(
            !wildcard(rule.api_groups.as_deref().unwrap_or_default()),
            "wildcard apiGroups in {rule:?}"
        );
        assert!(rule.non_resource_urls.is_none(), "nonResourceURLs in {rule:?}");
    }
    let owned = [
        ("", "configmaps"),
        ("", "services"),
        ("", "serviceaccounts"),
        ("apps", "statefulsets"),
        ("policy", "poddisruptionbudgets"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ];
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for (group, resource) in owned {
        wanted.extend(READ.iter().chain(&["create", "patch"]).map(|v| (group, resource, *v)));
    }
    wanted.extend(
        READ.iter()
            .chain(&["patch"])
            .map(|v| ("canal.rs", "canalinstances", *v)),
    );
    wanted.extend([
        ("canal.rs", "canalinstances/status", "get"),
        ("canal.rs", "canalinstances/status", "patch"),
        ("canal.rs", "canalinstances/finalizers", "update"),
        ("", "pods", "patch"),
        // A child that no longer belongs is deleted (the only optional child is the budget).
        ("policy", "poddisruptionbudgets", "delete"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "patch"),
    ]);
    wanted.extend(READ.iter().map(|v| ("", "secrets", *v)));
    for (group, resource, verb) in wanted {
        assert!(
            allows(&rules, group, resource, verb),
            "ClusterRole lacks {verb} {resource}.{group}"
        );
    }
    for verb in WRITE {
        assert!(
            !allows(&rules, "", "secrets", verb),
            "secrets must stay read-only, but {verb} is granted"
        );
    }

    // Kubernetes lets the operator create a Role only with permissions it holds itself.
    let example = std::fs::read_to_string(root().join("examples/canalinstance.yaml")).unwrap();
    let ci = serde_yaml::Deserializer::from_str(&example)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "CanalInstance")
        .expect("example CanalInstance");
    let ci: canal_api::CanalInstance = serde_yaml::from_value(ci).unwrap();
    for rule in canal_operator::resources::role(&ci).rules.unwrap_or_default() {
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    assert!(
                        allows(&rules, group, resource, verb),
                        "the operator's Role grants {verb} {resource}.{group}, which the ClusterRole does not hold"
                    );
                }
            }
        }
    }
}

fn check_binding_and_service(m: &Manifests, values: &Values) {
    let sa = &m.service_account;
    assert_eq!(sa.metadata.name.as_deref(), Some(RELEASE));
    assert_eq!(sa.metadata.namespace.as_deref(), Some(NAMESPACE));

    let b = &m.binding;
    assert_eq!(b.role_ref.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&b.role_ref.name), m.cluster_role.metadata.name.as_ref());
    let subjects = b.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));

    let s = &m.service;
    assert_eq!(s.metadata.name.as_deref(), Some("canal-operator-metrics"));
    assert_eq!(s.metadata.namespace.as_deref(), Some(NAMESPACE));
    let spec = s.spec.as_ref().unwrap();
    let pod_labels: BTreeMap<String, String> = m
        .deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    assert!(!selector.is_empty());
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "Service selects no operator pod"
    );
    let ports = spec.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, i32::from(values.metrics_port));
    let container_port = container(m).ports.as_ref().unwrap()[0].clone();
    assert!(
        ports[0].target_port == container_port.name.clone().map(IntOrString::String)
            || ports[0].target_port == Some(IntOrString::Int(container_port.container_port)),
        "Service targets {:?}, not the metrics port",
        ports[0].target_port
    );
}

/// `kubernetes-validate --strict` against every version in KUBE_VERSIONS; every document must be checked (a
/// missing schema is only a WARN there, with exit code 0).
fn kubernetes_validate(file: &Path) -> Result<String, String> {
    let bin = canal_e2e::python_with_chart_tools()
        .parent()
        .unwrap()
        .join("kubernetes-validate");
    let mut cmd = Command::new(bin);
    cmd.arg("--strict");
    for v in KUBE_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.arg(file).output().expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let bad = stdout.lines().any(|l| !l.starts_with("INFO "));
    if out.status.success() && !bad {
        Ok(stdout)
    } else {
        Err(stdout)
    }
}

fn passed(report: &str) -> usize {
    report
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed "))
        .count()
}

/// Renders with `values` and runs every check; returns the rendered text.
fn render_and_check(values_file: Option<&Path>, name: &str) -> (Manifests, String) {
    let started = Instant::now();
    let (out, text) = render(values_file, name);
    let m = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let values = chart_values(values_file);
    check_deployment(&m, &values);
    check_args_parse(&m);
    check_cluster_role(&m);
    check_binding_and_service(&m, &values);
    check_instance_policy(&m);
    let report = kubernetes_validate(&out).unwrap_or_else(|r| panic!("kubernetes-validate {}:\n{r}", out.display()));
    assert_eq!(
        passed(&report),
        7 * KUBE_VERSIONS.len(),
        "every document validated:\n{report}"
    );
    eprintln!("{name}: render + checks in {:.1?}", started.elapsed());
    (m, text)
}

#[test]
fn default_values_render_valid_manifests() {
    let (m, _) = render_and_check(None, "default");
    let values = chart_values(None);
    assert_eq!(values.replicas, 2, "values.yaml runs a standby operator");
    assert_eq!(m.deployment.spec.template.spec.unwrap().node_selector, None);
}

#[test]
fn ci_test_values_render_valid_manifests() {
    let file = chart_dir().join("ci/test-values.yaml");
    let (m, _) = render_and_check(Some(&file), "test-values");
    let c = container(&m).clone();
    assert_eq!(c.image.as_deref(), Some("registry.local/canal-operator:test"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    let args = c.args.unwrap();
    assert!(args.contains(&"--listen=0.0.0.0:9090".to_string()), "{args:?}");
    assert!(args.contains(&"--log-format=json".to_string()), "{args:?}");
    assert_eq!(c.ports.unwrap()[0].container_port, 9090);
    assert_eq!(m.service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 9090);
    let pod = &m.deployment.spec;
    assert_eq!(pod.replicas, Some(1));
    let pod = pod.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())]))
    );
    assert_eq!(
        pod.tolerations,
        Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("cdc".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }])
    );
}

#[test]
fn values_schema_is_enforced() {
    let bad = [
        ("replicas-zero", "replicas: 0\n"),
        ("unknown-key", "replicaCount: 3\n"),
        ("log-format", "logFormat: xml\n"),
        ("port-range", "metricsPort: 70000\n"),
        ("nested-typo", "tolerations:\n  - key: a\n    efect: NoSchedule\n"),
        (
            "image-typo",
            "image:\n  repository: x\n  tag: y\n  pullPolicy: IfNotPresent\n  tgs: z\n",
        ),
    ];
    for (name, yaml) in bad {
        let values = out_dir().join(format!("bad-{name}.yaml"));
        std::fs::write(&values, yaml).unwrap();
        let out = out_dir().join(format!("bad-{name}.out.yaml"));
        let Err(stderr) = helm_render(Some(&values), &out) else {
            panic!("{name}: {yaml:?} was accepted")
        };
        assert!(
            stderr.contains(SCHEMA_ERROR),
            "{name}: not rejected by the schema:\n{stderr}"
        );
        assert!(!out.exists(), "{name}: wrote manifests anyway");
    }
}

/// The two strict checks above are not vacuous: an unknown field fails both.
#[test]
fn strict_checks_reject_an_unknown_field() {
    let (_, text) = render(None, "control");
    let marker = "      serviceAccountName:";
    assert!(text.contains(marker));
    let broken = text.replacen(marker, &format!("      serviceAcountName: typo\n{marker}"), 1);
    let Err(err) = parse(&broken) else {
        panic!("serde_ignored does not report the typo")
    };
    assert!(err.contains("serviceAcountName"), "{err}");
    let file = out_dir().join("control-broken.yaml");
    std::fs::write(&file, &broken).unwrap();
    let report = kubernetes_validate(&file).expect_err("kubernetes-validate --strict rejects the typo");
    assert!(report.contains("serviceAcountName"), "{report}");
}

/// kubernetes-validate ships the apiextensions.k8s.io/v1 schema, so the chart's CRD is checked as well.
#[test]
fn crd_passes_strict_validation() {
    let file = chart_dir().join("crds/canalinstance.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    assert_eq!(docs.len(), 1);
    let crd: CustomResourceDefinition = strict(docs[0].clone()).unwrap();
    assert_eq!(crd.spec.group, "canal.rs");
    let report = kubernetes_validate(&file).unwrap_or_else(|r| panic!("kubernetes-validate {}:\n{r}", file.display()));
    assert_eq!(passed(&report), KUBE_VERSIONS.len(), "{report}");
}

/// What the operator applies for a CanalInstance (the example one) passes the same strict validation.
#[test]
fn operator_children_pass_strict_validation() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/canalinstance.yaml")).unwrap();
    let doc = serde_yaml::Deserializer::from_str(&text)
        .nth(1)
        .expect("the CanalInstance document");
    let mut ci: canal_api::CanalInstance = canal_api::CanalInstance::deserialize(doc).unwrap();
    ci.metadata.namespace = Some("shop".into());
    ci.metadata.uid = Some("0b5a1f7e-3c1d-4f0e-9a51-7f3f7f0e2b11".into());
    // Every child the operator would apply, from the same list the controller uses.
    let referenced = canal_operator::dereference::Referenced {
        secrets: vec![canal_operator::dereference::ReferencedSecret {
            name: ci.spec.source_password_secret.name.clone(),
            resource_version: Some("1".into()),
        }],
    };
    let validated = canal_operator::validate::validate(&ci, &referenced).unwrap();
    let children = canal_operator::children::build(&validated).unwrap();
    let docs: Vec<String> = children
        .manifests()
        .iter()
        .map(|m| serde_yaml::to_string(m).unwrap())
        .collect();
    assert_eq!(
        docs.len(),
        8,
        "every child of a two-replica instance, the PodDisruptionBudget included"
    );
    let dir = tempfile_dir();
    let file = dir.join("children.yaml");
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let report = kubernetes_validate(&file).unwrap_or_else(|r| panic!("kubernetes-validate {}:\n{r}", file.display()));
    assert_eq!(passed(&report), docs.len() * KUBE_VERSIONS.len(), "{report}");
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canal-operator-children-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
