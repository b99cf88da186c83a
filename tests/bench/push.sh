#!/usr/bin/env bash
# Push throughput: kiln's push of an image with one big layer to a loopback docker-registry,
# against `skopeo copy` of the very same image (from the OCI layout kiln wrote) to the same
# registry. kiln's push is timed from its own "pushing image" / "pushed image" log lines
# (JSON logs), so layer creation is not counted; skopeo is timed around the command.
# Each push goes to a fresh repository with new random content, so every blob byte crosses
# the wire (kiln pushes first, then skopeo copies the same blobs; the registry stores each
# blob once, but receives and hashes every byte of both uploads). Measures,
# never asserts a number. Env: KILN_BIN (default target/release/kiln), BENCH_BYTES
# (default 1000000000), BENCH_ROUNDS (default 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kiln=${KILN_BIN:-$root/target/release/kiln}
bytes=${BENCH_BYTES:-1000000000}
rounds=${BENCH_ROUNDS:-2}

# shellcheck source=lib.sh
. "$here/lib.sh"
need docker-registry docker-registry
need skopeo skopeo
need python3 python3
need curl curl
need jq jq
[ -x "$kiln" ] || { echo "build kiln first: cargo build --release (no $kiln)" >&2; exit 1; }
bench_registry /tmp

mkdir -p "$work/ctx"
printf 'FROM scratch\nCOPY big /big\n' >"$work/Dockerfile"

# Seconds between the first "pushing image" and the last "pushed image" line of a JSON log.
push_seconds() {
  python3 - "$1" <<'PY'
import json, sys, datetime
start = end = None
for line in open(sys.argv[1]):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    msg = rec.get("fields", {}).get("message")
    ts = datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00"))
    if msg == "pushing image" and start is None:
        start = ts
    if msg == "pushed image":
        end = ts
print(f"{(end - start).total_seconds():.2f}")
PY
}

now() { date +%s.%N; }
kiln_times=()
skopeo_times=()
for round in $(seq "$rounds"); do
  layout=$work/layout-$round
  # New content every round: no blob of an earlier round can be skipped or mounted.
  head -c "$bytes" /dev/urandom >"$work/ctx/big"
  echo "round $round: kiln build + push of $bytes random bytes" >&2
  "$kiln" build --dockerfile "$work/Dockerfile" --context "$work/ctx" \
    --destination "$host/bench/kiln-$round:1" --oci-layout-path "$layout" \
    --kiln-dir "$work/kiln-$round" --log-format json >"$work/kiln-$round.log" 2>&1 || {
    echo "kiln build failed:" >&2; tail -n 30 "$work/kiln-$round.log" >&2; exit 1; }
  kiln_times+=("$(push_seconds "$work/kiln-$round.log")")
  echo "round $round: skopeo copy of the same image" >&2
  start=$(now)
  skopeo copy -q --dest-tls-verify=false "oci:$layout:1" "docker://$host/bench/skopeo-$round:1"
  skopeo_times+=("$(python3 -c "print(f'{$(now) - $start:.2f}')")")
  rm -rf "$work/kiln-$round" "$layout"
done

layer=$(skopeo inspect --raw --tls-verify=false "docker://$host/bench/kiln-$rounds:1" | jq '[.layers[].size, .config.size] | add')
mb=$(python3 -c "print(f'{$layer/1e6:.1f}')")
printf '| %-7s | %-10s | %-10s | %-12s | %-12s | %-14s |\n' round "image (MB)" "kiln (s)" "skopeo (s)" "kiln MB/s" "kiln / skopeo"
printf '|---------|------------|------------|--------------|--------------|----------------|\n'
for i in "${!kiln_times[@]}"; do
  k=${kiln_times[$i]}; s=${skopeo_times[$i]}
  printf '| %-7s | %-10s | %-10s | %-12s | %-12s | %-14s |\n' "$((i + 1))" "$mb" "$k" "$s" \
    "$(python3 -c "print(f'{$layer/1e6/$k:.0f}')")" "$(python3 -c "print(f'{$k/$s:.2f}')")"
done
