#!/bin/sh
# Runs once contextualization is over (kiln-ready.service): prints the
# hostname, each NIC's MAC and addresses, and the kernel's uptime on the
# console, then the line `KILN-READY` that boot tests and benches/boot.sh
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
    echo "KILN-READY uptime $(cut -d' ' -f1 /proc/uptime)"
} > /dev/console 2>&1
