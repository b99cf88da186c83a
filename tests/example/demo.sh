#!/usr/bin/env bash
# Builds the example image end to end on a fresh Debian machine, as root:
#   1. starts a private registry (Debian's docker-registry) on a free loopback port,
#   2. builds a busybox base image with kiln itself (FROM scratch + busybox-static) and pushes it,
#   3. builds tests/example/hello (two stages, RUN, COPY --from, USER) on that base, pushes it
#      and also writes it as an OCI layout to out/hello,
#   4. shows what skopeo (a tool kiln did not write) sees.
# On a machine without Rust it first installs a C compiler and rustup, and rustup installs the
# toolchain rust-toolchain.toml pins; the cold release build then takes 15-20 minutes on 2
# cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
step "packages (apt)"
ensure_build_tools
apt_install docker-registry skopeo busybox-static curl python3
step "toolchain (rustup, rust-toolchain.toml)"
ensure_toolchain
step "build (cargo build --release)"
cargo build --release  # a no-op when target/release/kiln is up to date
step "example"

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
trap 'kill $reg_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.2; done
reg=127.0.0.1:$port

# the base image, built by kiln from Debian's busybox-static
mkdir -p "$work/base/rootfs/bin" "$work/base/rootfs/etc" "$work/base/rootfs/tmp"
cp "$(command -v busybox)" "$work/base/rootfs/bin/busybox"
for a in $("$work/base/rootfs/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$work/base/rootfs/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$work/base/rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$work/base/rootfs/etc/group"
chmod 1777 "$work/base/rootfs/tmp"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/sh"]\n' > "$work/base/Dockerfile"
target/release/kiln build --context "$work/base" --destination "$reg/busybox:latest" --kiln-dir "$work/kiln"

# the example, on that base
rm -rf out/hello
target/release/kiln build --context tests/example/hello --build-arg "BASE=$reg/busybox:latest" \
  --destination "$reg/hello:1" --oci-layout-path out/hello --digest-file out/hello.digest --kiln-dir "$work/kiln"

echo "--- skopeo inspect docker://$reg/hello:1"
skopeo inspect --tls-verify=false "docker://$reg/hello:1" | head -20
echo "--- pushed digest $(cat out/hello.digest); OCI layout in out/hello:"
cat out/hello/index.json; echo
step
