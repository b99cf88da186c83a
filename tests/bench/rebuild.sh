#!/usr/bin/env bash
# Rebuilds as a CI pod does them: every kiln build in a fresh --kiln-dir, pushed to a
# loopback registry that also holds the layer cache (--cache --cache-copy-layers,
# --cache-repo in the same registry). The Dockerfile: the Debian test base, a RUN making
# 3,000 files, a COPY, a RUN, an ENV, a RUN. Rows: the clean build, a rebuild with no change,
# a rebuild after one COPY source changed, the same for a Dockerfile whose COPY has no RUN
# after it, and buildah's warm `bud --layers` rebuild + push of
# the same Dockerfile (chroot isolation, vfs, its store kept between its builds). Prints a
# table; measures, never asserts.
# Env: KILN_BIN (default target/release/kiln); KILN_DEBIAN_LAYOUT, the Debian base as an OCI
# layout (default: the e2e tests' fixture, /var/tmp/kiln-fixtures/layouts/debian-bookworm-v1,
# made by any e2e test that uses the Debian base).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bench_setup
need buildah buildah

layout=${KILN_DEBIAN_LAYOUT:-${KILN_FIXTURE_CACHE:-/var/tmp/kiln-fixtures}/layouts/debian-bookworm-v1}
[ -f "$layout/index.json" ] || {
  echo "no Debian base layout at $layout: run an e2e test that uses it once, or set KILN_DEBIAN_LAYOUT" >&2
  exit 1
}
debian=$host/bench/debian:bookworm
skopeo copy -q --dest-tls-verify=false "oci:$layout:bookworm" "docker://$debian"

ctx=$work/ctx
mkdir -p "$ctx"
echo one >"$ctx/app.txt"
cat >"$ctx/Dockerfile" <<DF
FROM $debian
RUN mkdir /gen && for i in \$(seq 3000); do echo \$i > /gen/f\$i; done
COPY app.txt /app/app.txt
RUN cat /app/app.txt > /app/copy.txt
ENV MODE=bench
RUN echo \$MODE > /app/mode.txt
DF
dest=$host/bench/rebuild:latest
n=0
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
kiln_build() { # kiln_build LABEL: a fresh kiln dir each time
  n=$((n + 1))
  timed "$1" "$work/$1.log" -- "$kiln" build --dockerfile "$ctx/Dockerfile" --context "$ctx" \
    --destination "$dest" --kiln-dir "$work/kiln-$n" --cache --cache-copy-layers \
    --cache-repo "$host/bench/rebuild-cache" --log-format text
}
echo "kiln: clean build, a rebuild with no change, a rebuild after one COPY source changed" >&2
read -r clean_s _ < <(kiln_build clean)
# the no-change rebuild is the median of five, each in a fresh kiln dir (one run swings
# by tens of milliseconds); the first one's log is the row's
same_runs=()
for i in 1 2 3 4 5; do
  read -r s _ < <(kiln_build "same-$i")
  same_runs+=("$s")
done
cp "$work/same-1.log" "$work/same.log"
same_s=$(median "${same_runs[@]}")
echo two >"$ctx/app.txt"
read -r copy_s _ < <(kiln_build copy)
echo one >"$ctx/app.txt"

# the same start with nothing but file and metadata steps after the COPY: a changed source
# re-runs the COPY alone, and no layer before it is extracted (`pipeline/sparse`)
tail_ctx=$work/tail
mkdir -p "$tail_ctx"
echo one >"$tail_ctx/app.txt"
cat >"$tail_ctx/Dockerfile" <<DF
FROM $debian
RUN mkdir /gen && for i in \$(seq 3000); do echo \$i > /gen/f\$i; done
WORKDIR /app
COPY app.txt /app/app.txt
ENV MODE=bench
CMD ["cat", "/app/app.txt"]
DF
tail_build() { # tail_build LABEL
  n=$((n + 1))
  timed "$1" "$work/$1.log" -- "$kiln" build --dockerfile "$tail_ctx/Dockerfile" \
    --context "$tail_ctx" --destination "$host/bench/rebuild-tail:latest" \
    --kiln-dir "$work/kiln-$n" --cache --cache-copy-layers \
    --cache-repo "$host/bench/rebuild-cache" --log-format text
}
echo "kiln: the COPY-last Dockerfile, clean, then one COPY source changed" >&2
read -r _ _ < <(tail_build tail-clean)
echo two >"$tail_ctx/app.txt"
read -r tail_s _ < <(tail_build tail-copy)

echo "buildah: a warm bud --layers rebuild + push" >&2
bstore="--root $work/buildah/root --runroot $work/buildah/run"
buildah_build() { # buildah_build LABEL
  # shellcheck disable=SC2086
  timed "$1" "$work/$1.log" -- sh -c "STORAGE_DRIVER=vfs buildah $bstore bud --layers \
    --isolation chroot --tls-verify=false -t bench-rebuild -f '$ctx/Dockerfile' '$ctx' \
    && STORAGE_DRIVER=vfs buildah $bstore push --tls-verify=false bench-rebuild \
    docker://$host/bench/rebuild-buildah:latest"
}
read -r _ _ < <(buildah_build buildah-clean)
buildah_runs=()
for i in 1 2 3 4 5; do
  read -r s _ < <(buildah_build "buildah-warm-$i")
  buildah_runs+=("$s")
done
buildah_s=$(median "${buildah_runs[@]}")
STORAGE_DRIVER=vfs buildah $bstore rmi -a -f >/dev/null 2>&1 || true

count() { grep -c "$2" "$work/$1.log" || true; }
row() { printf '| %-50s | %8s | %6s | %6s | %9s |\n' "$@"; }
row build "wall (s)" hits misses extracted
row "$(printf -- '-%.0s' $(seq 50))" -------- ------ ------ ---------
for r in "clean:kiln, clean build (empty cache):$clean_s" \
  "same:kiln, no change, fresh kiln dir (median of 5):$same_s" \
  "copy:kiln, one COPY source changed, fresh kiln dir:$copy_s" \
  "tail-copy:kiln, COPY-last Dockerfile, its source changed:$tail_s"; do
  IFS=: read -r label text secs <<<"$r"
  row "$text" "$secs" "$(count "$label" 'cache hit')" "$(count "$label" 'cache miss')" \
    "$(count "$label" "the stage's root is needed")"
done
row "buildah bud --layers, warm, + push (median of 5)" "$buildah_s" - - -
echo
echo "kiln's no-change rebuild against buildah's warm rebuild: $(awk -v a="$same_s" -v b="$buildah_s" 'BEGIN{printf "%.2f", a/b}')x"
