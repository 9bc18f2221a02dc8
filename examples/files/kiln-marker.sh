#!/bin/sh
# Prints the marker on the serial console so that a boot test can wait for it.
marker=$(cat /etc/kiln-marker)
echo "$marker" > /dev/console
echo "$marker"
