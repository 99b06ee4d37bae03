#!/usr/bin/env bash
# Creates e2e/.chart-venv with helm-python-sdk and kubernetes-validate (once, redone when
# chart-requirements.txt changes) and prints the path of its python. Separate from e2e/.venv
# (venv.sh) so the canal-python environment stays untouched.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
venv="$here/../.chart-venv"
stamp="$venv/.requirements"
if ! cmp -s "$here/chart-requirements.txt" "$stamp" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    # Keep the ~390 MB venv out of git even where no .gitignore lists it (as Python 3.13's venv does itself).
    printf '*\n' >"$venv/.gitignore"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/chart-requirements.txt" >&2
    cp "$here/chart-requirements.txt" "$stamp"
fi
echo "$venv/bin/python"
