# Sourced by scripts/demo and scripts/test: create or refresh .venv, then activate it.
# The install is redone only when pyproject.toml or the extras asked for change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.genpt-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16) ${extras:-core}"
if ! grep -qxF -- "$want" "$stamp" 2>/dev/null; then
    # torch is pinned to the CPU build that this machine keeps on disk; never an open range.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root${extras:+[$extras]}"
    echo "$want" >> "$stamp"
    # The test extras include everything the core needs.
    [ -z "$extras" ] || echo "${want% *} core" >> "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
