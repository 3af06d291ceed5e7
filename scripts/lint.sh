#!/usr/bin/env bash
# Lint, format check and type check, as CI runs them: scripts/lint.sh [--fix]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${CODESERVE_VENV:-$repo/.venv}
cd "$repo"
if [ "${1:-}" = --fix ]; then
  "$venv/bin/ruff" check --fix .
  "$venv/bin/ruff" format .
fi
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .

# mypy cannot follow pyproject's package-dir mapping, so it checks a tree of links laid out as
# the installed package is: codeserve/ with server/, client/ and loadtest/ linked into it.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/codeserve"
for entry in "$repo"/codeserve/*; do
  case "$(basename "$entry")" in __pycache__|*.so) continue ;; esac
  ln -s "$entry" "$tree/codeserve/"
done
for part in server client loadtest; do ln -s "$repo/$part" "$tree/codeserve/$part"; done
# Errors name the linked paths; print them as the repository's own.
(cd "$tree" && "$venv/bin/mypy" --config-file "$repo/pyproject.toml" -p codeserve) \
  | sed -e "s#^codeserve/server/#server/#" -e "s#^codeserve/client/#client/#" \
        -e "s#^codeserve/loadtest/#loadtest/#"
exit "${PIPESTATUS[0]}"
