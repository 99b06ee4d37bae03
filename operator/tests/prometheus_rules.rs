//! The chart's monitoring content, checked with real tools: `promtool check rules` and `promtool test rules` on
//! exactly the rules file the chart's PrometheusRule includes (`charts/canal-operator/files/alerts.rules.yaml`),
//! PromQL syntax of every dashboard query, and every metric name the rules and the dashboard use against what
//! canal-instance and canal-operator really export (their own registries, encoded here).
//!
//! promtool is built from Go modules by `e2e/tools/build.sh` on first use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use canal_instance::observe::collector::InstanceCollector;
use canal_instance::observe::metrics::{ClientLabels, Metrics, RequestOutcome, Role, Snapshot, encode};
use canal_instance::protocol::packet::PacketType;
use canal_instance::store::StoreStats;
use prometheus_client::registry::Registry;

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/canal-operator")
}

fn rules_file() -> PathBuf {
    chart_dir().join("files/alerts.rules.yaml")
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(canal_e2e::promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn promtool_checks_the_chart_rules() {
    let (ok, out) = promtool(&["check", "rules", "alerts.rules.yaml"], &chart_dir().join("files"));
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_every_alert() {
    let dir = chart_dir().join("files");
    let (ok, out) = promtool(&["test", "rules", "alerts.rules.test.yaml"], &dir);
    assert!(ok, "promtool test rules:\n{out}");
    // Every alert has a case that expects it to fire.
    let tests = std::fs::read_to_string(dir.join("alerts.rules.test.yaml")).unwrap();
    let tests: serde_yaml::Value = serde_yaml::from_str(&tests).unwrap();
    let mut fired = BTreeSet::new();
    for test in tests["tests"].as_sequence().unwrap() {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            if case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()) {
                fired.insert(case["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    let alerts: BTreeSet<String> = rules().into_iter().filter_map(|(alert, _)| alert).collect();
    assert!(!alerts.is_empty());
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(untested.is_empty(), "alerts without a firing test case: {untested:?}");
}

/// (alert name, expr) of every rule in the rules file.
fn rules() -> Vec<(Option<String>, String)> {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().map(str::to_string),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// Every PromQL expression of the dashboard (panel targets and query variables), with its place.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(chart_dir().join("dashboards/canal-rs.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            let ref_id = target["refId"].as_str().unwrap_or_default();
            out.push((
                format!("panel {title:?} {ref_id}"),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let query = var["query"]["query"].as_str().unwrap();
            // label_values(SELECTOR, label): the selector is PromQL.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector.to_string())
                .unwrap_or_else(|| panic!("variable query {query}"));
            out.push((format!("variable {}", var["name"]), inner));
        }
    }
    assert!(out.len() > 20, "the dashboard has its queries: {}", out.len());
    out
}

/// Grafana's variables replaced with what they expand to, so promtool can parse the query.
fn expand_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$operator_namespace", ".*")
        .replace("$namespace", ".*")
        .replace("$destination", ".*")
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // As recording rules, promtool parses each query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (place, expr)) in dashboard_queries().iter().enumerate() {
        let expr = expand_grafana_variables(expr);
        assert!(!expr.contains('$'), "{place}: unexpanded variable in {expr}");
        rules += &format!(
            "      # {place}\n      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        );
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-promql");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.rules.yaml"), &rules).unwrap();
    let (ok, out) = promtool(&["check", "rules", "dashboard.rules.yaml"], &dir);
    assert!(ok, "dashboard queries that are not valid PromQL:\n{out}\n{rules}");
}

/// Sample names (as Prometheus stores them: `_total`, `_bucket`, ... included) that canal-instance and
/// canal-operator export, from their own registries with every metric family populated.
fn exported_names() -> BTreeSet<String> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry, "example");
    let client = ClientLabels {
        destination: "example".into(),
        client_id: "1001".into(),
    };
    metrics.client_connected.get_or_create(&client).set(1);
    metrics.client_refused.get_or_create(&client).inc();
    metrics.client_evictions.get_or_create(&client).inc();
    let c = &metrics.counters;
    c.binlog_bytes(4096);
    c.activated();
    c.source_error("connect");
    c.source_error(canal_instance::Error::DECODE_KIND);
    let ms = Duration::from_millis(3);
    c.request(PacketType::Get as i32, RequestOutcome::Replied(100), ms);
    c.request(PacketType::Get as i32, RequestOutcome::EmptyBatch(20), ms);
    c.request(PacketType::Subscription as i32, RequestOutcome::Refused(400), ms);
    let now = jiff::Timestamp::now().as_millisecond();
    let snapshot = Snapshot {
        store: Some(StoreStats {
            entries: 2,
            bytes: 300,
            put_total: 5,
            acked_total: 3,
            put_rows: 5,
            put_time_ms: now,
            oldest_time_ms: now - 1000,
            ..Default::default()
        }),
        batch_mode: canal_api::BatchMode::Memsize,
        reader_event_time_ms: Some(now),
        subscriptions: 1,
        role: Role::Active,
        zookeeper: Some(canal_instance::ha::ZooKeeperSession::Connected),
    };
    registry.register_collector(Box::new(InstanceCollector::new("example", Arc::clone(c), move || {
        snapshot.clone()
    })));
    let mut text = encode(&registry);

    let mut operator = Registry::default();
    let reconcile = canal_operator::metrics::Metrics::new(&mut operator);
    drop(reconcile.reconcile_started());
    reconcile.reconcile_failed(&canal_operator::Error::InvalidSpec("x".into()));
    prometheus_client::encoding::text::encode(&mut text, &operator).unwrap();

    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    for expected in [
        "canal_rs_ha_role",
        "canal_rs_store_blocked_seconds_total",
        "canal_instance_client_request_latency_bucket",
        "canal_instance_store_produce_mem",
        "canal_rs_zookeeper_session",
        "canal_operator_reconcile_failures_total",
    ] {
        assert!(names.contains(expected), "{expected} not in the exposition:\n{text}");
    }
    names
}

/// Metric names in a PromQL expression: identifiers that start with `canal_` (label names and values, function
/// names and Grafana variables do not).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut quoted = false;
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            quoted = !quoted;
        }
        let starts_word =
            i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '$');
        if !quoted && starts_word && (c.is_ascii_alphabetic() || c == '_') {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == ':'))
                .unwrap_or(chars.len());
            let word: String = chars[i..end].iter().collect();
            if word.starts_with("canal_") {
                names.insert(word);
            }
            i = end;
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn rules_and_dashboard_use_exported_metric_names() {
    let exported = exported_names();
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    let places = rules()
        .into_iter()
        .map(|(alert, expr)| (format!("alert {}", alert.unwrap_or_default()), expr))
        .chain(dashboard_queries());
    for (place, expr) in places {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{place}: no canal metric in {expr}");
        for name in names {
            if !exported.contains(&name) {
                unknown.push(format!("{place}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "metric names nobody exports:\n{}\nexported: {exported:?}",
        unknown.join("\n")
    );
    // The dashboard covers the metrics the README calls out for operations.
    for name in [
        "canal_rs_dump_lag_seconds",
        "canal_rs_client_lag_seconds",
        "canal_rs_ha_role",
        "canal_rs_store_blocked_seconds_total",
        "canal_rs_source_errors_total",
        "canal_rs_decode_errors_total",
        "canal_rs_zookeeper_session",
    ] {
        assert!(used.contains(name), "{name} is neither alerted on nor charted");
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(canal_instance_client_request_latency_bucket{destination=~"canal_x", namespace=~"$namespace"}[5m]))) / canal_rs_store_entries"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["canal_instance_client_request_latency_bucket", "canal_rs_store_entries"]
    );
}
