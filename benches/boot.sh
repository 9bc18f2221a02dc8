#!/usr/bin/env bash
# Boot to "contextualized and ready" under qemu (TCG), in one run:
#
#   plain:      examples/debian-agent.yaml with the agent's units masked
#               (systemd.mask= on the kernel command line): the baseline
#   kiln-agent: the same image, the agent on
#   cloud-init: examples/debian-cloud-init.yaml (the same template with
#               Debian's cloud-init in place of the agent)
#
# Every boot gets the same NoCloud seed (`kiln context nocloud`) on a CD,
# one virtio NIC on qemu's user network, and the same SSH host keys, written
# into both images beforehand (with ssh_deletekeys: false in cloud-init's
# configuration), so no case spends first-boot key generation's random 4-11 s.
# The kernel is booted directly with the command line of the image's
# grub.cfg (plus no_timer_check, which a loaded host needs under TCG, as
# boot.rs explains). Time = from qemu's start to the line KILN-READY on the
# serial console, printed by kiln-ready.service, which is ordered after
# kiln-agent.service and cloud-final.service. Boots run one at a time, the
# order of the three rotating each round; one untimed boot of each first.
# Prints a Markdown table of medians and fastest runs, what each case adds
# to the plain boot of the same round (the median of those paired
# differences, and their range), with the time the contextualization units
# themselves ran and their CPU time (kiln-agent-local + kiln-agent, or
# cloud-init's four; from systemd, printed by kiln-ready).
#
# The host's own speed drifts (the same CPU-bound loop takes 0.9-1.4 s from
# one minute to the next here), and a TCG boot is CPU-bound: wall times of
# single boots spread by 20-40 %. With KILN_BENCH_ICOUNT=SHIFT, qemu counts
# instructions instead (-icount shift=SHIFT,sleep=off: each guest
# instruction is 2^SHIFT ns of guest time, idle time is skipped), and the
# guest's uptime at KILN-READY no longer depends on the host: it measures the
# work a boot does, as hardware virtualization would see it. TCG's own cost
# of translating code run for the first time is not counted there.
#
#   benches/boot.sh [RUNS]        (default 9)
#   KILN=path/to/kiln             (default: target/release/kiln, built if missing)
#   KILN_CACHE_DIR=DIR            (the build cache; default kiln's own)
#   KILN_BENCH_KEEP=1             (keep the work directory: images, consoles)
#   KILN_BENCH_ICOUNT=SHIFT       (instruction counting; 1 makes a boot about
#                                  as long in guest time as under plain TCG here)
# Needs root (kiln build), the Debian mirror, qemu-system-x86_64, debugfs,
# the musl target for scripts/build-agent.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=${1:-9}
kiln=${KILN:-}
if [ -z "$kiln" ]; then
  cargo build --release --quiet --bin kiln
  kiln=${CARGO_TARGET_DIR:-$repo/target}/release/kiln
fi
work=$(mktemp -d /var/tmp/kiln-bench-boot.XXXXXX)
if [ -n "${KILN_BENCH_KEEP:-}" ]; then
  echo "keeping $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
mac=52:54:00:6b:69:6c
accel=(-accel tcg)
if [ -n "${KILN_BENCH_ICOUNT:-}" ]; then
  accel+=(-icount "shift=$KILN_BENCH_ICOUNT,sleep=off")
fi

agent=$(scripts/build-agent)
echo "building the images (kiln build, raw)..." >&2
KILN_AGENT_BINARY=$agent KILN_AGENT_UNITS=$repo/crates/kiln-agent/systemd \
  "$kiln" build examples/debian-agent.yaml -o "$work/agent" --format raw >/dev/null 2>"$work/build-agent.log"
"$kiln" build examples/debian-cloud-init.yaml -o "$work/cloud-init" --format raw >/dev/null 2>"$work/build-cloud-init.log"

# The same SSH host keys in every image (kiln removes them at build time):
# generated at first boot they take 4-11 s under TCG, at random, which
# buries a difference under a second. No case generates keys then;
# cloud-init, which deletes and regenerates them unless told not to, is told.
mkdir "$work/hostkeys"
for type in rsa ecdsa ed25519; do
  ssh-keygen -q -t "$type" -N '' -C kiln-bench -f "$work/hostkeys/ssh_host_${type}_key"
