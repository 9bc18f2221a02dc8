#!/usr/bin/env bash
# Seeds each target's corpus with small images qemu-img writes in many options.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
truncate -s 2M "$tmp/src.raw"
printf 'kiln fuzz seed' | dd of="$tmp/src.raw" conv=notrunc status=none
head -c 200000 /dev/urandom | dd of="$tmp/src.raw" bs=1 seek=70000 conv=notrunc status=none
seed() { mkdir -p "corpus/$1"; qemu-img convert -O "$2" "${@:3}" "$tmp/src.raw" "$tmp/x"; cp "$tmp/x" "corpus/$1/$2-$RANDOM"; cp "$tmp/x" "corpus/detect/$2-$RANDOM"; }
mkdir -p corpus/detect
seed qcow2 qcow2 -o cluster_size=512
seed qcow2 qcow2 -c -o cluster_size=4k,compression_type=zstd
seed qcow2 qcow2 -o compat=0.10,cluster_size=1k
seed qcow2 qcow2 -o extended_l2=on,cluster_size=16k
seed vmdk vmdk -o subformat=streamOptimized
seed vmdk vmdk -o subformat=monolithicSparse
seed vhd vpc -o subformat=dynamic
seed vhd vpc -o subformat=fixed
seed vdi vdi
