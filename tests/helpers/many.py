# Holds many listeners for the terminal UI's tests, on command (one
# command per stdin line, one answer per line on stdout):
#   at start: opens TCP TCP listeners and UDP bound UDP sockets on
#             127.0.0.1, then answers "ready LOWEST_TCP_PORT". Their ports
#             are chosen outside the ephemeral range: so that other tests'
#             port-0 binds and free ports are not taken by thousands of
#             ours, and because portwatch's baseline leaves out UDP
#             sockets on ephemeral ports (a scan cannot tell an explicit
#             bind() there from a client's automatic one).
#   close N -> closes the N TCP listeners of lowest port, "closed N"
# End of input: exit.
import random, resource, socket, sys

tcp_count, udp_count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def bound(kind, low, high):
    while True:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", random.randrange(low, high)))
            return s
        except OSError:
            s.close()


tcp = []
for _ in range(tcp_count):
    s = bound(socket.SOCK_STREAM, 61000, 65536)
    s.listen()
    tcp.append(s)
udp = [bound(socket.SOCK_DGRAM, 10000, 20000) for _ in range(udp_count)]
tcp.sort(key=lambda s: s.getsockname()[1])
print("ready", tcp[0].getsockname()[1] if tcp else 0)

for line in sys.stdin:
    words = line.split()
    if words[:1] == ["close"]:
        n = int(words[1])
        for s in tcp[:n]:
            s.close()
        del tcp[:n]
        print("closed", n)
