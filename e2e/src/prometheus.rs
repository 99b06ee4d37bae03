//! A real Prometheus server for tests (built from its Go module by `e2e/tools/build.sh`), scraping the pods of a
//! Kubernetes cluster found through its API with the admin kubeconfig, as a Prometheus in the cluster would find
//! them through a PodMonitor. The test queries it over the HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{free_port, fresh_dir, prometheus_binary};

/// One sample of a query's answer: its labels and value.
pub type Sample = (serde_json::Map<String, Value>, f64);

pub struct Prometheus {
    child: Child,
    pub address: String,
}

impl Prometheus {
    /// Starts Prometheus scraping, every second, the port named `port_name` of the running pods labelled
    /// `app.kubernetes.io/name=<app>` in `namespaces`, with `namespace`, `pod` and `canalinstance` target labels.
    pub fn start(kubeconfig: &Path, namespaces: &[&str], app: &str, port_name: &str) -> Self {
        let dir = fresh_dir("canal-prometheus-");
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "pods",
                "kubernetes_sd_configs": [{
                    "role": "pod",
                    "kubeconfig_file": kubeconfig,
                    "namespaces": {"names": namespaces},
                }],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "regex": app,
                     "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port_name,
                     "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                     "target_label": "canalinstance"},
                ],
            }],
        });
        // JSON is YAML, which is what Prometheus reads.
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config.to_string()).expect("write the Prometheus config");
        let address = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the Prometheus log");
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self { child, address }
    }

    /// The result vector of an instant query: each sample's labels and value.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = crate::http_get(&self.address, &path).map_err(|e| format!("query {expr}: {e}"))?;
        if status != 200 {
            return Err(format!("query {expr}: HTTP {status}: {body}"));
        }
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("query {expr}: {e}"))?;
        let samples = answer["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("query {expr}: no result in {answer}"))?;
        Ok(samples
            .iter()
            .map(|s| {
                let labels = s["metric"].as_object().cloned().unwrap_or_default();
                let value = s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect())
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
