"""A listener at pimd's PAM socket path that is not pimd. Each connection it accepts is
reported on stdout ("connection from uid N"); then, by MODE:

    allow   reads the request and answers "allowed" with the request's id: the answer pimd gives
            a holder with a live grant (a user who could put this where the module looks would
            forge pimd's word; pam_pim must not take it)
    stall   reads the request and never answers (a stuck pimd)

    python3 fake_pimd.py MODE SOCKET_PATH     (prints "listening" once bound)
"""
import os
import socket
import struct
import sys
import threading

mode, path = sys.argv[1], sys.argv[2]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(64)
print("listening", flush=True)
held = []


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def serve(conn):
    try:
        head = read_exact(conn, 16)
        magic, request_id, length = struct.unpack("<4sQI", head)
        read_exact(conn, length)
        if mode == "allow" and magic == b"PIMq":
            conn.sendall(struct.pack("<4sQI", b"PIMa", request_id, 1) + b"\x01")
            conn.close()
        else:
            held.append(conn)
    except EOFError:
        conn.close()


while True:
    conn, _ = server.accept()
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    print("connection from uid %d" % uid, flush=True)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
