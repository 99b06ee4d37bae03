"""Draws make bench's throughput chart: rows/s per workload and consumer, from results.json.

Usage: chart.py RESULTS_JSON OUT_PNG
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    results_path, out = sys.argv[1:3]
    with open(results_path) as f:
        report = json.load(f)
    workloads = [w["name"] for w in report["workloads"]]
    consumers = []
    for m in report["results"]:
        if m["consumer"] not in consumers:
            consumers.append(m["consumer"])
    width = 0.8 / max(len(consumers), 1)
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, consumer in enumerate(consumers):
        values = []
        for w in workloads:
            m = next((m for m in report["results"] if m["workload"] == w and m["consumer"] == consumer), None)
            ok = m is not None and not m.get("error") and m["seconds"] > 0
            values.append(m["rows"] / m["seconds"] if ok else 0)
        ax.bar([x + i * width for x in range(len(workloads))], values, width, label=consumer)
    ax.set_xticks([x + width * (len(consumers) - 1) / 2 for x in range(len(workloads))])
    ax.set_xticklabels(workloads)
    # Peers differ by orders of magnitude: a log scale keeps every bar readable.
    ax.set_yscale("log")
    ax.set_ylabel("rows/s, log scale (more is better)")
    ax.set_title("canal-rs and peers on the same binlog: " + report["machine"], fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
