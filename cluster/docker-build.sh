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
