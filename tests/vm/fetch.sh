#!/usr/bin/env bash
# Brings in what the VM rig boots, every download pinned (tests/vm/pins.sh)
# and cached in $DEDGE_VM_CACHE (default ~/.cache/dedge/vm), outside any
# checkout, so a second run, or CI on a fresh clone, downloads nothing:
#
#   qemu-system 10.0.2 (bookworm-backports), unpacked into the cache;
#   Debian's 6.1 kernels for amd64, arm64 and armhf with the few modules
#   a guest needs, in load order;
#   a Debian rootfs per architecture (mmdebstrap), unpacked.
#
#   tests/vm/fetch.sh [amd64|arm64|armhf ...]     (default: all three)
#
# Runs as root (apt for qemu's libraries, mmdebstrap and binfmt for the
# foreign rootfs, files owned by the guest's users). A missing or changed
# download fails naming the package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/pins.sh
. "$here/pins.sh"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armhf)
for a in "${arches[@]}"; do
    case "$a" in amd64|arm64|armhf) ;; *) die "unknown architecture '$a' (amd64, arm64, armhf)";; esac
done

[ "$(id -u)" = 0 ] || die "fetch.sh runs as root (it builds guest rootfs trees owned by their users)"
as_root() { "$@"; }
mkdir -p "$VM_CACHE"/{debs,apt/lists/partial,apt/cache/archives/partial,apt/etc}

# --- host packages: qemu's libraries and the rootfs tools -----------------
need=()
for p in "${QEMU_LIBS[@]}" "${ROOTFS_TOOLS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "vm: installing ${need[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- a private APT for foreign-arch and backports downloads ---------------
# Never `dpkg --add-architecture` or a system backports source: apt would
# then offer to replace the machine's own packages.
apt_conf=$VM_CACHE/apt/apt.conf
cat >"$VM_CACHE/apt/etc/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=amd64,arm64,armhf] $DEBIAN_MIRROR bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=amd64,arm64,armhf] $DEBIAN_MIRROR bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=amd64,arm64,armhf] $DEBIAN_SECURITY bookworm-security main
SRC
cat >"$apt_conf" <<CONF
Dir::State "$VM_CACHE/apt";
Dir::State::lists "$VM_CACHE/apt/lists";
Dir::State::status "$VM_CACHE/apt/status";
Dir::Cache "$VM_CACHE/apt/cache";
Dir::Etc::SourceList "$VM_CACHE/apt/etc/sources.list";
Dir::Etc::SourceParts "$VM_CACHE/apt/etc/none";
Dir::Etc::PreferencesParts "$VM_CACHE/apt/etc/none";
APT::Architectures { "amd64"; "arm64"; "armhf"; };
APT::Sandbox::User "root";
CONF
touch "$VM_CACHE/apt/status"
apt_updated=0

deb_file() { # NAME=VERSION ARCH -> the cached .deb's path
    local name=${1%%=*} version=${1#*=}
    echo "$VM_CACHE/debs/${name}_${version//:/%3a}_$2.deb"
}

fetch_deb() { # "NAME=VERSION ARCH SHA256"
    local spec arch sha file
    read -r spec arch sha <<<"$1"
    file=$(deb_file "$spec" "$arch")
    if [ ! -f "$file" ]; then
        if [ $apt_updated = 0 ]; then
            APT_CONFIG=$apt_conf apt-get update -qq || die "apt-get update for the VM rig's private APT failed"
            apt_updated=1
        fi
        local qual=${spec%%=*}
        [ "$arch" = amd64 ] || [ "$arch" = all ] || qual="$qual:$arch"
        echo "vm: downloading $spec ($arch)"
        (cd "$VM_CACHE/debs" && APT_CONFIG=$apt_conf apt-get download -qq "$qual=${spec#*=}") ||
            die "cannot download pinned package $spec ($arch); update tests/vm/pins.sh if Debian dropped it"
    fi
    local got
    got=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$got" = "$sha" ] || die "$(basename "$file"): sha256 $got, pinned $sha (tests/vm/pins.sh)"
}

for d in "${PINNED_DEBS[@]}"; do
    read -r spec arch _ <<<"$d"
    case "$spec" in
        linux-image-*)
            karch=$arch
            want=0
            for a in "${arches[@]}"; do [ "$a" = "$karch" ] && want=1; done
            [ $want = 1 ] || continue
            ;;
    esac
    fetch_deb "$d"
done

# --- qemu, unpacked privately --------------------------------------------
qemu_stamp=$VM_CACHE/qemu/.unpacked-$QEMU_VERSION
if [ ! -f "$qemu_stamp" ]; then
    rm -rf "$VM_CACHE/qemu"
    mkdir -p "$VM_CACHE/qemu"
    for d in "${PINNED_DEBS[@]}"; do
        read -r spec arch _ <<<"$d"
        case "$spec" in qemu-*|seabios=*) dpkg-deb -x "$(deb_file "$spec" "$arch")" "$VM_CACHE/qemu" ;; esac
    done
    touch "$qemu_stamp"
fi
for q in qemu-system-x86_64 qemu-system-aarch64 qemu-system-arm; do
    missing=$(ldd "$VM_CACHE/qemu/usr/bin/$q" | grep 'not found' || true)
    [ -z "$missing" ] || die "$q lacks libraries: $missing"
done

# --- kernels and their modules -------------------------------------------
kernel_flavour() { case "$1" in amd64) echo amd64;; arm64) echo arm64;; armhf) echo armmp-lpae;; esac; }