done
printf 'cd /etc/ssh\n' >"$work/hostkeys.debugfs"
for key in "$work"/hostkeys/*; do printf 'write %s %s\n' "$key" "${key##*/}"; done >>"$work/hostkeys.debugfs"
echo 'ssh_deletekeys: false' >"$work/keep-host-keys.cfg"
{ cat "$work/hostkeys.debugfs"; printf 'cd /etc/cloud/cloud.cfg.d\nwrite %s 90-kiln-bench.cfg\n' "$work/keep-host-keys.cfg"; } >"$work/cloud-init.debugfs"

# kernel, initrd and command line of an image, as its grub.cfg names them;
# then the debugfs commands that write the host keys into it
extract() { # DIR NAME DEBUGFS-COMMANDS
  local dir=$1 name=$2 commands=$3 offset grub
  offset=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(p["offset"] for p in m["disk"]["partitions"] if p["role"]=="root"))' "$dir/$name.manifest.json")
  grub=$(debugfs -R 'cat /boot/grub/grub.cfg' "$dir/$name.raw?offset=$offset" 2>/dev/null)
  read -r _ kernel cmdline <<<"$(grep -m1 -E '^\s*linux ' <<<"$grub")"
  read -r _ initrd <<<"$(grep -m1 -E '^\s*initrd ' <<<"$grub")"
  debugfs -R "dump $kernel $dir/vmlinuz" "$dir/$name.raw?offset=$offset" 2>/dev/null
  debugfs -R "dump $initrd $dir/initrd.img" "$dir/$name.raw?offset=$offset" 2>/dev/null
  echo "$cmdline" >"$dir/cmdline"
  debugfs -w -f "$commands" "$dir/$name.raw?offset=$offset" >/dev/null 2>&1
  [ "$(debugfs -R 'ls /etc/ssh' "$dir/$name.raw?offset=$offset" 2>/dev/null | grep -o 'ssh_host_[a-z0-9]*_key\b' | sort -u | wc -l)" = 3 ] ||
    { echo "$name: the SSH host keys were not written" >&2; exit 1; }
}
extract "$work/agent" debian-agent "$work/hostkeys.debugfs"
extract "$work/cloud-init" debian-cloud-init "$work/cloud-init.debugfs"

cat >"$work/vm.yaml" <<YAML
name: bench1
nics:
  - { network: user, ip: 10.0.2.20, mac: "$mac" }
networks:
  - { name: user, mask: 255.255.255.0, gateway: 10.0.2.2, dns: 10.0.2.3 }
context:
  network: true
  set_hostname: \$NAME
  username: alice
  ssh_public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNRQ7tj0HCTUum5rX1MCemJqy304Ylc6s9QjM3HfE6I alice@bench
  user_data: |
    #cloud-config
    write_files:
      - { path: /etc/kiln-bench, content: "contextualized\n" }
YAML
"$kiln" context nocloud "$work/vm.yaml" -o "$work/seed.iso"

