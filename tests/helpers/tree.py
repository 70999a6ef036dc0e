# A process tree that listens from itself, a thread, a child and a daemon
# that double-forks into its own session. Prints "<who> <port> <pid>" lines.
# stdin: "go" starts it, "exit" ends this process (the child follows, the
# daemon stays and listens once more when this process is gone).
import os, socket, sys, threading, time

def listen(tag):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    sys.stdout.write(f"{tag} {s.getsockname()[1]} {os.getpid()}\n")  # one write: the tree shares the pipe
    return s

sys.stdin.readline()
keep = [listen("self")]
t = threading.Thread(target=lambda: keep.append(listen("thread")))
t.start()
t.join()

me = os.getpid()
r, w = os.pipe()
if os.fork() == 0:
    # The child keeps its copies of the parent's listeners: they close when
    # it exits, still owned by the parent.
    os.close(w)
    c = listen("child")
    os.read(r, 1)  # returns when the parent exits
    os._exit(0)
if os.fork() == 0:
    # The daemon must not hold the pipe or the parent's listeners.
    os.close(r)
    os.close(w)
    for s in keep:
        s.close()
    os.setsid()
    if os.fork() == 0:
        d = listen("daemon")
        def alive(pid):  # a zombie counts as gone
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:  # gone, or being reaped while we read
                return False
        while alive(me):  # wait for the original process to be gone
            time.sleep(0.01)
        late = listen("daemon-late")
        while True:
            time.sleep(60)
    os._exit(0)
os.close(r)
sys.stdin.readline()
os._exit(0)
