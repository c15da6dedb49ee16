"""A listener at a D-Bus socket path that is not the bus: it accepts anyone, then answers Hello
and every later call with a METHOD_RETURN of (true, ""), the answer pimd gives a holder with a
live grant. A user who could put this where a set-uid program looks for the system bus would
forge pimd's word; pam_pim must not take it.

    python3 fake_bus.py SOCKET_PATH     (prints "listening" once bound)
"""
import socket
import struct
import sys


def pad(data, n):
    return data + b"\0" * ((-len(data)) % n)


def method_return(serial, reply_serial, signature, body):
    fields = b""
    for code, sig, value in (
        (5, b"u", struct.pack("<I", reply_serial)),
        (8, b"g", bytes([len(signature)]) + signature + b"\0"),
    ):
        fields = pad(fields, 8) + bytes([code, len(sig)]) + sig + b"\0" + value
    header = struct.pack("<cBBBIII", b"l", 2, 0, 1, len(body), serial, len(fields))
    return pad(header + fields, 8) + body


def dbus_string(text):
    return struct.pack("<I", len(text)) + text + b"\0"


def serve(conn):
    data = b""
    while b"BEGIN\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
    hello = method_return(1, 1, b"s", dbus_string(b":1.4242"))
    allowed = method_return(2, 2, b"bs", struct.pack("<I", 1) + dbus_string(b""))
    conn.sendall(hello + allowed)
    while conn.recv(4096):
        pass


def main():
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    listener.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn)
        except OSError:
            pass
        finally:
            conn.close()


main()
