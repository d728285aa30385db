#!/usr/bin/env bash
# The docker-compose cluster, end to end: build the image, start three nodes, write through
# redis-cli -c, stop the leader's container, keep writing, start it again, and check that
# every acknowledged write is there (on the leader, and on the returning node's own state).
# Then chaos: five clients run the simulation's workload against the containers while they
# are paused, killed, disconnected from their network and restarted, and the recorded history
# goes through the simulation's linearizability checker (simulation/src/bin/chaos.rs).
# FERRITE_CHAOS_SECONDS (default 40) and FERRITE_CHAOS_SEED (default: the time) set the run.
# Tears everything down, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}
export COMPOSE_PROJECT_NAME=ferrite-test
# A secret of this run's own, whatever .env holds.
FERRITE_CLUSTER_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export FERRITE_CLUSTER_SECRET
ips=(10.89.0.11 10.89.0.12 10.89.0.13)

cluster/docker-build.sh
trap 'compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
compose down -v --remove-orphans >/dev/null 2>&1 || true
compose up -d

# The leader's node number as node $1 sees it (empty while there is none).
leader_seen_by() {
  redis-cli -h "${ips[$1-1]}" INFO cluster 2>/dev/null | tr -d '\r' | sed -n 's/^raft_leader_id:\([0-9]\+\)$/\1/p'
}
# Waits until node $1 sees a leader that is one of the nodes given after it; prints it.
wait_for_leader() {
  local via=$1
  shift
  for _ in $(seq 150); do
    l=$(leader_seen_by "$via" || true)
    for n in "$@"; do
      if [ "$l" = "$n" ]; then echo "$l"; return 0; fi
    done
    sleep 0.2
  done
  echo "node $via sees no leader among: $*" >&2
  return 1
}

# SET through a node with redirects followed; retried until acknowledged (an error may or
# may not have applied the write; only acknowledged writes are checked).
acked=()
write() {
  local key=$1 via=$2
  for _ in $(seq 60); do
    if [ "$(redis-cli -c -h "$via" SET "$key" "v-$key" 2>/dev/null)" = "OK" ]; then
      acked+=("$key")
      return 0
    fi
    sleep 0.25
  done
  echo "write $key never acknowledged" >&2
  return 1
}

leader=$(wait_for_leader 1 1 2 3)
echo "leader: node $leader"
for i in $(seq 1 100); do write "before:$i" "${ips[0]}"; done

echo "stopping node $leader (the leader)"
compose stop "node$leader"
others=()
for n in 1 2 3; do [ "$n" != "$leader" ] && others+=("$n"); done
new=$(wait_for_leader "${others[0]}" "${others[@]}")
echo "new leader: node $new"
for i in $(seq 1 100); do write "during:$i" "${ips[${others[0]}-1]}"; done

echo "starting node $leader again"
compose start "node$leader"
wait_for_leader "$leader" "${others[@]}" >/dev/null

missing=0
for key in "${acked[@]}"; do
  got=$(redis-cli -c -h "${ips[${others[0]}-1]}" GET "$key")
  if [ "$got" != "v-$key" ]; then
    echo "acknowledged write lost: $key -> '$got'" >&2
    missing=$((missing + 1))
  fi
done
# The returning node catches up from the log: its own keyspace holds every key too.
caught_up=no
for _ in $(seq 100); do
  if [ "$(redis-cli -h "${ips[$leader-1]}" DBSIZE)" = "${#acked[@]}" ]; then caught_up=yes; break; fi
  sleep 0.2
done
echo "acknowledged writes: ${#acked[@]}, lost: $missing, returning node caught up: $caught_up"
[ "$missing" = 0 ] && [ "$caught_up" = yes ] || exit 1

seconds=${FERRITE_CHAOS_SECONDS:-40}
seed=${FERRITE_CHAOS_SEED:-$(date +%s)}
echo "chaos: ${seconds} s, seed $seed (FERRITE_CHAOS_SEED=$seed makes the same fault and operation choices)"
(cd simulation && cargo build --release --locked --bin chaos -q)
nodes=()
for n in 1 2 3; do nodes+=("$(compose ps -q "node$n")=${ips[$n-1]}"); done
simulation/target/release/chaos "$seconds" "$seed" "${COMPOSE_PROJECT_NAME}_ferrite" "${nodes[@]}"
