#!/usr/bin/env bash
# kiln build against the same steps done by hand, in one run, on this machine.
#
#   cold:    kiln build examples/debian-minimal.yaml with an empty cache
#            vs  debootstrap --variant=minbase + the same apt suites (release,
#                -updates, -security) + chroot apt-get install of the
#                template's packages + mke2fs -d (the steps kiln automates)
#   rebuild: a template extending debian-minimal with one file; the file's
#            content changes, then kiln build runs again with its cache
#
#   KILN=path/to/kiln benches/build.sh        (default: target/release/kiln, built if missing)
# Needs root and the Debian mirror; prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mirror=${MIRROR:-http://deb.debian.org/debian}
kiln=${KILN:-}
if [ -z "$kiln" ]; then
  cargo build --release --quiet --bin kiln
  kiln=$repo/target/release/kiln
fi
work=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
packages=(linux-image-amd64 systemd-sysv openssh-server)

seconds() { date +%s.%N; }
elapsed() { echo "$(seconds) - $1" | bc; }

# By hand, the way one would without kiln (in a private mount namespace so
# that nothing stays mounted if the script is interrupted).
t0=$(seconds)
unshare --mount --propagation private -- bash -euc '
  root=$1; mirror=$2; shift 2
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  # The suites kiln takes by default: the release, -updates and -security.
  printf "deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n" \
    "$mirror" "$mirror" "$mirror" >"$root/etc/apt/sources.list"
  mount -t proc proc "$root/proc"; mount --rbind /sys "$root/sys"; mount --rbind /dev "$root/dev"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  umount -R "$root/proc" "$root/sys" "$root/dev"
' bench "$work/manual-root" "$mirror" "${packages[@]}"
mke2fs -q -t ext4 -d "$work/manual-root" "$work/manual.ext4" 4G
manual=$(elapsed "$t0")

# kiln, cold: an empty cache, the template's own output (qcow2, with GPT and GRUB).
t0=$(seconds)
"$kiln" build examples/debian-minimal.yaml -o "$work/out" --cache-dir "$work/cache" --mirror "$mirror" 2>"$work/cold.log"
cold=$(elapsed "$t0")

# kiln, rebuild after one file changed.
cat >"$work/derived.yaml" <<YAML
extends: $repo/examples/debian-minimal.yaml
name: bench-derived
files:
  - path: /etc/kiln-bench
    content: "\${version} one"
YAML
"$kiln" build "$work/derived.yaml" -o "$work/out" --cache-dir "$work/cache" --mirror "$mirror" 2>"$work/warm.log"
sed -i 's/ one"$/ two"/' "$work/derived.yaml"
t0=$(seconds)
"$kiln" build "$work/derived.yaml" -o "$work/out" --cache-dir "$work/cache" --mirror "$mirror" 2>"$work/rebuild.log"
rebuild=$(elapsed "$t0")

printf '| measurement | seconds |\n|---|---|\n'
printf '| by hand: debootstrap + chroot apt-get + mke2fs -d | %.1f |\n' "$manual"
printf '| kiln build, cold cache (qcow2, GPT, GRUB BIOS+UEFI) | %.1f |\n' "$cold"
printf '| ratio kiln / by hand | %.2f |\n' "$(echo "$cold / $manual" | bc -l)"
printf '| kiln build after one file changed | %.1f |\n' "$rebuild"
echo
echo "cold build stages:"; grep -E '^\[' "$work/cold.log" || true
echo "rebuild stages:"; grep -E '^\[' "$work/rebuild.log" || true
