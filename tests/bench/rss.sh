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

need() { # need BINARY DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || { echo "missing $1: apt-get install $2" >&2; exit 1; }
}
need docker-registry docker-registry
need skopeo skopeo
need umoci umoci
need busybox busybox-static
need /usr/bin/time time
need python3 python3
need curl curl
need jq jq
[ -x "$kiln" ] || { echo "build kiln first: cargo build --release (no $kiln)" >&2; exit 1; }

work=$(mktemp -d /tmp/kiln-bench-XXXXXX)
reg_pid=
cleanup() {
  if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A private registry on a free port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $work/registry}
  delete: {enabled: true}
http: {addr: $host}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -fs "http://$host/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://$host/v2/" >/dev/null || { echo "registry did not start:" >&2; cat "$work/registry.log" >&2; exit 1; }

# The busybox base (same content as the test fixture), built with umoci.
base=$host/bench/busybox:latest
umoci init --layout "$work/base"
umoci new --image "$work/base:latest"
umoci unpack --image "$work/base:latest" "$work/bundle" >/dev/null
fs=$work/bundle/rootfs
mkdir -p "$fs/bin" "$fs/etc" "$fs/tmp" "$fs/root"
cp "$(command -v busybox)" "$fs/bin/busybox"
for applet in $("$fs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$fs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$fs/etc/group"
chmod 1777 "$fs/tmp"
chmod 700 "$fs/root"
umoci repack --image "$work/base:latest" "$work/bundle" >/dev/null
umoci config --image "$work/base:latest" --os linux --architecture amd64 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd /bin/sh
skopeo copy -q --dest-tls-verify=false "oci:$work/base:latest" "docker://$base"

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
