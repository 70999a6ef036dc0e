"""Processes whose story portwatch tells (tests/why.rs). Every mode
listens on 127.0.0.1 and prints `port N`; each step waits on a line from
the test or on the condition it needs, never on a fixed time."""
import os
import signal
import socket
import sys
import time


def listen():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def until(cond):
    # A condition another process brings about (a re-parenting): polled.
    while not cond():
        time.sleep(0.005)


mode = sys.argv[1]
if mode == "cgroup":
    # Joins the cgroup directory argv[2], then listens.
    with open(os.path.join(sys.argv[2], "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    s = listen()
    print("port", s.getsockname()[1], flush=True)
    sys.stdin.readline()
elif mode == "cwd":
    os.chdir(sys.argv[2])
    s = listen()
    print("port", s.getsockname()[1], flush=True)
    sys.stdin.readline()
elif mode == "later":
    # Listens when told: after the test removed its executable.
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()
    s = listen()
    print("port", s.getsockname()[1], flush=True)
    sys.stdin.readline()
elif mode == "double-fork":
    # A daemon the classic way; it listens once its parent is gone.
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.close(w)
        os.read(r, 1)
        s = listen()
        print("daemon", os.getpid(), s.getsockname()[1], flush=True)
        sys.stdin.readline()
        os._exit(0)
    os.close(r)
    os.waitpid(mid, 0)
    print("mid", mid, flush=True)
    os.write(w, b"g")
    sys.stdin.readline()
elif mode == "reparent":
    # The child listens; its parent exits when told; the child closes
    # once re-parented (a server whose launcher went away).
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        s = listen()
        print("child", os.getpid(), s.getsockname()[1], flush=True)
        until(lambda: os.getppid() != parent)
        s.close()
        print("closed", flush=True)
        os._exit(0)
    sys.stdin.readline()
    os._exit(0)
elif mode == "report":
    # Run where there is no stdout to read (a tmux pane): writes
    # `PID PORT` to the file argv[2], then waits to be killed.
    s = listen()
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {s.getsockname()[1]}\n")
    os.rename(tmp, sys.argv[2])
    signal.pause()
elif mode == "named-parent":
    # Takes the name argv[2] (as anyone may), then its child listens.
    with open("/proc/self/comm", "w") as f:
        f.write(sys.argv[2])
    child = os.fork()
    if child == 0:
        with open("/proc/self/comm", "w") as f:
            f.write("pwchild")
        s = listen()
        print("port", s.getsockname()[1], flush=True)
        sys.stdin.readline()
        os._exit(0)
    os.waitpid(child, 0)
else:
    sys.exit(f"no mode {mode}")
