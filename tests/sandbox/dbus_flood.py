#!/usr/bin/env python3
"""A local user's flood of pimd: CONNECTIONS connections to the system bus, each calling
org.pim.Manager1.Activate("admin", 0, REASON, "", "") with a REASON of MIB mebibytes (or, with
METHOD MfaEnroll, org.pim.Manager1.MfaEnroll()), one call after the other, until the file STOP
exists (or CALLS calls each). With METHOD CheckAccess, each of CONNECTIONS loops calls
org.pim.Manager1.CheckAccess(NAME, ["sudo"]) with a random NAME nobody has, each call on a
connection of its own, opened for it and closed after (so that pimd never knows the caller
beforehand).

busctl, gdbus and dbus-send take arguments on their command line, which the kernel limits to
128 KiB an argument: this speaks the D-Bus wire protocol itself (SASL EXTERNAL, little-endian
messages), the way any local program may.

Prints "connected" once every connection said Hello, then, at the end, one JSON document:
{"calls": N, "errors": {ERROR_NAME: COUNT}, "messages": {ERROR_NAME: FIRST_MESSAGE},
 "shapes": {MESSAGE_WITH_EACH_NUMBER_AS_N: COUNT}, "replies": R}
(R counts method returns: a flood call that pimd accepted).

usage: dbus_flood.py CONNECTIONS CALLS MIB STOP [METHOD]
"""

import json
import os
import re
import socket
import struct
import sys
import threading

BUS = "/run/dbus/system_bus_socket"
METHOD_CALL, METHOD_RETURN, ERROR = 1, 2, 3
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SIGNATURE = 1, 2, 3, 4, 5, 6, 8


def pad(buf, n):
    return buf + b"\0" * (-len(buf) % n)


def string(buf, value):
    buf = pad(buf, 4)
    return buf + struct.pack("<I", len(value)) + value + b"\0"


def body(signature, args):
    buf = b""
    for kind, arg in zip(signature, args):
        if kind == "s":
            buf = string(buf, arg if isinstance(arg, bytes) else arg.encode())
        elif kind == "t":
            buf = pad(buf, 8) + struct.pack("<Q", arg)
        elif kind == "a":  # "as": an array of strings
            items = b""
            for item in arg:
                items = string(items, item.encode())
            buf = pad(buf, 4) + struct.pack("<I", len(items)) + items
        else:
            raise ValueError(kind)
    return buf


def header_field(buf, code, kind, value):
    buf = pad(buf, 8) + bytes([code]) + bytes([1]) + kind.encode() + b"\0"
    if kind in "so":
        return string(buf, value.encode())
    if kind == "g":
        return buf + bytes([len(value)]) + value.encode() + b"\0"
    raise ValueError(kind)


def message(serial, destination, path, interface, member, signature, payload):
    fields = header_field(b"", PATH, "o", path)
    fields = header_field(fields, INTERFACE, "s", interface)
    fields = header_field(fields, MEMBER, "s", member)
    fields = header_field(fields, DESTINATION, "s", destination)
    if signature:
        fields = header_field(fields, SIGNATURE, "g", signature)
    head = struct.pack("<cBBBII", b"l", METHOD_CALL, 0, 1, len(payload), serial)
    head += struct.pack("<I", len(fields)) + fields
    return pad(head, 8) + payload


class Connection:
    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(BUS)
        uid = str(os.getuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += self.sock.recv(1)
        if not line.startswith(b"OK"):
            raise RuntimeError(line)
        self.sock.sendall(b"BEGIN\r\n")
        self.serial = 0
        self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                  "Hello", "", b"")

    def read(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("the bus closed the connection")
            out += chunk
        return bytes(out)

    def call(self, destination, path, interface, member, signature, payload):
        """The reply to one call: (message type, error name, first string of the body)."""
        self.serial += 1
        self.sock.sendall(message(self.serial, destination, path, interface, member,
                                  signature, payload))
        while True:
            fixed = self.read(16)
            kind = fixed[1]
            (body_len,) = struct.unpack("<I", fixed[4:8])
            (fields_len,) = struct.unpack("<I", fixed[12:16])
            fields = self.read(fields_len + (-(16 + fields_len) % 8))
            payload = self.read(body_len)
            values = parse_fields(fields[:fields_len])
            if kind in (METHOD_RETURN, ERROR) and values.get(REPLY_SERIAL) == self.serial:
                text = ""
                if values.get(SIGNATURE, "").startswith("s") and len(payload) >= 4:
                    n = struct.unpack("<I", payload[:4])[0]
                    text = payload[4:4 + n].decode(errors="replace")
                return kind, values.get(ERROR_NAME, ""), text


def parse_fields(buf):
    values, pos = {}, 0
    while pos < len(buf):
        pos += -pos % 8
        code, siglen = buf[pos], buf[pos + 1]
        kind = buf[pos + 2:pos + 2 + siglen].decode()
        pos += 3 + siglen
        if kind in "so":
            pos += -pos % 4
            n = struct.unpack("<I", buf[pos:pos + 4])[0]
            values[code] = buf[pos + 4:pos + 4 + n].decode()
            pos += 5 + n
        elif kind == "g":
            n = buf[pos]
            values[code] = buf[pos + 1:pos + 1 + n].decode()
            pos += 2 + n
        elif kind == "u":
            pos += -pos % 4
            values[code] = struct.unpack("<I", buf[pos:pos + 4])[0]
            pos += 4
        else:
            raise ValueError(kind)
    return values


def main():
    connections, calls, mib = (int(arg) for arg in sys.argv[1:4])
    stop = sys.argv[4]
    method = sys.argv[5] if len(sys.argv) > 5 else "Activate"
    fresh = method == "CheckAccess"
    if method == "Activate":
        signature, payload = "stsss", body("stsss", ["admin", 0, b"x" * (mib << 20), "", ""])
    else:
        signature, payload = "", b""
    buses = [Connection() for _ in range(connections)]
    print("connected", flush=True)
    lock = threading.Lock()
    result = {"calls": 0, "errors": {}, "messages": {}, "shapes": {}, "replies": 0}

    def flood(bus):
        for _ in range(calls):
            if os.path.exists(stop):
                return
            call_signature, call_payload = signature, payload
            if fresh:
                bus = Connection()
                nobody = "u" + os.urandom(12).hex()
                call_signature, call_payload = "sas", body("sa", [nobody, ["sudo"]])
            kind, name, text = bus.call("org.pim.Manager1", "/org/pim/Manager1",
                                        "org.pim.Manager1", method, call_signature, call_payload)
            if fresh:
                bus.sock.close()
            with lock:
                result["calls"] += 1
                if kind == ERROR:
                    result["errors"][name] = result["errors"].get(name, 0) + 1
                    result["messages"].setdefault(name, text[:300])
                    shape = re.sub(r"[0-9]+", "N", text[:300])
                    result["shapes"][shape] = result["shapes"].get(shape, 0) + 1
                else:
                    result["replies"] += 1

    threads = [threading.Thread(target=flood, args=(bus,)) for bus in buses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(result), flush=True)


main()
