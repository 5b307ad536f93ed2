#!/usr/bin/env bash
# Boots one Debian kernel under QEMU (TCG) and runs a command in it as root,
# from this checkout, which the guest sees at the same path (9p). The guest
# has no network but loopback unless ports are forwarded, and then only to
# and from 127.0.0.1 on the host (user-mode networking with restrict=on).
#
#   tests/vm/run.sh --arch amd64|arm64|armhf [--cgroup v2|v1] [--init shell|systemd]
#                   [--timeout SECONDS] [--mem MIB] [--smp N]
#                   [--guestfwd PORT]... [--hostfwd HOSTPORT:GUESTPORT]... -- COMMAND
#
# COMMAND is a shell command line run with sh -c in the checkout, with
# DEDGE_REQUIRE_SANDBOX=1 (a sandbox test that would skip fails instead).
# --guestfwd PORT lets the guest reach the host's 127.0.0.1:PORT as
# 10.0.2.100:PORT (libslirp refuses a guestfwd on its own 10.0.2.2);
# --hostfwd exposes a guest port on the host's loopback.
# The exit status is the command's; a guest that dies or overruns the
# deadline fails with its console output already on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/vm/pins.sh
. "$here/pins.sh"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"

arch="" cgroup=v2 init=shell timeout=900 mem=2048 smp=2 guestfwd=() hostfwd=()
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch=$2; shift 2 ;;
        --cgroup) cgroup=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        # Digits only: a value is pasted into qemu's -nic option list.
        --guestfwd) [[ $2 =~ ^[0-9]{1,5}$ ]] || die "--guestfwd takes a port, not '$2'"; guestfwd+=("$2"); shift 2 ;;
        --hostfwd) [[ $2 =~ ^[0-9]{1,5}:[0-9]{1,5}$ ]] || die "--hostfwd takes HOSTPORT:GUESTPORT, not '$2'"; hostfwd+=("$2"); shift 2 ;;
        --) shift; break ;;
        *) die "run.sh: unknown option '$1' (see the header of tests/vm/run.sh)" ;;
    esac
