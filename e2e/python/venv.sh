#!/usr/bin/env bash
# Creates a venv under e2e/ from a requirements file (once, redone when the file changes) and prints the path of
# its python.
#
#   venv.sh [REQUIREMENTS VENV_NAME]   default: requirements.txt into e2e/.venv (canal-python 0.4, protobuf 3.20.x)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
requirements="$here/${1:-requirements.txt}"
venv="$here/../${2:-.venv}"
stamp="$venv/.requirements"
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    # Keep the venv out of git even where no .gitignore lists it.
    printf '*\n' >"$venv/.gitignore"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
