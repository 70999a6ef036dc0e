# Holds many listeners for the terminal UI's tests, on command (one
# command per stdin line, one answer per line on stdout):
#   at start: opens TCP TCP listeners (127.0.0.1, port 0) and UDP bound
#             UDP sockets (127.0.0.1, free ports below the ephemeral range:
#             a scan cannot tell a bind() there from a client's automatic
#             one, so portwatch counts only those), then answers
#             "ready LOWEST_TCP_PORT"
#   close N -> closes the N TCP listeners of lowest port, "closed N"
# End of input: exit.
import random, resource, socket, sys

tcp_count, udp_count = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

tcp = []
for _ in range(tcp_count):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    tcp.append(s)
udp = []
while len(udp) < udp_count:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", random.randrange(10000, 30000)))
    except OSError:
        s.close()
        continue
    udp.append(s)
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
