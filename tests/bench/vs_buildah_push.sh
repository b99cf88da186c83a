#!/usr/bin/env bash
# kiln against buildah as a CI pod sees them (issue 16's first table): every build starts
# from nothing (kiln: a fresh --kiln-dir; buildah: a fresh vfs store) and ends with the image
# pushed to a private docker-registry on a free loopback port, on the Debian test base
#     kiln build --destination ...                          (fresh --kiln-dir each time)
#     buildah bud --layers --isolation chroot && buildah push   (STORAGE_DRIVER=vfs)
# The shapes are vs_buildah.sh's five plus `fat`: FROM a base of the Debian root and 30,000
# generated files (~300 MB in one layer, pushed to the registry; both builders pull it
# fresh) and one small RUN. After the table, one line compares kiln's extraction of the fat
# base's layer (its own "layer extracted" log line) with `tar -xzf` of the same blob. The
# last column is how long kiln's scratch removal went on after kiln had exited (a detached
# `kiln remove-scratch`), waited for before buildah starts.
# One shape: BENCH_SHAPES=fat bash tests/bench/vs_buildah_push.sh
# The Debian root is the tests' fixture tarball when there is one (KILN_FIXTURE_DIR, default
# /var/tmp/kiln-fixtures/debian-bookworm-minbase.tar), else a fresh
# `debootstrap --variant=minbase bookworm`. Measures, never asserts a number.
# Env: KILN_BIN (default target/release/kiln), BENCH_SHAPES (default
# files100k big1g small8 copy30k stages20k fat), BENCH_KILN_ARGS (extra kiln flags).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
shapes=${BENCH_SHAPES:-files100k big1g small8 copy30k stages20k fat}
kiln_args=${BENCH_KILN_ARGS:-}
fixture=${KILN_FIXTURE_DIR:-/var/tmp/kiln-fixtures}/debian-bookworm-minbase.tar

# shellcheck source=lib.sh
. "$here/lib.sh"
need buildah buildah
need docker-registry docker-registry
need skopeo skopeo
need /usr/bin/time time
need python3 python3
need curl curl
[ -x "$kiln" ] || { echo "build kiln first: cargo build --release (no $kiln)" >&2; exit 1; }
bench_registry /var/tmp

# The Debian root as a tar (top-level names, numeric owners).
debian_tar=$fixture
if [ ! -f "$debian_tar" ]; then
  need debootstrap debootstrap
  echo "== debootstrap --variant=minbase bookworm" >&2
  debootstrap --variant=minbase bookworm "$work/debian" >"$work/debootstrap.log" 2>&1
  rm -rf "$work/debian/var/cache/apt/archives/"*.deb "$work/debian/var/lib/apt/lists/"* "$work/debian/dev/"*
  tar -C "$work/debian" --numeric-owner -cf "$work/debian.tar" .
  rm -rf "$work/debian"
  debian_tar=$work/debian.tar
fi

# push_tar_image TAR REF [EXTRA_FILES]: a one-layer image of TAR (plus, with EXTRA_FILES, 30
# directories of 1,000 generated files each, 4,000 random and 6,000 text bytes) pushed to REF.
push_tar_image() {
  python3 - "$1" "$work/layout-$(basename "$2" | tr ':/' '__')" "${3:-0}" <<'PY'
import gzip, hashlib, io, json, os, shutil, sys, tarfile
src, out, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
layer_tar = f"{out}/layer.tar"
with tarfile.open(src) as tin, tarfile.open(layer_tar, "w", format=tarfile.PAX_FORMAT) as tout:
    for m in tin:
        tout.addfile(m, tin.extractfile(m) if m.isfile() else None)
    if extra:
        for d in range(30):
            info = tarfile.TarInfo(f"fat/{d}"); info.type = tarfile.DIRTYPE; info.mode = 0o755
            tout.addfile(info)
            for f in range(1000):
                data = os.urandom(4000) + (f"{d}/{f} " * 1000).encode()[:6000]
                info = tarfile.TarInfo(f"fat/{d}/{f}"); info.size = len(data); info.mode = 0o644
                tout.addfile(info, io.BytesIO(data))
def blob(path):
    h = hashlib.sha256(open(path, "rb").read()).hexdigest()
    shutil.move(path, f"{out}/blobs/sha256/{h}")
    return f"sha256:{h}", os.path.getsize(f"{out}/blobs/sha256/{h}")
diff_id = "sha256:" + hashlib.sha256(open(layer_tar, "rb").read()).hexdigest()
with open(layer_tar, "rb") as fin, gzip.open(f"{out}/layer.tgz", "wb", compresslevel=6) as fout:
    shutil.copyfileobj(fin, fout)
os.remove(layer_tar)
layer, lsize = blob(f"{out}/layer.tgz")
config = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["bash"]},
          "rootfs": {"type": "layers", "diff_ids": [diff_id]},
          "created": "2026-01-01T00:00:00Z",
          "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "bench base"}]}
