#!/bin/sh
# Runs once contextualization is over (kiln-ready.service): prints the
# hostname, each NIC's MAC and addresses, how long each contextualization
# unit ran, and the kernel's uptime on the console, then the line `KILN-READY` that boot tests and benches/boot.sh
# wait for. Scripts in /etc/kiln-ready.d run first; their output goes to
# the console too.
{
    for script in /etc/kiln-ready.d/*; do
        [ -x "$script" ] && "$script"
    done
    echo "kiln-ready: hostname $(hostname)"
    for nic in /sys/class/net/*; do
        name=${nic##*/}
        [ "$name" = lo ] && continue
        addresses=$(ip -o addr show dev "$name" | awk '{print $4}' | tr '\n' ' ')
        echo "kiln-ready: nic $name $(cat "$nic/address") $addresses"
    done
    # How long each contextualization unit's process ran (as systemd saw
    # it) and its CPU time: the agent's or cloud-init's own share of the
    # boot. The SSH host keys' generation is shown apart: every boot has it,
    # and under emulation its time varies by seconds from boot to boot.
    for unit in kiln-agent-local kiln-agent cloud-init-local cloud-init cloud-config cloud-final kiln-ssh-host-keys; do
        times=$(systemctl show "$unit.service" -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic -p CPUUsageNSec -p LoadState 2>/dev/null) || continue
        case $times in *LoadState=loaded*) ;; *) continue ;; esac
        start=$(echo "$times" | sed -n 's/^ExecMainStartTimestampMonotonic=//p')
        end=$(echo "$times" | sed -n 's/^ExecMainExitTimestampMonotonic=//p')
        cpu=$(echo "$times" | sed -n 's/^CPUUsageNSec=//p')
        [ "${start:-0}" -gt 0 ] && [ "${end:-0}" -ge "$start" ] || continue
        case $cpu in ''|*[!0-9]*) cpu="" ;; *) cpu=", cpu $((cpu / 1000000)) ms" ;; esac
        case $unit in kiln-ssh-host-keys) kind=other ;; *) kind=unit ;; esac
        echo "kiln-ready: $kind $unit $(( (end - start) / 1000 )) ms$cpu"
    done
    echo "KILN-READY uptime $(cut -d' ' -f1 /proc/uptime)"
} > /dev/console 2>&1