# boot CASE: prints seconds from qemu's start to KILN-READY, and the guest's uptime then
boot() {
  local case=$1 dir append="" console=$work/console-$1.log
  case $case in
    plain) dir=$work/agent; append="systemd.mask=kiln-agent-local.service systemd.mask=kiln-agent.service" ;;
    kiln-agent) dir=$work/agent ;;
    cloud-init) dir=$work/cloud-init ;;
  esac
  : >"$console"
  local t0 pid
  t0=$(date +%s.%N)
  qemu-system-x86_64 -machine q35 "${accel[@]}" -m 1024 -smp 1 -display none -nodefaults \
    -no-reboot -snapshot -serial "file:$console" \
    -drive "file=$(ls "$dir"/*.raw),format=raw,if=virtio" \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" -append "$(cat "$dir/cmdline") no_timer_check panic=-1 $append" \
    -nic "user,model=virtio-net-pci,mac=$mac" \
    -drive "file=$work/seed.iso,format=raw,media=cdrom,readonly=on" &
  pid=$!
  local deadline=$((SECONDS + 900))
  until grep -qa KILN-READY "$console"; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "$case: no KILN-READY on the console:" >&2; cat "$console" >&2; exit 1
    fi
    sleep 0.1
  done
  local t1 uptime
  t1=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  uptime=$(grep -a -m1 -o 'KILN-READY uptime [0-9.]*' "$console" | awk '{print $3}')
  # A contextualized boot that did not get the context is not measured.
  if [ "$case" != plain ] && ! grep -qa 'kiln-ready: hostname bench1' "$console"; then
    echo "$case: the hostname was not set:" >&2; cat "$console" >&2; exit 1
  fi
  if [ "$case" = plain ] && grep -qa 'kiln-ready: hostname bench1' "$console"; then
    echo "plain: the masked agent ran anyway" >&2; exit 1
  fi
  # The contextualization units' own time and CPU time (kiln-ready prints them).
  local units cpu
  units=$({ grep -a -o 'kiln-ready: unit [a-z-]* [0-9]* ms' "$console" || true; } | awk '{s += $4} END {printf "%.2f", s / 1000}')
  cpu=$({ grep -a -o 'kiln-ready: unit [a-z-]* [0-9]* ms, cpu [0-9]* ms' "$console" || true; } | awk '{s += $7} END {printf "%.2f", s / 1000}')
  echo "$(echo "$t1 - $t0" | bc) $uptime $units $cpu"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { sort -n | head -1; }

cases=(plain kiln-agent cloud-init)
echo "warm-up boots..." >&2
for c in "${cases[@]}"; do boot "$c" >/dev/null; done
for ((r = 0; r < runs; r++)); do
  for ((i = 0; i < ${#cases[@]}; i++)); do
    c=${cases[$(((i + r) % ${#cases[@]}))]}
    read -r wall up units cpu <<<"$(boot "$c")"
    echo "run $((r + 1)) $c: ${wall} s (guest uptime ${up} s, its units ${units} s, ${cpu} s CPU)" >&2
    for m in wall up units cpu; do echo "${!m}" >>"$work/$c.$m"; done
  done
done

# Medians and fastest runs; what a case adds to the plain boot of the same
# round, as the median (and range) of those paired differences: rounds
# follow the host's drift, the plain boot of a round shares it.
paired() { # CASE MEASURE: the median and the range of CASE - plain, round by round
  paste "$work/$1.$2" "$work/plain.$2" | awk '{print $1 - $2}' >"$work/$1.$2.added"
  printf '%+.1f | %+.1f…%+.1f' "$(median <"$work/$1.$2.added")" "$(minimum <"$work/$1.$2.added")" "$(sort -n "$work/$1.$2.added" | tail -1)"
}
mode="qemu TCG"
[ -n "${KILN_BENCH_ICOUNT:-}" ] && mode="qemu TCG, -icount shift=$KILN_BENCH_ICOUNT,sleep=off"
echo "$runs runs of each, $mode; host load $(cut -d' ' -f1 /proc/loadavg) at the end."
echo
printf '| boot | qemu start → KILN-READY, median (s) | fastest (s) | added, paired median (s) | paired range (s) | guest uptime at KILN-READY, median (s) | added to uptime, paired median (s) | paired range (s) | its units ran (s) | their CPU (s) |\n|---|---|---|---|---|---|---|---|---|---|\n'
for c in "${cases[@]}"; do
  printf '| %s | %.1f | %.1f | %s | %.1f | %s | %.2f | %.2f |\n' "$c" "$(median <"$work/$c.wall")" \
    "$(minimum <"$work/$c.wall")" "$(paired "$c" wall)" "$(median <"$work/$c.up")" "$(paired "$c" up)" \
    "$(median <"$work/$c.units")" "$(median <"$work/$c.cpu")"
done
echo
echo "runs (s, qemu start → KILN-READY), round by round:"
for c in "${cases[@]}"; do echo "- $c: $(awk '{printf "%.1f ", $1}' "$work/$c.wall")"; done
echo "guest uptime at KILN-READY (s), round by round:"
for c in "${cases[@]}"; do echo "- $c: $(awk '{printf "%.1f ", $1}' "$work/$c.up")"; done
