#!/usr/bin/env bash
# kiln img convert against qemu-img convert, side by side in one run.
#
# Makes a sparse raw disk with a realistic mix — real file contents (a tar of
# /usr: binaries, libraries, text), incompressible data (as in package
# archives), explicit zeros and holes — then times each conversion for both
# tools, alternating them, and prints a Markdown table of median seconds.
#
#   benches/convert.sh [SIZE_GIB] [RUNS]      (defaults: 4 GiB, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
size_gib=${1:-4}
runs=${2:-5}
cargo build --release --quiet --bin kiln
kiln=$PWD/target/release/kiln
work=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

src=$work/disk.raw
truncate -s "${size_gib}G" "$src"
# Real file contents: about a quarter of the disk, written in 256 MiB runs with holes between.
# (tar stops on SIGPIPE once head has enough: that is expected, not a failure.)
{ tar -cf - /usr/lib /usr/share /usr/bin 2>/dev/null || true; } | head -c $((size_gib * 256))M >"$work/usr.tar"
usr_mib=$(( $(stat -c %s "$work/usr.tar") / 1048576 ))
chunks=$(( usr_mib / 256 ))
for i in $(seq 0 $((chunks - 1))); do
  dd if="$work/usr.tar" of="$src" bs=1M skip=$((i * 256)) seek=$((i * 512)) count=256 conv=notrunc,sparse status=none
done
# Incompressible data: 1/16 of the disk near the end; explicit zeros beside it.
dd if=/dev/urandom of="$src" bs=1M seek=$((size_gib * 1024 * 3 / 4)) count=$((size_gib * 64)) conv=notrunc status=none
dd if=/dev/zero of="$src" bs=1M seek=$((size_gib * 1024 * 7 / 8)) count=$((size_gib * 32)) conv=notrunc status=none
rm "$work/usr.tar"
data_mib=$(( $(du -k "$src" | cut -f1) / 1024 ))

# Wall and CPU seconds of a conversion including a final sync: kiln fsyncs its
# output before renaming it into place, qemu-img leaves dirty pages behind, so
# only "written and on disk" compares like with like.
seconds() { /usr/bin/time -f '%e %U %S' bash -c '"$@" && sync' _ "$@" 2>&1 >/dev/null | tail -1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Inputs for the qcow2 → raw case, written by each tool itself.
"$kiln" img convert -q -O qcow2 "$src" "$work/in-kiln.qcow2"
qemu-img convert -O qcow2 "$src" "$work/in-qemu.qcow2"

declare -A cases=(
  ["raw → qcow2"]="-O qcow2|-O qcow2|$src|qcow2"
  ["raw → qcow2, zstd compressed"]="-O qcow2 -c -o compression_type=zstd|-O qcow2 -c -o compression_type=zstd|$src|qcow2"
  ["raw → qcow2, zlib compressed"]="-O qcow2 -c|-O qcow2 -c|$src|qcow2"
  ["qcow2 → raw"]="-O raw|-O raw|QCOW|raw"
  ["raw → vmdk (streamOptimized)"]="-O vmdk|-O vmdk -o subformat=streamOptimized|$src|vmdk"
)
order=("raw → qcow2" "raw → qcow2, zstd compressed" "raw → qcow2, zlib compressed" "qcow2 → raw" "raw → vmdk (streamOptimized)")

echo "Disk: ${size_gib} GiB virtual, ${data_mib} MiB allocated ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg) at start)."
echo
echo "| conversion | kiln wall (s) | qemu-img wall (s) | qemu-img / kiln | kiln CPU (s) | qemu-img CPU (s) | kiln size (MiB) | qemu-img size (MiB) |"
echo "|---|---|---|---|---|---|---|---|"
for name in "${order[@]}"; do
  IFS='|' read -r kiln_opts qemu_opts input ext <<<"${cases[$name]}"
  k_in=$input; q_in=$input
  if [ "$input" = QCOW ]; then k_in=$work/in-kiln.qcow2; q_in=$work/in-qemu.qcow2; fi
  k_times=(); q_times=()
  run_kiln() {
    rm -f "$work/out.$ext"; sync
    # shellcheck disable=SC2086
    k_times+=("$(seconds "$kiln" img convert -q $kiln_opts "$k_in" "$work/out.$ext")")
    k_size=$(( $(stat -c %s "$work/out.$ext") / 1048576 ))
    if [ "$ext" = raw ]; then k_size=$(( $(du -k "$work/out.$ext" | cut -f1) / 1024 )); fi
    qemu-img compare -q "$src" "$work/out.$ext"
  }
  run_qemu() {
    rm -f "$work/out.$ext"; sync
    # shellcheck disable=SC2086
    q_times+=("$(seconds qemu-img convert $qemu_opts "$q_in" "$work/out.$ext")")
    q_size=$(( $(stat -c %s "$work/out.$ext") / 1048576 ))
    if [ "$ext" = raw ]; then q_size=$(( $(du -k "$work/out.$ext" | cut -f1) / 1024 )); fi
  }
  # One untimed run of each first: this VM's host backs guest memory on first
  # touch, which made whichever tool ran first pay for fresh page-cache pages.
  run_kiln; run_qemu; k_times=(); q_times=()
  # Alternate which tool goes first, so neither always follows the other.
  for i in $(seq "$runs"); do
    if (( i % 2 )); then run_kiln; run_qemu; else run_qemu; run_kiln; fi
  done
  k=$(printf '%s\n' "${k_times[@]}" | cut -d' ' -f1 | median)
  q=$(printf '%s\n' "${q_times[@]}" | cut -d' ' -f1 | median)
  kc=$(printf '%s\n' "${k_times[@]}" | awk '{print $2 + $3}' | median)
  qc=$(printf '%s\n' "${q_times[@]}" | awk '{print $2 + $3}' | median)
  ratio=$(awk -v k="$k" -v q="$q" 'BEGIN { printf "%.2f×", q / k }')
  echo "| $name | $k | $q | $ratio | $kc | $qc | $k_size | $q_size |"
done
