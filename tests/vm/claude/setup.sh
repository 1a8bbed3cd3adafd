#!/bin/sh
# Run by /init before the scenarios of the Claude Code boot: the network. Loads virtio_net and
# what it depends on (modules of the kernel package, in /lib/modules/vmtest/order), and gives
# eth0 QEMU user networking's usual 10.0.2.15/24; the gateway 10.0.2.2 is the host's loopback,
# where the stand-in API listens. Prints "vmtest: network ..." or "VMTEST FAIL setup: ...".
t0=$(cut -d' ' -f1 /proc/uptime)
bad() {
	echo "VMTEST FAIL setup: $*"
	exit 1
}
while read -r m; do
	insmod "/lib/modules/vmtest/$m.ko" 2>/tmp/insmod.err || bad "insmod $m: $(cat /tmp/insmod.err)"
done </lib/modules/vmtest/order
i=0
until [ -e /sys/class/net/eth0 ]; do
	i=$((i + 1))
	[ "$i" -le 100 ] || bad "no eth0 5 s after loading virtio_net (interfaces: $(ls /sys/class/net | tr '\n' ' '))"
	sleep 0.05
done
ip link set lo up || bad "ip link set lo up"
ip addr add 10.0.2.15/24 dev eth0 || bad "ip addr add"
ip link set eth0 up || bad "ip link set eth0 up"
ip route add default via 10.0.2.2 || bad "ip route add"
echo "vmtest: network up in $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.2f", b-a}')s: $(ip -o -4 addr show eth0 | awk '{print $2, $4}'), modules: $(tr '\n' ' ' </lib/modules/vmtest/order)"
