#!/usr/bin/env bash
# Makes sure a Java runtime is on PATH for pyspark (the Spark tests and
# examples/spark_score.py): installs the OS's headless JRE when none is there.
set -euo pipefail
if command -v java >/dev/null 2>&1 && java -version >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  echo "pipe: installing a headless Java runtime for pyspark (apt-get)" >&2
  $SUDO apt-get update -qq >&2
  # Spark 4 needs Java 17 or newer; take the distribution's default if it has no 17.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >&2 \
    || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jre-headless >&2
elif command -v dnf >/dev/null 2>&1; then
  echo "pipe: installing a headless Java runtime for pyspark (dnf)" >&2
  $SUDO dnf install -y -q java-17-openjdk-headless >&2
else
  echo "pipe: pyspark needs Java 17+ and no package manager known here can install it; install a JRE and rerun" >&2
  exit 1
fi
java -version >&2
