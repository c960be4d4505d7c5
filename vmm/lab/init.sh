#!/bin/busybox sh
# /init of the tsvmm nested lab (packed into the lab's initramfs by vmm/lab/initramfs.ts).
#
# Runs inside QEMU (TCG, -cpu EPYC,+svm,+npt) as PID 1, with busybox only:
#   1. mounts proc, sys, devtmpfs; brings up lo; loads the modules listed in /lab/modules (stock kernel only)
#   2. mounts the host's root over 9p (tag hostroot, read-only) at /newroot and the run's
#      exchange directory (tag labio, writable) at /labio
#   3. mounts a tmpfs on /tmp without hiding the paths in /labio/keep (the checkout may live
#      under /tmp), the caller's scratch directory (tag scratch, writable) at the path in
#      /labio/scratch, and proc, sys, cgroup2, tracefs, dev, /dev/shm and /run inside /newroot
#   4. writes the lab's uptime to /labio/clock every 5 s while the command runs (the host's watcher
#      takes a clock that stopped moving for a minute as a frozen lab), and runs /labio/run.sh (written by the host: cd, env, argv) chrooted into /newroot, stdin
#      from /dev/null, stdout and stderr into /labio/stdout and /labio/stderr
#   5. writes the status to /labio/status and prints "TSVMM-LAB-EXIT <status>" on the console,
#      then reboots: QEMU runs with -no-reboot, so that ends QEMU.
# Progress markers "TSVMM-LAB-STAGE <name>" and failures "TSVMM-LAB-FAIL <reason>" go to the
# console (ttyS0); the host reads them from the console log.

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /newroot /labio /keep
/bin/busybox --install -s /bin
export PATH=/bin:/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1
# loopback, so that servers on 127.0.0.1 (tsvmm run --gdb tcp:PORT) can be reached inside the lab
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

stage() { echo "TSVMM-LAB-STAGE $*"; }
fail() {
  echo "TSVMM-LAB-FAIL $*"
  sync
  reboot -f
  sleep 60
}

stage init "$(cut -d' ' -f1 /proc/uptime)"

if [ -s /lab/modules ]; then
  while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lab/modules.d/$mod" || fail "insmod $mod"
  done </lab/modules
  stage modules "$(cut -d' ' -f1 /proc/uptime)"
fi

ninep_opts="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$ninep_opts,ro,cache=loose" hostroot /newroot || fail "mount hostroot over 9p"
mount -t 9p -o "$ninep_opts,cache=none" labio /labio || fail "mount labio over 9p"

# Paths under /tmp that must stay visible (the checkout, the working directory): bind them
# aside before the tmpfs covers /tmp, then move them back on top of it.
i=0
if [ -s /labio/keep ]; then
  while read -r path; do
    [ -n "$path" ] || continue
    if [ -d "/newroot$path" ]; then
      mkdir -p "/keep/$i" && mount --bind "/newroot$path" "/keep/$i" || fail "bind $path"
      i=$((i + 1))
    fi
  done </labio/keep
fi
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "mount tmpfs on /tmp"
i=0
if [ -s /labio/keep ]; then
  while read -r path; do
    [ -n "$path" ] || continue
    if [ -d "/keep/$i" ]; then
      mkdir -p "/newroot$path" && mount --move "/keep/$i" "/newroot$path" || fail "restore $path"
      i=$((i + 1))
    fi
  done </labio/keep
fi

mount -t proc proc /newroot/proc || fail "mount /proc"
mount -t sysfs sysfs /newroot/sys || fail "mount /sys"
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>/dev/null
# tracefs (KVM's trace events under events/kvm) where the kernel has it: sw-protected, stock
mount -t tracefs tracefs /newroot/sys/kernel/tracing 2>/dev/null
mount -t devtmpfs devtmpfs /newroot/dev || fail "mount /dev"
mkdir -p /dev/shm /dev/pts && mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
# pseudo-terminals (`script`: a terminal for tsvmm's typed input in the Linux guest test)
mkdir -p /newroot/dev/pts && mount -t devpts -o ptmxmode=0666 devpts /newroot/dev/pts 2>/dev/null
mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "mount /run"
mkdir -p /newroot/run/tsvmm-lab && mount --bind /labio /newroot/run/tsvmm-lab || fail "bind labio"

if [ -s /labio/scratch ]; then
  scratch=$(cat /labio/scratch)
  mkdir -p "/newroot$scratch" 2>/dev/null
  mount -t 9p -o "$ninep_opts,cache=none" scratch "/newroot$scratch" || fail "mount scratch at $scratch"
fi

[ -c /dev/kvm ] || echo "tsvmm-lab: warning: no /dev/kvm in the lab"
stage command "$(cut -d' ' -f1 /proc/uptime)"
(while :; do read -r up _ </proc/uptime; echo "$up" >/labio/clock; sleep 5; done) &
clock=$!
chroot /newroot /bin/sh /run/tsvmm-lab/run.sh </dev/null >/labio/stdout 2>/labio/stderr
status=$?
kill "$clock" 2>/dev/null
echo "$status" >/labio/status
sync
echo
echo "TSVMM-LAB-EXIT $status $(cut -d' ' -f1 /proc/uptime)"
reboot -f
sleep 60
