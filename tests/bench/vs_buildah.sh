#!/usr/bin/env bash
# kiln against buildah on the same machine, shape by shape. Starts its own docker-registry on
# a free loopback port with a busybox base (Debian's busybox-static, packed with umoci), then
# builds each shape with
#     kiln build --no-push --oci-layout-path ...          (fresh --kiln-dir each time)
#     buildah bud --layers --isolation chroot             (STORAGE_DRIVER=vfs, fresh store)
# and prints a table: wall time of each, the ratio, kiln's peak RSS (/usr/bin/time -v), the
# image size (kiln: compressed layers in its OCI layout; buildah: `buildah images`), and the
# snapshot time kiln logged for the last RUN of the 100k shape. buildah keeps its layers
# uncompressed in its store (it compresses on push), so the comparison is kiln's whole job
# against the larger part of buildah's. Measures, never asserts a number.
# Env: KILN_BIN (default target/release/kiln), BENCH_SHAPES (default all five:
# files100k big1g small8 copy30k stages20k), BENCH_KILN_ARGS (extra kiln flags, e.g.
# "--compression=zstd").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
shapes=${BENCH_SHAPES:-files100k big1g small8 copy30k stages20k}
kiln_args=${BENCH_KILN_ARGS:-}

# shellcheck source=lib.sh
. "$here/lib.sh"
need buildah buildah
bench_setup /var/tmp

# The shapes: a Dockerfile and a context each.
files() { # files DIR DIRS FILES_PER_DIR: a shell loop of builtins only
  printf 'mkdir %s && cd %s && for d in $(seq %s); do mkdir $d; for f in $(seq %s); do echo $d.$f > $d/$f; done; done' "$1" "$1" "$2" "$3"
}
for shape in $shapes; do
  ctx=$work/ctx-$shape
  mkdir -p "$ctx"
  case $shape in
    files100k) printf 'FROM %s\nRUN %s\nRUN echo changed > /data/50/500\n' "$base" "$(files /data 100 1000)" ;;
    big1g) printf 'FROM %s\nRUN head -c 1000000000 /dev/urandom > /big\n' "$base" ;;
    small8)
      echo app >"$ctx/app.txt"
      printf 'FROM %s\nENV APP=/app\nRUN echo hi > /hello\nWORKDIR /app\nCOPY app.txt .\nLABEL org.example.shape=small8\nUSER nobody\nEXPOSE 8080\nCMD ["sh"]\n' "$base" ;;
    copy30k)
      # 30 dirs of 1,000 files of 10,000 bytes: half random, half text (~300 MB)
      python3 - "$ctx/tree" <<'PY'
import os, sys
top = sys.argv[1]
for d in range(30):
    os.makedirs(f"{top}/{d}")
    for f in range(1000):
        with open(f"{top}/{d}/{f}", "wb") as fh:
            fh.write(os.urandom(5000) + (f"{d}/{f} " * 1000).encode()[:5000])
PY
      printf 'FROM %s\nCOPY tree /tree\n' "$base" ;;
    stages20k)
      printf 'FROM %s AS a\nRUN %s\nFROM %s AS b\nRUN %s\nFROM %s\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n' \
        "$base" "$(files /a 20 1000)" "$base" "$(files /b 20 1000)" "$base" ;;
    *) echo "unknown shape $shape" >&2; exit 1 ;;
  esac >"$ctx/Dockerfile"
done

field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }
seconds() { # h:mm:ss.ss or m:ss.ss → seconds
  awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'
}
oci_size() { # total compressed bytes of the image in an OCI layout
  python3 - "$1" <<'PY'
import json, sys
top = sys.argv[1]
blob = lambda d: json.load(open(f"{top}/blobs/sha256/{d.split(':')[1]}"))
m = blob(json.load(open(f"{top}/index.json"))["manifests"][0]["digest"])
print(m["config"]["size"] + sum(l["size"] for l in m["layers"]))
PY
}

rows=()
snap_ms=-
for shape in $shapes; do
  ctx=$work/ctx-$shape
  echo "== $shape: kiln" >&2
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$work/kiln-$shape.time" "$kiln" build --dockerfile "$ctx/Dockerfile" \
    --context "$ctx" --no-push --oci-layout-path "$work/out-$shape" --kiln-dir "$work/kiln-$shape" \
    --log-format json $kiln_args >/dev/null 2>"$work/kiln-$shape.log" \
    || { echo "kiln failed on $shape:" >&2; tail -n 20 "$work/kiln-$shape.log" >&2; exit 1; }
  kiln_s=$(field "$work/kiln-$shape.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)' | seconds)
  rss_mb=$(field "$work/kiln-$shape.time" 'Maximum resident set size (kbytes)' | awk '{printf "%.0f", $1/1024}')
  kiln_mb=$(oci_size "$work/out-$shape" | awk '{printf "%.1f", $1/1e6}')
  if [ "$shape" = files100k ]; then
    snap_ms=$(python3 - "$work/kiln-$shape.log" <<'PY'
import json, sys
walks = []
for line in open(sys.argv[1]):
    try:
        f = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if f.get("message", "").startswith("snapshot ("):
        walks.append(f["ms"])
print(f"{walks[-1]:.1f}" if walks else "-")
PY
)
  fi
  rm -rf "$work/kiln-$shape" "$work/out-$shape"

  echo "== $shape: buildah" >&2
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  bstore="--root $work/bstore-$shape --runroot $work/brun-$shape --storage-driver vfs"
  # shellcheck disable=SC2086
  STORAGE_DRIVER=vfs /usr/bin/time -v -o "$work/buildah-$shape.time" buildah $bstore bud --layers \
    --isolation chroot --tls-verify=false -q -f "$ctx/Dockerfile" -t "bench-$shape" "$ctx" \
    >"$work/buildah-$shape.log" 2>&1 \
    || { echo "buildah failed on $shape:" >&2; tail -n 20 "$work/buildah-$shape.log" >&2; exit 1; }
  buildah_s=$(field "$work/buildah-$shape.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)' | seconds)
  # shellcheck disable=SC2086
  buildah_size=$(buildah $bstore images --format '{{.Size}}' "bench-$shape" | head -n1)
  # shellcheck disable=SC2086
  buildah $bstore rmi -a -f >/dev/null 2>&1 || true
  rm -rf "$work/bstore-$shape" "$work/brun-$shape"

  ratio=$(awk -v k="$kiln_s" -v b="$buildah_s" 'BEGIN{printf "%.2f", k/b}')
  rows+=("$(printf '| %-10s | %8s | %10s | %5s | %13s | %11s | %15s |' \
    "$shape" "$kiln_s" "$buildah_s" "$ratio" "$rss_mb" "$kiln_mb" "$buildah_size")")
done

echo
printf '| %-10s | %8s | %10s | %5s | %13s | %11s | %15s |\n' shape "kiln (s)" "buildah (s)" ratio \
  "kiln RSS (MB)" "kiln (MB)" "buildah size"
printf '|------------|----------|------------|-------|---------------|-------------|-----------------|\n'
printf '%s\n' "${rows[@]}"
echo
echo "snapshot after the one-file change in the 100k-file root: $snap_ms ms"
