#!/bin/sh
# /init of the real-guest fixture (tools/real_guest.py): busybox only.
# Starts processes that map and touch memory, then a reporter that prints every
# process's /proc/PID/maps and /proc/PID/pagemap on the console and the ready
# marker; pid 1 itself becomes a sleep so that nothing changes afterwards.
/bin/busybox mkdir -p /proc /sys /tmp /www /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/printk      # no kernel messages inside the report on the console
echo '<html>s390emu real guest</html>' > /www/index.html

# A sleeper, a server, a shell holding 4 MiB in a variable (its heap), and an awk
# loop over a 16 MiB string that makes no system call (a CPU caught in user mode).
sleep 100000 &
httpd -f -p 8080 -h /www &
sh -c 'x=$(head -c 4194304 /dev/zero | tr "\000" x); : > /tmp/sh.ready; sleep 100000; echo ${#x}' &
awk 'BEGIN { s = "x"; while (length(s) < 16777216) s = s s
             printf "" > "/tmp/awk.ready"; close("/tmp/awk.ready"); for (;;) n++ }' &

# The reporter: waits until the variable and the awk string are built and pid 1 is the
# final sleep, lists the processes once (a glob, no fork, so its own children are not in
# the list) and prints them.
cat > /tmp/report <<'EOF'
while [ ! -e /tmp/sh.ready ] || [ ! -e /tmp/awk.ready ] || [ "$(cat /proc/1/comm)" != sleep ]; do sleep 1; done
me=$$
echo "@@report begin"
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$me" ] && continue
  maps=$(cat "$d/maps" 2>/dev/null)
  [ -n "$maps" ] || continue          # kernel threads and zombies have no mm
  echo "@@proc $pid $(cat "$d/comm")"
  echo "$maps"
  echo "$maps" | while read range rest; do
    start=$((0x${range%-*} / 4096)); end=$((0x${range#*-} / 4096))
    echo "@@pagemap $range"
    dd if="$d/pagemap" bs=8 skip=$start count=$((end - start)) 2>/dev/null | od -A x -t x8
  done
done
echo "@@report end"
echo "S390EMU-REAL-GUEST-READY"
EOF
sh /tmp/report &
exec sleep 100000
