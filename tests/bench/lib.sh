# Shared by the benchmark scripts (sourced, not run): checks for tools, a scratch dir with
# cleanup, a private docker-registry on a free loopback port and the busybox base image
# (the same content as the test fixture), built with umoci from Debian's busybox-static.
# After `bench_setup`: $work, $host (registry host:port), $base (busybox reference), $kiln.

need() { # need BINARY DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || { echo "missing $1: apt-get install $2" >&2; exit 1; }
}

bench_setup() { # bench_setup [PARENT_DIR_FOR_SCRATCH] (default /tmp)
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  kiln=${KILN_BIN:-$root/target/release/kiln}
  need docker-registry docker-registry
  need skopeo skopeo
  need umoci umoci
  need busybox busybox-static
  need /usr/bin/time time
  need python3 python3
  need curl curl
  need jq jq
  [ -x "$kiln" ] || { echo "build kiln first: cargo build --release (no $kiln)" >&2; exit 1; }
  bench_registry "${1:-/tmp}"
  bench_busybox_base
}

# bench_registry PARENT_DIR: $work (removed on exit) and a private registry at $host.
bench_registry() {
  work=$(mktemp -d "$1/kiln-bench-XXXXXX")
  reg_pid=
  trap bench_cleanup EXIT

  local port
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
}

# bench_busybox_base: $base, the busybox image pushed to $host.
bench_busybox_base() {
  base=$host/bench/busybox:latest
  umoci init --layout "$work/base"
  umoci new --image "$work/base:latest"
  umoci unpack --image "$work/base:latest" "$work/bundle" >/dev/null
  local fs=$work/bundle/rootfs
  mkdir -p "$fs/bin" "$fs/etc" "$fs/tmp" "$fs/root"
  cp "$(command -v busybox)" "$fs/bin/busybox"
  local applet
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
}

bench_cleanup() {
  if [ -n "${reg_pid:-}" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "${work:?}"; fi
}

# timed LABEL LOG -- COMMAND...: runs COMMAND under /usr/bin/time, output to LOG; prints
# "seconds peak_rss_kb"; fails loudly when COMMAND fails.
timed() {
  local label=$1 log=$2; shift 3
  local status=0
  /usr/bin/time -f '%e %M' -o "$work/$label.time" "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "$label failed (exit $status):" >&2
    tail -n 30 "$log" >&2
    exit "$status"
  fi
  cat "$work/$label.time"
}
