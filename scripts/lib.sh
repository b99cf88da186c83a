# Sourced by scripts/test.sh, tests/example/demo.sh and .ci/run: timed steps, and what
# building kiln needs on a fresh Debian 12 machine (a C compiler for the bundled C libraries,
# rustup and the toolchain rust-toolchain.toml pins). Run as root.

# `step NAME`: ends the previous step (printing its time) and starts NAME; `step` alone ends
# the last one. Times are wall-clock seconds.
_step_name="" _step_start=0
step() {
  local now=$SECONDS
  if [ -n "$_step_name" ]; then
    printf '=== %-38s %5ss  (total %ss)\n' "$_step_name done" "$((now - _step_start))" "$now"
  fi
  _step_name="$*" _step_start=$now
  [ -z "$*" ] || printf '\n=== %s\n' "$*"
}

apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A C toolchain (aws-lc, zstd and xz are compiled from their bundled sources), curl for
# rustup, git.
ensure_build_tools() {
  apt_install build-essential curl ca-certificates git
}

# rustup (installed without a default toolchain when missing), then the toolchain,
# components and wasm32-wasip2 target that rust-toolchain.toml names.
ensure_toolchain() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v rustup >/dev/null; then
    # the installer must be run under the name rustup-init: rustup picks its role from it
    local dir
    dir=$(mktemp -d)
    curl --proto '=https' --tlsv1.2 -sSf -o "$dir/rustup-init" \
      "https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
    chmod +x "$dir/rustup-init"
    "$dir/rustup-init" -y --profile minimal --default-toolchain none --no-modify-path
    rm -rf "$dir"
  fi
  rustup toolchain install  # reads rust-toolchain.toml in the working directory
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
  cargo --version
}
