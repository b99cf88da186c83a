#!/usr/bin/env bash
# Memory and time of a build that writes one big layer: kiln must stream it, so peak RSS
# stays far below the layer size. Starts its own docker-registry on a free loopback port,
# makes a busybox base with umoci from Debian's busybox-static, builds
#     FROM <busybox>
#     RUN head -c $BENCH_BYTES /dev/urandom > /big
# under /usr/bin/time -v and prints a table. Measures, never asserts a number; exits
# non-zero only when something fails. Env: KILN_BIN (default target/release/kiln),
# BENCH_BYTES (default 1000000000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
bytes=${BENCH_BYTES:-1000000000}

# shellcheck source=lib.sh
. "$here/lib.sh"
bench_setup /tmp

# The measured build.
mkdir -p "$work/ctx"
printf 'FROM %s\nRUN head -c %s /dev/urandom > /big\n' "$base" "$bytes" >"$work/Dockerfile"
dest=$host/bench/big:latest
echo "building $bytes random bytes into one layer with $kiln" >&2
status=0
/usr/bin/time -v -o "$work/time.txt" "$kiln" build --dockerfile "$work/Dockerfile" \
  --context "$work/ctx" --destination "$dest" --kiln-dir "$work/kiln" >"$work/kiln.log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  echo "kiln build failed (exit $status):" >&2
  tail -n 30 "$work/kiln.log" >&2
  exit "$status"
fi

field() { sed -n "s/^[[:space:]]*$1: //p" "$work/time.txt"; }
wall=$(field 'Elapsed (wall clock) time (h:mm:ss or m:ss)')
rss_kb=$(field 'Maximum resident set size (kbytes)')
user=$(field 'User time (seconds)')
sys=$(field 'System time (seconds)')
layer=$(skopeo inspect --raw --tls-verify=false "docker://$dest" | jq '.layers[-1].size')

printf '| %-24s | %-20s |\n' metric value
printf '|%s|%s|\n' "$(printf -- '-%.0s' $(seq 26))" "$(printf -- '-%.0s' $(seq 22))"
printf '| %-24s | %-20s |\n' "RUN output (bytes)" "$bytes"
printf '| %-24s | %-20s |\n' "wall time" "$wall"
printf '| %-24s | %-20s |\n' "cpu user / sys (s)" "$user / $sys"
printf '| %-24s | %-20s |\n' "peak RSS (MB)" "$(awk -v k="$rss_kb" 'BEGIN{printf "%.1f", k/1024}')"
printf '| %-24s | %-20s |\n' "layer size (MB, gzip)" "$(awk -v b="$layer" 'BEGIN{printf "%.1f", b/1048576}')"
