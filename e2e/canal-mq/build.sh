#!/usr/bin/env bash
# Builds the canal MQ oracle into target/canal-mq and prints that directory (last stdout line): lib/ holds canal
# 1.1.7's MQ connector, protocol and client jars from Maven Central (versions pinned in pom.xml), and
# canal-mq-oracle.jar our glue (canalrs.mq.MqOracle, runnable with java -jar). Skipped when nothing changed since the
# last build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(cd "$here/../.." && pwd -P)"
exec bash "$root/e2e/maven-build.sh" "$here" "$root/target/canal-mq" canal-mq-oracle.jar
