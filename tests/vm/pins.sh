# Every download the VM rig makes, pinned. Sourced by fetch.sh. When Debian
# drops a pinned version from its mirrors, fetch.sh fails naming it: update
# the version and its sha256 here together (`sha256sum` of the new .deb in
# the cache's debs/; a mismatch is reported with both digests).

DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY=http://deb.debian.org/debian-security
GUEST_SUITE=bookworm

# Debian's own 6.1 kernels, one ABI for the three architectures.
KERNEL_ABI=6.1.0-57
KERNEL_VERSION=6.1.192-3

# qemu-system from bookworm-backports: it must match the machine's
# qemu-utils (10.0.2 from backports), or apt would remove qemu-utils.
QEMU_VERSION=1:10.0.2+ds-2+deb13u1~bpo12+1
SEABIOS_VERSION=1.16.3-2~bpo12+1

# package=version arch sha256 (of the .deb)
PINNED_DEBS=(
    "linux-image-$KERNEL_ABI-amd64=$KERNEL_VERSION amd64 14d219d01e1283261817d961dbb3895cb5b4288d0de10e0ba0632a0d993e15bf"
    "linux-image-$KERNEL_ABI-arm64=$KERNEL_VERSION arm64 8301bd5b5b2cf8fd5e479832200c23e64eca0ae9ec45c487c5c318b1e44d4692"
    "linux-image-$KERNEL_ABI-armmp-lpae=$KERNEL_VERSION armhf 8e24754bef449c83a1f28f2c86759eb13ee9bf9b08f035230a56222cfad8bf6b"
    "qemu-system-x86=$QEMU_VERSION amd64 4a6b1856c8b0d7df4ff8e70249e12c473ccf8d516aadb4ae14d3d938faed0c65"
    "qemu-system-arm=$QEMU_VERSION amd64 edebbab09db3882c48ef9c00049c7c6a2d76d195cb88d830baadd1fb705bbc66"
    "qemu-system-common=$QEMU_VERSION amd64 23a4672a138832d7173855e981aa8282c73ef5e04e080fa7ada9f82c6b34f507"
    "qemu-system-data=$QEMU_VERSION all 2d831088187087013b3fcbd19bdfb955b182a2d5a08f6dafa0ad1c6d2007fb4e"
    "seabios=$SEABIOS_VERSION all 48390d0a534c66d11789e39518aa219773a9d3677b29fe1af8799dfb563ec713"
)

# The shared libraries the backports qemu links, from bookworm itself
# (installed system-wide by fetch.sh; plain bookworm packages, no conflict).
QEMU_LIBS=(libcapstone4 libpmem1 libfdt1 librdmacm1 libibverbs1 libslirp0 libvdeplug2)

# What builds a guest rootfs: mmdebstrap runs foreign maintainer scripts
# through qemu-user binfmt.
ROOTFS_TOOLS=(mmdebstrap arch-test binfmt-support qemu-user-static)

# The guest's Debian: systemd as PID 1 for the agent's unit, busybox for
# the initramfs and the test images, umoci and skopeo for the tests' images,
# crun as the benchmark's reference.
ROOTFS_INCLUDE=systemd-sysv,busybox-static,umoci,skopeo,crun

# Kernel modules the guests load (virtio transport, 9p shares, overlay root,
# user-mode network), each after what its .modinfo says it depends on.
GUEST_MODULES=(virtio_pci virtio_mmio 9pnet_virtio 9p overlay virtio_net)
