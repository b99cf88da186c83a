#!/bin/sh
# Tries every way out of a RUN; one line per attempt in /results: "NAME ok" when it failed,
# "NAME ESCAPED ..." when it got through. Arguments come from build args:
# KILN_PID, DCFG (kiln's DOCKER_CONFIG), SECRET (a token in it and in a host file),
# HOSTFILE (a host file holding SECRET), ROOTDEV ("major minor" of the host's /), MARKER
# (a host path the chroot trick tries to create).
out=/results
: > $out
note() { echo "$1 $2" >> $out; }
has_secret() { grep -q "$SECRET" "$1" 2>/dev/null; }
# whether FILE gives any bytes (a device node read for up to 2 seconds)
readable() { [ "$(timeout 2 head -c 64 "$1" 2>/dev/null | wc -c)" -gt 0 ]; }

# the chroot trick: chroot into a subdirectory, climb out with "..", chroot there
perl -e '
  mkdir "/trick";
  chroot "/trick" or exit 0;
  chdir ".." for 1..200;
  chroot "." or exit 0;
  # (inside the stage root this is the stage root /tmp: the test looks for it on the host)
  if (open(my $f, ">", $ENV{MARKER})) { print $f "escaped\n"; close $f; }
  for my $p ("$ENV{DCFG}/config.json", $ENV{HOSTFILE}, "/proc/$ENV{KILN_PID}/environ") {
    if (open(my $f, "<", $p)) { local $/; my $t = <$f>; print "read $p\n" if index($t, $ENV{SECRET}) >= 0; }
  }
' > /tmp/trick 2>&1
if [ -s /tmp/trick ]; then note chroot_trick "ESCAPED $(tr '\n' ' ' < /tmp/trick)"; else note chroot_trick ok; fi
rmdir /trick 2>/dev/null

# the host seen through pid 1's root, and kiln's own /proc entries
if has_secret "/proc/1/root$HOSTFILE"; then note proc1_root ESCAPED; else note proc1_root ok; fi
if has_secret "$HOSTFILE"; then note host_file ESCAPED; else note host_file ok; fi
if tr '\0' '\n' < /proc/$KILN_PID/environ 2>/dev/null | grep -q DOCKER_CONFIG; then
  note kiln_environ ESCAPED; else note kiln_environ ok; fi
if has_secret "$DCFG/config.json"; then note docker_config ESCAPED; else note docker_config ok; fi
if has_secret "/proc/$KILN_PID/root$DCFG/config.json"; then note kiln_root ESCAPED; else note kiln_root ok; fi
# ptrace of kiln: its memory, and PTRACE_ATTACH (x86_64: syscall 101, request 16)
if (exec 3< /proc/$KILN_PID/mem) 2>/dev/null; then note kiln_mem ESCAPED; else note kiln_mem ok; fi
if [ "$(uname -m)" = x86_64 ]; then
  if perl -e 'exit(syscall(101, 16, $ARGV[0], 0, 0) == 0 ? 0 : 1)' "$KILN_PID"; then
    note ptrace ESCAPED; else note ptrace ok; fi
fi

# device nodes of the host: its disk and kernel log, made with mknod
set -- $ROOTDEV
if mknod /disk b "$1" "$2" 2>/dev/null && readable /disk; then
  note mknod_disk ESCAPED; else note mknod_disk ok; fi
rm -f /disk
if mknod /kmsg c 1 11 2>/dev/null && readable /kmsg; then
  note mknod_kmsg ESCAPED; else note mknod_kmsg ok; fi
rm -f /kmsg
if readable /dev/kmsg; then
  note dev_kmsg ESCAPED; else note dev_kmsg ok; fi
extra=$(find /dev -mindepth 1 -maxdepth 1 \( -type b -o -type c \) \
  ! -name null ! -name zero ! -name full ! -name random ! -name urandom ! -name tty 2>/dev/null \
  | tr '\n' ' ')
if [ -n "$extra" ]; then note dev_nodes "ESCAPED $extra"; else note dev_nodes ok; fi

# mounts and namespaces
mkdir -p /mnt/t
if mount -t tmpfs none /mnt/t 2>/dev/null; then note mount ESCAPED; umount /mnt/t; else note mount ok; fi
if unshare -m true 2>/dev/null; then note unshare ESCAPED; else note unshare ok; fi

# rights: Docker's default capabilities, a seccomp filter
cap=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if [ "$cap" = 00000000a80425fb ] && [ "$bnd" = 00000000a80425fb ]; then note caps ok; else note caps "ESCAPED eff=$cap bnd=$bnd"; fi
sec=$(awk '/^Seccomp:/ {print $2}' /proc/self/status)
if [ "$sec" = 2 ]; then note seccomp ok; else note seccomp "ESCAPED mode=$sec"; fi

# /sys read-only, /proc masked and read-only where runc makes it so
if touch /sys/kiln-probe 2>/dev/null || [ -n "$(awk '$2 == "/sys" && $4 ~ /^rw/' /proc/mounts)" ]; then
  note sys_ro ESCAPED; else note sys_ro ok; fi
if [ -s /proc/kcore ] || readable /proc/kcore; then
  note kcore ESCAPED; else note kcore ok; fi
if [ -n "$(cat /proc/keys /proc/timer_list /proc/sched_debug 2>/dev/null)" ]; then
  note proc_masked ESCAPED; else note proc_masked ok; fi
if (echo kiln > /proc/sys/kernel/domainname) 2>/dev/null; then note proc_sys_ro ESCAPED; else note proc_sys_ro ok; fi
if (echo h > /proc/sysrq-trigger) 2>/dev/null; then note sysrq ESCAPED; else note sysrq ok; fi
rm -rf /mnt/t /tmp/trick "$MARKER"
cat $out
