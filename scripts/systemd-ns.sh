#!/usr/bin/env bash
# Boots a real systemd as PID 1 in private namespaces, for end-to-end tests:
# an overlay root (the host's / below, a tmpfs above: the host is never
# written), a private cgroup2 (never the host's cgroups), tmpfs /tmp and /run,
# and the units that would touch the host masked.
#
#   systemd-ns.sh boot WORKDIR     boots; prints the PID of the namespace's init
#   systemd-ns.sh stop WORKDIR     powers it off and removes the cgroup
#
# Drive it with: nsenter -t PID -m -p -- systemctl ... / journalctl ...
set -euo pipefail
cmd=$1 work=$2
cg=/sys/fs/cgroup/unified/lcd-e2e-$(basename "$work")

case "$cmd" in
boot)
  mkdir -p "$work"
  [ -d /sys/fs/cgroup/unified ] || { echo "no cgroup v2 hierarchy at /sys/fs/cgroup/unified" >&2; exit 1; }
  mkdir -p "$cg"
  : > "$work/console.log"
  cat > "$work/inner.sh" <<'INNER'
#!/bin/bash
set -euo pipefail
work=$1
root=$work/root
mkdir -p "$work/ovl"
mount -t tmpfs tmpfs "$work/ovl"
mkdir -p "$work/ovl/upper" "$work/ovl/work" "$root"
mount -t overlay overlay -o lowerdir=/,upperdir="$work/ovl/upper",workdir="$work/ovl/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
umount -l "$root/sys/fs/cgroup" 2>/dev/null || true
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
mount --rbind /dev "$root/dev"
mount --bind "$work/console.log" "$root/dev/console"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
mkdir -p "$root/run/systemd/system"
for u in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-udev-trigger.service \
  systemd-udev-settle.service systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  systemd-modules-load.service systemd-repart.service systemd-firstboot.service systemd-remount-fs.service \
  timers.target getty.target console-getty.service getty@tty1.service systemd-hwdb-update.service \
  systemd-pstore.service systemd-journal-flush.service systemd-random-seed.service systemd-timesyncd.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer logrotate.timer man-db.timer \
  systemd-tmpfiles-clean.timer cron.service ssh.service sshd.service docker.service containerd.service \
  postgresql.service redis-server.service nginx.service memcached.service; do
  ln -sf /dev/null "$root/run/systemd/system/$u"
done
cat > "$root/run/systemd/system/lcd-e2e.target" <<T
[Unit]
Description=logcompactd end-to-end test target
Requires=basic.target systemd-journald.service
After=basic.target systemd-journald.service
AllowIsolate=yes
T
cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
exec env container=lcd-e2e /lib/systemd/systemd --system --unit=lcd-e2e.target
INNER
  chmod +x "$work/inner.sh"
  # The launcher joins its own cgroup first, so systemd starts in a private subtree.
  (echo $BASHPID > "$cg/cgroup.procs"; exec unshare --pid --fork --mount --uts --ipc --cgroup --propagation private \
    "$work/inner.sh" "$work") > "$work/launcher.log" 2>&1 &
  launcher=$!
  echo "$launcher" > "$work/launcher.pid"
  # The namespace's init is the launcher's grandchild (unshare --fork): find it.
  for i in $(seq 1 200); do
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null) $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
      if [ "$(readlink /proc/$p/exe 2>/dev/null)" = /usr/lib/systemd/systemd ] || [ "$(readlink /proc/$p/exe 2>/dev/null)" = /lib/systemd/systemd ]; then
        if nsenter -t "$p" -m -p -- systemctl is-system-running --wait >/dev/null 2>&1 || \
           nsenter -t "$p" -m -p -- systemctl is-active lcd-e2e.target >/dev/null 2>&1; then
          echo "$p" > "$work/init.pid"; echo "$p"; exit 0
        fi
      fi
    done
    sleep 0.1
  done
  echo "systemd did not come up; launcher log:" >&2; cat "$work/launcher.log" "$work/console.log" >&2; exit 1
  ;;
stop)
  if [ -f "$work/init.pid" ]; then
    p=$(cat "$work/init.pid")
    nsenter -t "$p" -m -p -- systemctl poweroff --no-block >/dev/null 2>&1 || true
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  fi
  [ -f "$work/launcher.pid" ] && { kill -9 "$(cat "$work/launcher.pid")" 2>/dev/null || true; }
  sleep 0.2
  find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  ;;
esac
