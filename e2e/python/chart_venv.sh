#!/usr/bin/env bash
# Creates e2e/.chart-venv with kubernetes-validate and prints the path of its python.
# Separate from e2e/.venv so the canal-python environment stays untouched.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/venv.sh" chart-requirements.txt .chart-venv
