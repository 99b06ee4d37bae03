#!/usr/bin/env bash
# maven-build.sh PROJECT_DIR OUT_DIR JAR: builds the Maven project in PROJECT_DIR (whose pom.xml puts JAR and lib/
# under OUT_DIR) and prints OUT_DIR as the last stdout line. Skipped when OUT_DIR holds JAR and lib/ and nothing in
# the pom or the sources changed since the last build. The projects that run canal's own code for tests and the
# bench (bench/canal, e2e/canal-mq) share it.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: maven-build.sh PROJECT_DIR OUT_DIR JAR" >&2; exit 2; }
project=$1 out=$2 jar=$3
stamp="$out/.built"
if [ -f "$stamp" ] && [ -f "$out/$jar" ] && [ -d "$out/lib" ] \
    && [ -z "$(find "$project/pom.xml" "$project/src" -newer "$stamp" -print -quit)" ]; then
    echo "$out"
    exit 0
fi
MVN=${MVN:-mvn}
rm -rf "${out:?}/lib"
(cd "$project" && "$MVN" -q -B -Dstyle.color=never package) >&2
mkdir -p "$out"
touch "$stamp"
echo "$out"
