#!/usr/bin/env python3
"""The lab's TCP relay: tcp-relay.py LISTEN_IP LISTEN_PORT TARGET_IP TARGET_PORT (the AWS API endpoint)."""
import contextlib
import ipaddress
import socket
import sys
import threading


def endpoint(ip, port):
    return str(ipaddress.ip_address(ip)), int(port)


def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        return
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(client, target):
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError as exc:
        print(f"relay: {target[0]}:{target[1]} unreachable: {exc}", file=sys.stderr, flush=True)
        client.close()
        return
    upstream.settimeout(None)
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
    pump(client, upstream)


def main(argv):
    listen, target = endpoint(*argv[1:3]), endpoint(*argv[3:5])
    server = socket.create_server(listen)
    print(f"relay {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn, target), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv)
