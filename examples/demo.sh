#!/usr/bin/env bash
# make demo: a local MariaDB, one standalone canal-instance on examples/standalone.yaml, a few sample transactions,
# and the tail command printing the changes. Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$root"
work="$root/.demo"
bin="$root/target/debug/canal-instance"
port="${DEMO_CANAL_PORT:-11111}"

pids=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash e2e/services/mariadb.sh stop --rm "$work/mariadb" >/dev/null 2>&1 || true
    echo "demo: stopped (instance log: $work/instance.log)"
}
trap cleanup INT TERM EXIT

rm -rf "$work/mariadb" "$work/data"
mkdir -p "$work"
echo "demo: starting MariaDB"
env_file=$(bash e2e/services/mariadb.sh start --owner-pid $$ "$work/mariadb" | tail -n 1)
# shellcheck disable=SC1090
. "$env_file"
sql() { mariadb --default-character-set=utf8mb4 -h127.0.0.1 -P"$MYSQL_PORT" -u"$MYSQL_ADMIN_USER" -p"$MYSQL_ADMIN_PASSWORD" -e "$1"; }

# The example config, pointed at the demo's MariaDB and data directory.
sed -e "s|address: 127.0.0.1:3306|address: 127.0.0.1:$MYSQL_PORT|" \
    -e "s|port: 11111|port: $port|" \
    -e "s|^dataDir: data|dataDir: $work/data|" \
    examples/standalone.yaml > "$work/config.yaml"

echo "demo: starting canal-instance on :$port (log: $work/instance.log)"
CANAL_SOURCE_PASSWORD="$MYSQL_REPL_PASSWORD" "$bin" --config "$work/config.yaml" >"$work/instance.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q "binlog dump started" "$work/instance.log" && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$work/instance.log"; exit 1; fi
    sleep 0.1
done

echo "demo: tailing destination 'example' (one JSON line per change)"
"$bin" tail --server "127.0.0.1:$port" --destination example &
pids+=($!)

sql "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, item VARCHAR(40), price DECIMAL(8,2), created TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3))"
items=("green tea" "coffee ☕" "croissant" "bagel" "orange juice")
i=0
while true; do
    item=${items[$((i % ${#items[@]}))]}
    sql "BEGIN; INSERT INTO shop.orders (item, price) VALUES ('$item', $((i % 7 + 1)).50); UPDATE shop.orders SET price = price + 1 WHERE id = LAST_INSERT_ID(); COMMIT;"
    if (( i % 3 == 2 )); then sql "DELETE FROM shop.orders ORDER BY id LIMIT 1"; fi
    i=$((i + 1))
    sleep 2
done
