"""W3's transport floor: plain TCP sockets on 127.0.0.1 moving the bytes a W3 round moves.

``serve`` listens on a free 127.0.0.1 port, starts NODES ``client`` processes and runs
ROUNDS rounds: each round it sends the BYTES-byte model to every client at once (one
thread per connection) and receives it back from each; a client receives the model into
a buffer and sends that buffer back. Nothing else happens: no framing beyond an 8-byte
length, no serialisation, no arithmetic; TCP_NODELAY is on, as gRPC sets it. Buffers are
allocated (and touched) once, before the first round, and reused: the best a plain
socket can do. Prints one JSON line: the wall time of each round.

usage: python benchmarks/_w3_socket.py serve BYTES NODES ROUNDS [--tls CERT_DIR]
       python benchmarks/_w3_socket.py client PORT BYTES [--ca CA_PEM]
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

LENGTH = struct.Struct("<Q")


def filled(num_bytes: int) -> bytearray:
    """A buffer of ``num_bytes`` whose pages are all touched (not the kernel's zero page)."""
    return bytearray(b"\x5a") * num_bytes


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``."""
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("the peer closed the connection mid-message")
        got += n


def recv_length(sock: socket.socket) -> int:
    header = bytearray(LENGTH.size)
    recv_exact(sock, memoryview(header))
    return int(LENGTH.unpack(header)[0])


def client(port: int, num_bytes: int, ca: Path | None) -> None:
    """Echo each model back until the server sends a zero length."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gRPC does
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    buffer = memoryview(filled(num_bytes))
    with sock:
        while (n := recv_length(sock)) > 0:
            recv_exact(sock, buffer[:n])
            sock.sendall(LENGTH.pack(n))
            sock.sendall(buffer[:n])


def exchange(
    sock: socket.socket, model: memoryview, reply: memoryview, errors: list[BaseException]
) -> None:
    """One node's part of a round: the model out, the same number of bytes back."""
    try:
        sock.sendall(LENGTH.pack(len(model)))
        sock.sendall(model)
        n = recv_length(sock)
        if n != len(model):
            raise ConnectionError(f"expected {len(model)} bytes back, got a length of {n}")
        recv_exact(sock, reply)
    except BaseException as err:  # reported by the main thread
        errors.append(err)


def serve(num_bytes: int, nodes: int, rounds: int, cert_dir: Path | None) -> None:
    context = None
    if cert_dir is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_dir / "server.pem", cert_dir / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    command = [sys.executable, __file__, "client", str(port), str(num_bytes)]
    if cert_dir is not None:
        command += ["--ca", str(cert_dir / "ca.pem")]
    clients = [subprocess.Popen(command) for _ in range(nodes)]
    connections: list[socket.socket] = []
    try:
        listener.settimeout(60)
        for _ in range(nodes):
            sock, _ = listener.accept()
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_side=True)
            connections.append(sock)
        model = memoryview(filled(num_bytes))
        replies = [memoryview(filled(num_bytes)) for _ in range(nodes)]
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=exchange, args=(sock, model, reply, errors))
                for sock, reply in zip(connections, replies, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            times.append(time.perf_counter() - began)
            if errors:
                raise errors[0]
        for sock in connections:
            sock.sendall(LENGTH.pack(0))
        for process in clients:
            process.wait(timeout=60)
        print(json.dumps({"round_s": times}), flush=True)
    finally:
        for sock in connections:
            sock.close()
        listener.close()
        for process in clients:
            if process.poll() is None:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("serve")
    s.add_argument("bytes", type=int)
    s.add_argument("nodes", type=int)
    s.add_argument("rounds", type=int)
    s.add_argument("--tls", type=Path, help="folder with server.pem, server.key and ca.pem")
    c = sub.add_parser("client")
    c.add_argument("port", type=int)
    c.add_argument("bytes", type=int)
    c.add_argument("--ca", type=Path)
    args = parser.parse_args()
    if args.role == "serve":
        serve(args.bytes, args.nodes, args.rounds, args.tls)
    else:
        client(args.port, args.bytes, args.ca)


if __name__ == "__main__":
    main()