open(f"{out}/config.json", "w").write(json.dumps(config))
cfg, csize = blob(f"{out}/config.json")
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": lsize}]}
open(f"{out}/manifest.json", "w").write(json.dumps(manifest))
man, msize = blob(f"{out}/manifest.json")
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": man, "size": msize,
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
print(f"{out}/blobs/sha256/{layer.split(':')[1]}")
PY
}

echo "== base images" >&2
base=$host/bench/debian:latest
push_tar_image "$debian_tar" "$base" >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$work/layout-debian_latest:latest" "docker://$base"
fat=$host/bench/fat:latest
fat_blob=
case " $shapes " in
  *" fat "*)
    fat_blob=$(push_tar_image "$debian_tar" "$fat" 1)
    skopeo copy -q --dest-tls-verify=false "oci:$work/layout-fat_latest:latest" "docker://$fat" ;;
esac

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
    fat) printf 'FROM %s\nRUN echo hi > /hello\n' "$fat" ;;
    *) echo "unknown shape $shape" >&2; exit 1 ;;
  esac >"$ctx/Dockerfile"
done

field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }
seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

rows=()
kiln_extract_ms=-
for shape in $shapes; do
  ctx=$work/ctx-$shape
  echo "== $shape: kiln" >&2
  drop_caches
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$work/kiln-$shape.time" "$kiln" build --dockerfile "$ctx/Dockerfile" \
    --context "$ctx" --destination "$host/out/$shape:kiln" --kiln-dir "$work/kiln-$shape" \
    --log-format json --verbosity debug $kiln_args >/dev/null 2>"$work/kiln-$shape.log" \
    || { echo "kiln failed on $shape:" >&2; tail -n 20 "$work/kiln-$shape.log" >&2; exit 1; }
  kiln_s=$(field "$work/kiln-$shape.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)' | seconds)
  rss_mb=$(field "$work/kiln-$shape.time" 'Maximum resident set size (kbytes)' | awk '{printf "%.0f", $1/1024}')
  if [ "$shape" = fat ]; then
    kiln_extract_ms=$(python3 - "$work/kiln-$shape.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        f = json.loads(line)
    except ValueError:
        continue
    if f.get("msg") == "layer extracted":
        print(f"{float(f['ms']):.0f}")
        break
else:
    print("-")
PY
)
  fi
  # what kiln left to its detached removal (`kiln remove-scratch`) is waited for here, so it
  # does not run into buildah's time; how long it went on after kiln exited is its column
  gone_s=$(python3 - "$work/kiln-$shape/.removing" <<'PY'
import os, sys, time
start = time.monotonic()
while os.path.isdir(sys.argv[1]) and os.listdir(sys.argv[1]) and time.monotonic() - start < 600:
    time.sleep(0.05)
print(f"{time.monotonic() - start:.2f}")
PY
)
  rm -rf "$work/kiln-$shape"

  echo "== $shape: buildah" >&2
  drop_caches
  bstore="--root $work/bstore-$shape --runroot $work/brun-$shape --storage-driver vfs"
  # shellcheck disable=SC2086
  STORAGE_DRIVER=vfs /usr/bin/time -v -o "$work/buildah-$shape.time" bash -c "
    buildah $bstore bud --layers --isolation chroot --tls-verify=false -q -f '$ctx/Dockerfile' \
      -t 'bench-$shape' '$ctx' &&
    buildah $bstore push --tls-verify=false -q 'bench-$shape' 'docker://$host/out/$shape:buildah'" \
    >"$work/buildah-$shape.log" 2>&1 \
    || { echo "buildah failed on $shape:" >&2; tail -n 20 "$work/buildah-$shape.log" >&2; exit 1; }
  buildah_s=$(field "$work/buildah-$shape.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)' | seconds)
  # shellcheck disable=SC2086
  buildah $bstore rmi -a -f >/dev/null 2>&1 || true
  rm -rf "$work/bstore-$shape" "$work/brun-$shape"

  ratio=$(awk -v k="$kiln_s" -v b="$buildah_s" 'BEGIN{printf "%.2f", k/b}')
  rows+=("$(printf '| %-10s | %11s | %8s | %5s | %13s | %19s |' "$shape" "$buildah_s" "$kiln_s" "$ratio" "$rss_mb" "$gone_s")")
done

tar_s=-
if [ -n "$fat_blob" ]; then
  echo "== tar -xzf of the fat base's layer" >&2
  mkdir -p "$work/untar"
  drop_caches
  tar_s=$( { /usr/bin/time -f '%e' tar -C "$work/untar" -xzf "$fat_blob" 2>&1 >/dev/null; } | tail -n1)
  rm -rf "$work/untar"
fi

echo
printf '| %-10s | %11s | %8s | %5s | %13s | %19s |\n' shape "buildah (s)" "kiln (s)" ratio "kiln RSS (MB)" "removal after (s)"
printf '|------------|-------------|----------|-------|---------------|---------------------|\n'
printf '%s\n' "${rows[@]}"
echo
if [ -n "$fat_blob" ]; then
  echo "fat base layer ($(du -m "$fat_blob" | cut -f1) MB): kiln extraction ${kiln_extract_ms} ms, tar -xzf ${tar_s} s"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
