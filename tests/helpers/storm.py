# Forks N workers that each open and close COUNT listeners as fast as they
# can, keeping every KEEP-th one open. Each prints "done <pid>" when its
# storm is over, then waits for stdin to close before exiting.
import os, socket, sys

workers, count, keep = (int(a) for a in sys.argv[1:4])
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        kept = []
        for i in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            if i % keep == 0:
                kept.append(s)
            else:
                s.close()
        sys.stdout.write(f"done {os.getpid()}\n")  # one write: workers share the pipe
        sys.stdin.read()
        os._exit(0)
    pids.append(pid)
sys.stdin.read()
for pid in pids:
    os.waitpid(pid, 0)
