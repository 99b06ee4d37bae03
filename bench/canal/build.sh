#!/usr/bin/env bash
# Builds the canal peer of make bench into target/bench-bin/canal and prints that directory (last stdout line):
# lib/ holds canal's server and client jars from Maven Central (versions pinned in pom.xml), and
# canal-bench-consumer.jar our launcher and consumer. Skipped when nothing changed since the last build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/../.." && pwd -P)"
exec bash "$root/e2e/maven-build.sh" "$here" "$root/target/bench-bin/canal" canal-bench-consumer.jar
