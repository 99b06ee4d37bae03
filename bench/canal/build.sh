#!/usr/bin/env bash
# Builds the canal peer of make bench into target/bench-bin/canal and prints that directory (last stdout line):
# lib/ holds canal's server and client jars from Maven Central (versions pinned in pom.xml), and
# canal-bench-consumer.jar our launcher and consumer. Skipped when nothing changed since the last build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
out="$(cd "$here/../.." && pwd -P)/target/bench-bin/canal"
stamp="$out/.built"
if [ -f "$stamp" ] && [ -f "$out/canal-bench-consumer.jar" ] && [ -d "$out/lib" ] \
    && [ -z "$(find "$here/pom.xml" "$here/src" -newer "$stamp" -print -quit)" ]; then
    echo "$out"
    exit 0
fi
MVN=${MVN:-mvn}
rm -rf "$out/lib"
(cd "$here" && "$MVN" -q -B -Dstyle.color=never package) >&2
touch "$stamp"
echo "$out"
