#!/usr/bin/env bash
# The peers' environment for bench/: litgpt pins an older huggingface_hub than transformers 5 needs,
# so it gets its own virtualenv, .venv-litgpt, with the same CPU build of torch as .venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-litgpt"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0 litgpt==0.5.13
echo "litgpt ready in $venv (bench/train_throughput.py finds it there)"