done
[ $# -gt 0 ] || die "run.sh: no command given"
case "$cgroup" in v1|v2) ;; *) die "--cgroup must be v1 or v2, not '$cgroup'";; esac
case "$init" in shell|systemd) ;; *) die "--init must be shell or systemd, not '$init'";; esac
# The checkout's path goes onto the kernel command line and into a unit.
[[ $repo =~ ^[A-Za-z0-9/._+-]+$ ]] || die "the checkout's path '$repo' has characters the rig cannot pass to a guest"
# systemd mounts its own /run (and the kernel's filesystems) over a checkout there.
case "$repo/" in /run/*|/proc/*|/sys/*|/dev/*) die "the checkout '$repo' is where a guest mounts its own filesystems: clone it elsewhere" ;; esac

command=$*

kdir=$VM_CACHE/kernel-$arch
rootfs=$(rootfs_dir "$arch")
qemu_dir=$VM_CACHE/qemu
case "$arch" in
    amd64) qemu=qemu-system-x86_64; machine=(-M q35 -cpu max); console=ttyS0 ;;
    arm64) qemu=qemu-system-aarch64; machine=(-M virt -cpu max,pauth-impdef=on); console=ttyAMA0 ;;
    armhf) qemu=qemu-system-arm; machine=(-M virt,highmem=off -cpu cortex-a15); console=ttyAMA0 ;;
    *) die "--arch must be amd64, arm64 or armhf, not '$arch'" ;;
esac
for f in "$kdir/vmlinuz" "$kdir/modules/order" "$rootfs/.ready" "$qemu_dir/usr/bin/$qemu"; do
    [ -e "$f" ] || die "$f is missing: run tests/vm/fetch.sh $arch"
done
# A 32-bit ARM guest addresses at most 3 GiB of RAM (LPAE without highmem).
[ "$arch" = armhf ] && [ "$mem" -gt 2048 ] && mem=2048

# One directory per run under target/vm: the command, the initramfs, the
# guest's exit status, all inside the checkout the guest mounts.
run_dir=$(mktemp -d "$repo/target/vm/run-$arch-XXXXXX" 2>/dev/null || { mkdir -p "$repo/target/vm"; mktemp -d "$repo/target/vm/run-$arch-XXXXXX"; })
trap 'rm -rf "$run_dir"' EXIT
printf '%s\n' "$command" >"$run_dir/cmd"

# --- the initramfs: busybox, the modules, stage 1 -------------------------
ird=$run_dir/initramfs
mkdir -p "$ird"/{bin,modules,proc,sys,dev,lower,rw,newroot}
cp "$rootfs/bin/busybox" "$ird/bin/busybox"
cp "$kdir"/modules/*.ko "$kdir/modules/order" "$ird/modules/"
cp "$here/guest/init" "$ird/init"
cp "$here/guest/stage2" "$ird/stage2"
chmod +x "$ird/init" "$ird/stage2"
(cd "$ird" && find . -mindepth 1 | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$run_dir/initramfs.gz"
rm -rf "$ird"

# --- networking: none, or user-mode restricted to forwards ----------------
net=(-nic none)
if [ ${#guestfwd[@]} -gt 0 ] || [ ${#hostfwd[@]} -gt 0 ]; then
    nic="user,id=n0,restrict=on"
    # One forwarder process per guest connection (tests/vm/forward.py).
    python=$(command -v python3) || die "--guestfwd needs python3 on the host"
    for p in "${guestfwd[@]}"; do nic+=",guestfwd=tcp:10.0.2.100:$p-cmd:$python $here/forward.py $p"; done
    for p in "${hostfwd[@]}"; do nic+=",hostfwd=tcp:127.0.0.1:${p%%:*}-:${p#*:}"; done
    # No option ROM: the kernel is booted directly, and ipxe is not unpacked.
    net=(-netdev "$nic" -device virtio-net-pci,netdev=n0,romfile=)
fi

append="console=$console panic=-1 quiet loglevel=3 rdinit=/init"
append+=" dedge.repo=$repo dedge.run=$run_dir dedge.cgroup=$cgroup dedge.init=$init"
# cgroup v1 only through systemd's legacy switch; the shell init mounts
# what it is told.
[ "$init" = systemd ] && [ "$cgroup" = v1 ] && append+=" systemd.unified_cgroup_hierarchy=0 SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1"

echo "vm: booting $arch (cgroup $cgroup, init $init, ${smp} cpus, ${mem} MiB, deadline ${timeout} s)"
start=$SECONDS
set +e
timeout --foreground -k 10 "$timeout" \
    "$qemu_dir/usr/bin/$qemu" -L "$qemu_dir/usr/share/qemu" -L "$qemu_dir/usr/share/seabios" \
    "${machine[@]}" -accel tcg,thread=multi -smp "$smp" -m "$mem" \
    -display none -no-reboot -monitor none -serial stdio \
    -kernel "$kdir/vmlinuz" -initrd "$run_dir/initramfs.gz" -append "$append" \
    "${net[@]}" \
    -virtfs "local,path=$rootfs,mount_tag=rootfs,security_model=none,readonly=on" \
    -virtfs "local,path=$repo,mount_tag=repo,security_model=none" \
    </dev/null
qemu_rc=$?
set -e
elapsed=$((SECONDS - start))
if [ $qemu_rc = 124 ] || [ $qemu_rc = 137 ]; then
    die "the $arch guest overran its ${timeout} s deadline (its console is above)"
fi
[ -f "$run_dir/rc" ] || die "the $arch guest ended (qemu status $qemu_rc, after ${elapsed} s) without the command's exit status (its console is above)"
rc=$(cat "$run_dir/rc")
echo "vm: $arch guest: command exited $rc after ${elapsed} s"
exit "$rc"
