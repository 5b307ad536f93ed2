"""One guest connection of a --guestfwd, to the host's 127.0.0.1:PORT.

libslirp runs this once per connection the guest opens, with the connection
as stdin and stdout, so a forward serves any number of connections (a
`tcp:` chardev would be one connection, opened when qemu starts). Nothing
is printed: stderr is the connection too.
"""
import os
import socket
import sys
import threading


def main() -> None:
    # stderr is the guest's connection: a traceback must never reach it.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    upstream = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
    upstream.settimeout(None)

    def to_host() -> None:
        try:
            while chunk := os.read(0, 65536):
                upstream.sendall(chunk)
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            os._exit(1)

    threading.Thread(target=to_host, daemon=True).start()
    while chunk := upstream.recv(65536):
        view = memoryview(chunk)
        while view:
            view = view[os.write(1, view):]


if __name__ == "__main__":
    try:
        main()
    except OSError:
        sys.exit(1)
