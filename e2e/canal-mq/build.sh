#!/usr/bin/env bash
# Builds the canal MQ oracle into target/canal-mq and prints that directory (last stdout line): lib/ holds canal
# 1.1.7's MQ connector, protocol and client jars from Maven Central (versions pinned in pom.xml), and
# canal-mq-oracle.jar our glue (canalrs.mq.MqOracle, runnable with java -jar). Skipped when nothing changed since the
# last build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
out="$(cd "$here/../.." && pwd -P)/target/canal-mq"
stamp="$out/.built"
if [ -f "$stamp" ] && [ -f "$out/canal-mq-oracle.jar" ] && [ -d "$out/lib" ] \
    && [ -z "$(find "$here/pom.xml" "$here/src" -newer "$stamp" -print -quit)" ]; then
    echo "$out"
    exit 0
fi
MVN=${MVN:-mvn}
rm -rf "$out/lib"
(cd "$here" && "$MVN" -q -B -Dstyle.color=never package) >&2
touch "$stamp"
echo "$out"
