#!/usr/bin/env python3
"""Offline `helm lint --strict` + `helm template` for a chart, with no helm binary.

Usage: render_chart.py CHART_DIR VALUES_FILE|- OUT_FILE

Runs in the venv made by chart_venv.sh (helm-python-sdk bundles the Helm v4 Go SDK).
VALUES_FILE is merged over the chart's values.yaml as `helm -f` does; `-` renders with the
chart's defaults alone. The release is `canal-operator` in namespace `canal-system`.

1. Lints the chart strictly with those values (warnings fail, as `helm lint --strict`).
2. Renders it; Helm validates the merged values against values.schema.json here too.
3. Checks that NOTES.txt renders (not empty), then writes every rendered manifest, sorted in
   Helm's install order, as one multi-document YAML stream to OUT_FILE.

Exit codes: 0 ok, 1 lint findings, 2 schema/values error, 3 render error, 64 usage.
Findings and errors go to stderr.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import helm_python as helm
import yaml

RELEASE = "canal-operator"
NAMESPACE = "canal-system"
# Lint against the oldest Kubernetes the operator supports (k8s-openapi's `earliest`).
KUBE_VERSION = "v1.33.0"
# Severity of lint messages: 0 unknown, 1 info, 2 warning, 3 error. --strict fails on warnings.
WARNING = 2
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
# Helm's releaseutil.InstallOrder, shortened to the kinds a chart like this one can hold.
INSTALL_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
    "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
    "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]
# How Helm splits a template into documents (releaseutil.SplitManifests).
DOC_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


def fail(code: int, message: str) -> None:
    print(f"render_chart.py: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        fail(64, "usage: render_chart.py CHART_DIR VALUES_FILE|- OUT_FILE")
    chart_dir, values_file, out_file = argv[1], argv[2], Path(argv[3])

    values: dict = {}
    if values_file != "-":
        try:
            # Helm's own YAML reader (sigs.k8s.io/yaml), so numbers and strings type as `helm -f` reads them.
            values = helm.values_from_yaml(Path(values_file).read_text())
        except helm.HelmValuesError as e:
            fail(2, f"{values_file}: {e}")

    report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION)
    failing = [m for m in report["messages"] if m["severity"] >= WARNING]
    for m in report["messages"]:
        print(f"lint [{SEVERITY.get(m['severity'], m['severity'])}] {m['path']}: {m['error'].strip()}",
              file=sys.stderr)
    if failing or report["errors"]:
        fail(1, f"{chart_dir}: helm lint --strict: {len(failing)} finding(s) at warning or above")

    try:
        with helm.Chart.load(chart_dir) as chart:
            rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmValuesError as e:
        fail(2, f"values rejected: {e}")
    except helm.HelmError as e:
        fail(3, f"render failed ({type(e).__name__}): {e}")

    docs = []
    notes = None
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        if not path.endswith((".yaml", ".yml")) or path.split("/")[-1].startswith("_"):
            continue
        for doc in DOC_SEPARATOR.split(text):
            try:
                obj = yaml.safe_load(doc)
            except yaml.YAMLError as e:
                fail(3, f"{path} rendered invalid YAML: {e}\n{doc}")
            if obj is None:  # empty or comments only, as Helm skips it
                continue
            if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
                fail(3, f"{path} rendered a document that is no Kubernetes object:\n{doc}")
            kind = obj["kind"]
            order = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
            name = (obj.get("metadata") or {}).get("name", "")
            docs.append((order, kind, name, path, doc.strip("\n")))

    if notes is None or not notes.strip():
        fail(3, "templates/NOTES.txt did not render any text")
    if not docs:
        fail(3, "the chart rendered no manifest")

    docs.sort()
    out = "".join(f"---\n# Source: {path}\n{doc}\n" for _, _, _, path, doc in docs)
    out_file.write_text(out)
    print(f"render_chart.py: {len(docs)} manifests -> {out_file}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
