"""Parses an OpenMetrics exposition from stdin with Prometheus's own Python parser and prints its samples as JSON.

Used by instance/tests/metrics.rs: a parse error (exit 1, message on stderr) means Prometheus would reject the scrape.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.append(
                    {
                        "family": family.name,
                        "type": family.type,
                        "name": sample.name,
                        "labels": sample.labels,
                        "value": sample.value,
                    }
                )
    except ValueError as e:
        print(f"invalid OpenMetrics exposition: {e}", file=sys.stderr)
        return 1
    json.dump(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
