"""Listeners and the truth about reaching them, for the exposure tests.

serve SPEC... [-- ARG...]
                bind each SPEC (proto:address:port), echo UDP datagrams,
                print "ready", exit when stdin closes; ARGs after `--` are
                only there to be read in /proc (a proxy's flags).
probe SPEC...   from here, try each SPEC at once: a TCP connect, or a UDP
                request that must be answered; print one JSON object
                {SPEC: true|false}.
"""

import json
import socket
import sys
import threading

TIMEOUT = 2.0


def parse(spec):
    proto, rest = spec.split(":", 1)
    address, port = rest.rsplit(":", 1)
    return proto, address.strip("[]"), int(port)


def family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def serve(specs):
    held = []
    for spec in specs:
        proto, address, port = parse(spec)
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(family(address), kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        if proto == "tcp":
            s.listen(64)
        else:
            threading.Thread(target=echo, args=(s,), daemon=True).start()
        held.append(s)
    print("ready", flush=True)
    sys.stdin.read()


def echo(s):
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def attempt(spec, out):
    proto, address, port = parse(spec)
    try:
        if proto == "tcp":
            s = socket.create_connection((address, port), timeout=TIMEOUT)
            s.close()
            out[spec] = True
        else:
            s = socket.socket(family(address), socket.SOCK_DGRAM)
            s.settimeout(TIMEOUT)
            s.sendto(b"ping", (address, port))
            out[spec] = s.recv(16) == b"ping"
    except OSError:
        out[spec] = False


def probe(specs):
    out = {}
    threads = [threading.Thread(target=attempt, args=(s, out)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    args = sys.argv[2:]
    if "--" in args:
        args = args[: args.index("--")]
    {"serve": serve, "probe": probe}[sys.argv[1]](args)
