# Shared by the VM rig's scripts.
VM_CACHE=${DEDGE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dedge/vm}

die() { echo "vm: $*" >&2; exit 1; }

# The unpacked rootfs of ARCH, named by what it includes so a change of the
# list builds a new one.
rootfs_dir() {
    echo "$VM_CACHE/rootfs-$1-$GUEST_SUITE-$(echo "$ROOTFS_INCLUDE" | sha256sum | cut -c1-12)"
}

# Puts cargo on PATH where a non-login shell lacks rustup's env.
use_cargo() {
    if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
}
