#!/usr/bin/env bash
# The layer cache: a clean build of a ten-step Dockerfile against rebuilds with no change
# and a warm registry cache (--cache --cache-copy-layers, cache repo in the same local
# registry), once with kiln's blob store kept and once from an empty kiln dir (every
# cached layer fetched from the registry). Prints a table; measures, never asserts.
# Env: KILN_BIN (default target/release/kiln).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bench_setup

ctx=$work/ctx
mkdir -p "$ctx/src"
for i in $(seq 2000); do head -c 4096 /dev/urandom >"$ctx/src/f$i"; done
cat >"$ctx/Dockerfile" <<DF
FROM $base
ENV APP=/app
WORKDIR /app
COPY src/ /app/src/
RUN i=0; while [ \$i -lt 3000 ]; do echo \$i > /app/gen-\$i; i=\$((i+1)); done
RUN head -c 100000000 /dev/urandom > /app/blob
LABEL stage=bench
RUN sha256sum /app/blob > /app/blob.sha
RUN tar -cf /app/src.tar -C /app src
EXPOSE 8080
USER nobody
DF
dest=$host/bench/cached:latest
build() { # build LABEL KILN_DIR
  timed "$1" "$work/$1.log" -- "$kiln" build --dockerfile "$ctx/Dockerfile" --context "$ctx" \
    --destination "$dest" --kiln-dir "$2" --cache --cache-copy-layers --log-format text
}
echo "clean build, then two rebuilds with no change" >&2
read -r clean_s clean_kb < <(build clean "$work/kiln")
read -r warm_s warm_kb < <(build warm "$work/kiln")
read -r fresh_s fresh_kb < <(build fresh "$work/kiln-fresh")
hits() { grep -c 'cache hit' "$work/$1.log" || true; }
misses() { grep -c 'cache miss' "$work/$1.log" || true; }

row() { printf '| %-44s | %8s | %6s | %6s | %8s |\n' "$@"; }
row build "wall (s)" hits misses "speedup"
row "$(printf -- '-%.0s' $(seq 44))" -------- ------ ------ --------
row "clean (empty cache)" "$clean_s" "$(hits clean)" "$(misses clean)" "1.0x"
row "no change, warm cache, kiln dir kept" "$warm_s" "$(hits warm)" "$(misses warm)" \
  "$(awk -v a="$clean_s" -v b="$warm_s" 'BEGIN{printf "%.1fx", a/b}')"
row "no change, warm cache, empty kiln dir" "$fresh_s" "$(hits fresh)" "$(misses fresh)" \
  "$(awk -v a="$clean_s" -v b="$fresh_s" 'BEGIN{printf "%.1fx", a/b}')"
echo
echo "peak RSS (MB): clean $((clean_kb / 1024)), warm $((warm_kb / 1024)), empty kiln dir $((fresh_kb / 1024))"
