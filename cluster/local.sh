#!/usr/bin/env bash
# A local three-node Ferrite cluster on 127.0.0.1:7001-7003 (Raft ports 17001-17003).
#
#   cluster/local.sh start    build (release) and start the three nodes, wait for a leader
#   cluster/local.sh stop     stop them (SIGTERM)
#   cluster/local.sh status   which nodes run, and who leads
#   cluster/local.sh clean    stop and delete their data (cluster/.local)
#
# Node configurations: cluster/node{1,2,3}.toml. Logs: cluster/.local/node*.log. The nodes
# share a cluster secret: $FERRITE_CLUSTER_SECRET if set, else one made on the first start
# and kept in cluster/.local/secret.
set -euo pipefail
cd "$(dirname "$0")/.."
state=cluster/.local
binary=${FERRITE_BINARY:-target/release/ferrite}

running() { [ -f "$state/node$1.pid" ] && kill -0 "$(cat "$state/node$1.pid")" 2>/dev/null; }

leader() {
  for i in 1 2 3; do
    if running "$i"; then
      redis-cli -p "700$i" INFO cluster 2>/dev/null | tr -d '\r' | sed -n 's/^raft_leader_id://p' && return
    fi
  done
}

case "${1:-}" in
  start)
    if [ -z "${FERRITE_BINARY:-}" ]; then cargo build --release --bin ferrite; fi
    mkdir -p "$state"
    if [ -z "${FERRITE_CLUSTER_SECRET:-}" ]; then
      if [ ! -s "$state/secret" ]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/secret")
      fi
      FERRITE_CLUSTER_SECRET=$(cat "$state/secret")
      export FERRITE_CLUSTER_SECRET
    fi
    for i in 1 2 3; do
      if running "$i"; then echo "node $i already running"; continue; fi
      "$binary" --config "cluster/node$i.toml" >"$state/node$i.log" 2>&1 &
      echo $! >"$state/node$i.pid"
    done
    for _ in $(seq 100); do
      l=$(leader || true)
      if [ -n "$l" ] && [ "$l" != "-" ]; then
        echo "cluster up: nodes on 127.0.0.1:7001-7003, leader is node $l"
        echo "try: redis-cli -c -p 7001"
        exit 0
      fi
      sleep 0.2
    done
    echo "no leader after 20 s; see $state/node*.log" >&2
    exit 1
    ;;
  stop)
    for i in 1 2 3; do
      if running "$i"; then kill "$(cat "$state/node$i.pid")"; fi
      rm -f "$state/node$i.pid"
    done
    echo "stopped"
    ;;
  status)
    for i in 1 2 3; do
      if running "$i"; then echo "node $i: running on 127.0.0.1:700$i"; else echo "node $i: stopped"; fi
    done
    echo "leader: $(leader || echo none)"
    ;;
  clean)
    "$0" stop
    rm -rf "$state"
    ;;
  *)
    sed -n '2,10p' "$0"
    exit 2
    ;;
esac
