#!/bin/bash
# PID 1 of the BLE test guest: mounts the kernel file systems and the three
# 9p shares (source, build, out), runs out/run (written by the host, it
# names the test script and its parameters), records its exit status in
# out/rc and powers the guest off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
hostname srup-guest

rc=1
if modprobe 9pnet_virtio && modprobe 9p &&
	mount -t 9p -o trans=virtio,version=9p2000.L,ro src /srup/src &&
	mount -t 9p -o trans=virtio,version=9p2000.L,ro build /srup/build &&
	mount -t 9p -o trans=virtio,version=9p2000.L out /srup/out; then
	/bin/bash /srup/out/run
	rc=$?
	echo "$rc" >/srup/out/rc
else
	echo "guest: cannot mount the 9p shares" >&2
fi
echo "guest: test script exited $rc"
sync
umount /srup/out 2>/dev/null
echo o >/proc/sysrq-trigger
sleep 10
