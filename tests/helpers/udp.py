# Holds sockets on command, one command per stdin line, one answer per
# line on stdout (the test waits on answers, never on time):
#   bind FAMILY ADDR PORT [reuseport] [lite]  -> "bound ID PORT"  (FAMILY 4 or 6;
#                                          lite: a UDP-Lite socket)
#   tcp ADDR PORT                       -> "bound ID PORT"  (a TCP listener)
#   client ADDR PORT                    -> "bound ID PORT"  (sendto() binds it)
#   free-below N                        -> "port P"  (a UDP port < N, free now)
#   close ID                            -> "closed ID"
#   join CGROUP_DIR                     -> "joined"
#   send ID UNIX_PATH                   -> "sent ID"  (SCM_RIGHTS, then close ours)
#   receive UNIX_PATH                   -> "listening", then "received ID"
#   fence                               -> "fence PORT"  (a TCP listener opened and closed)
#   unix-pairs N                        -> "pairs N"  (N Unix socket pairs held: descriptors
#                                          a look at this process's sockets must get past)
#   bind-after-leaving ADDR             -> "bound UDP_ID UDP_PORT TCP_ID TCP_PORT"  (a UDP
#                                          and a TCP socket made here, then this process
#                                          moves to a new user and network namespace,
#                                          then binds both to ADDR:0 and listens on the
#                                          TCP one: their ports are in the namespace
#                                          they were made in; no privilege needed)
#   pair ADDR                           -> "bound ID1 PORT1 ID2 PORT2"  (two UDP sockets
#                                          bound to ADDR:0 on one CPU, 0.2 ms apart: the
#                                          second's record comes without a wake-up)
#   churn N                             -> "churned N"  (N UDP sockets bound to
#                                          127.0.0.1:0 and closed, one at a time)
#   disconnect ID ADDR PORT             -> "moved ID PORT"  (connect, disconnect: the
#                                          kernel releases a port-0 bind; sendto()
#                                          then binds another port)
import ctypes, os, socket, sys, time

socks = {}
last = 0


def keep(s):
    global last
    last += 1
    socks[last] = s
    return last


def answer(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")


for line in sys.stdin:
    cmd, *a = line.split()
    if cmd == "bind":
        family = socket.AF_INET6 if a[0] == "6" else socket.AF_INET
        # 136: IPPROTO_UDPLITE.
        s = socket.socket(family, socket.SOCK_DGRAM, 136 if "lite" in a[3:] else 0)
        if "reuseport" in a[3:]:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((a[1], int(a[2])))
        answer("bound", keep(s), s.getsockname()[1])
    elif cmd == "tcp":
        s = socket.socket()
        s.bind((a[0], int(a[1])))
        s.listen()
        answer("bound", keep(s), s.getsockname()[1])
    elif cmd == "pair":
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Both on one CPU (the 1 ms is per CPU), the second 0.2 ms after
        # the first: after the first's wake-up has been read, within its
        # millisecond.
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        first.bind((a[0], 0))
        time.sleep(0.0002)
        second.bind((a[0], 0))
        os.sched_setaffinity(0, allowed)
        answer("bound", keep(first), first.getsockname()[1], keep(second), second.getsockname()[1])
    elif cmd == "client":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"q", (a[0], int(a[1])))
        answer("bound", keep(s), s.getsockname()[1])
    elif cmd == "free-below":
        # Walk down from just under N, so tests do not meet each other.
        for port in range(int(a[0]) - 1, 1024, -1):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            finally:
                probe.close()
            answer("port", port)
            break
    elif cmd == "disconnect":
        s = socks[int(a[0])]
        s.connect((a[1], int(a[2])))
        # connect() to AF_UNSPEC (a zeroed address) dissolves the association.
        unspec = (ctypes.c_ubyte * 16)()
        ctypes.CDLL(None, use_errno=True).connect(s.fileno(), unspec, 16)
        s.sendto(b"q", (a[1], int(a[2])))
        answer("moved", a[0], s.getsockname()[1])
    elif cmd == "close":
        socks.pop(int(a[0])).close()
        answer("closed", a[0])
    elif cmd == "join":
        with open(os.path.join(a[0], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        answer("joined")
    elif cmd == "send":
        u = socket.socket(socket.AF_UNIX)
        u.connect(a[1])
        socket.send_fds(u, [b"x"], [socks[int(a[0])].fileno()])
        u.close()
        socks.pop(int(a[0])).close()
        answer("sent", a[0])
    elif cmd == "receive":
        u = socket.socket(socket.AF_UNIX)
        u.bind(a[0])
        u.listen()
        answer("listening")
        sys.stdout.flush()
        conn, _ = u.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1, 1)
        conn.close()
        u.close()
        answer("received", keep(socket.socket(fileno=fds[0])))
    elif cmd == "churn":
        for _ in range(int(a[0])):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.close()
        answer("churned", a[0])
    elif cmd == "unix-pairs":
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        for _ in range(int(a[0])):
            keep(socket.socketpair())
        answer("pairs", a[0])
    elif cmd == "bind-after-leaving":
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket()
        CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
        assert ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
        u.bind((a[0], 0))
        t.bind((a[0], 0))
        t.listen()
        answer("bound", keep(u), u.getsockname()[1], keep(t), t.getsockname()[1])
    elif cmd == "fence":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        s.close()
        answer("fence", port)
    sys.stdout.flush()