# Prints the modules `name` needs, dependencies first, from each .ko's
# .modinfo `depends=` (the debs ship no modules.dep and depmod may be absent).
module_order() { # TREE NAME
    local tree=$1 name=${2//-/_} ko dep
    case " $seen " in *" $name "*) return;; esac
    seen="$seen $name"
    ko=$(find "$tree" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n1)
    if [ -z "$ko" ]; then
        grep -qE "/${name//_/[-_]}\.ko$" "$tree/modules.builtin" ||
            die "kernel module $name is neither shipped nor built in"
        return
    fi
    for dep in $(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
        module_order "$tree" "$dep"
    done
    echo "$ko"
}

for a in "${arches[@]}"; do
    flav=$(kernel_flavour "$a")
    kdir=$VM_CACHE/kernel-$a
    stamp=$kdir/.ready-$KERNEL_ABI-$KERNEL_VERSION-$(echo "${GUEST_MODULES[*]}" | sha256sum | cut -c1-12)
    [ -f "$stamp" ] && continue
    rm -rf "$kdir"
    mkdir -p "$kdir/x" "$kdir/modules"
    dpkg-deb -x "$(deb_file "linux-image-$KERNEL_ABI-$flav=$KERNEL_VERSION" "$a")" "$kdir/x"
    cp "$kdir/x/boot/vmlinuz-$KERNEL_ABI-$flav" "$kdir/vmlinuz"
    tree=$kdir/x/lib/modules/$KERNEL_ABI-$flav
    seen=""
    : >"$kdir/modules/order"
    for m in "${GUEST_MODULES[@]}"; do
        module_order "$tree" "$m"
    done | while read -r ko; do
        cp "$ko" "$kdir/modules/"
        basename "$ko" >>"$kdir/modules/order"
    done
    # The unpacked tree is hundreds of MB; keep only what boots.
    rm -rf "$kdir/x"
    touch "$stamp"
    echo "vm: kernel $KERNEL_ABI-$flav ready ($(wc -l <"$kdir/modules/order") modules)"
done

# --- guest rootfs ----------------------------------------------------------
for a in "${arches[@]}"; do
    dir=$(rootfs_dir "$a")
    [ -f "$dir/.ready" ] && continue
    if [ "$a" != amd64 ]; then
        mountpoint -q /proc/sys/fs/binfmt_misc || as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        q=qemu-aarch64; [ "$a" = armhf ] && q=qemu-arm
        as_root update-binfmts --enable "$q" 2>/dev/null || true
    fi
    echo "vm: building the $a guest rootfs with mmdebstrap (a few minutes, once)"
    as_root rm -rf "$dir.part" "$dir"
    as_root mmdebstrap --quiet --arch="$a" --variant=minbase --include="$ROOTFS_INCLUDE" \
        "$GUEST_SUITE" "$dir.part" "$DEBIAN_MIRROR" || die "mmdebstrap for $a failed"
    # What the guest runs, for the record (the suite pins, not every version).
    chroot "$dir.part" dpkg-query -W >"$dir.part/.packages" 2>/dev/null || true
    mv "$dir.part" "$dir"
    touch "$dir/.ready"
    echo "vm: $a rootfs ready"
done
echo "vm: fetched (cache $VM_CACHE)"
