#!/usr/bin/env bash
# Builds the static binary (x86_64-unknown-linux-musl) and the image ferrite:dev from it.
# Needs the musl target and musl-tools (wasmtime compiles a C helper with musl-gcc); both are
# installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y musl-tools; else sudo apt-get install -y musl-tools; fi
fi
cargo build --release --locked --target "$target" --bin ferrite
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "target/$target/release/ferrite" "$context/ferrite"
strip "$context/ferrite" 2>/dev/null || true
cp cluster/Dockerfile "$context/Dockerfile"
docker build -q -t ferrite:dev "$context"
echo "built image ferrite:dev"
# docker-compose.yml reads the cluster secret from .env when the environment has none.
if ! grep -qs '^FERRITE_CLUSTER_SECRET=' .env; then
  (umask 077 && echo "FERRITE_CLUSTER_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>.env)
  echo "wrote a cluster secret to .env"
fi
