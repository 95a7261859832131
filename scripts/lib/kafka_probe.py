#!/usr/bin/env python3
"""Ask a Kafka broker for cluster metadata (Metadata v4) and exit 0 only if it names at least one broker.

A TCP connect is not enough: a KRaft broker accepts connections before it has caught up with the
metadata log. Usage: kafka_probe.py HOST:PORT [timeout_seconds]
"""
import socket
import struct
import sys


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    client_id = b"procon-services"
    # Request header v1: api_key, api_version, correlation_id, client_id; body: topics=null, allow_auto_topic_creation=false.
    body = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id + struct.pack(">i?", -1, False)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read(s, 4))[0]
            resp = _read(s, size)
    except (OSError, ValueError) as e:
        print(f"kafka probe: {e}", file=sys.stderr)
        return 1
    correlation, _throttle, brokers = struct.unpack(">iii", resp[:12])
    if correlation != 7 or brokers < 1:
        print(f"kafka probe: metadata names {brokers} brokers", file=sys.stderr)
        return 1
    return 0


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ValueError("connection closed by broker")
        buf += chunk
    return buf


if __name__ == "__main__":
    sys.exit(main())
