# A stand-in for `portwatch daemon --socket`, for the clients' tests: it
# serves one client at SOCKET, reads its request line, answers "request
# LINE" on stdout, then writes the lines of FILE (as they are) to it and
# answers "sent"; it holds the connection until its stdin closes.
import os, socket, sys

path, lines_file = sys.argv[1], sys.argv[2]
if os.path.exists(path):
    os.unlink(path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(1)
print("listening", flush=True)
client, _ = server.accept()
request = b""
while not request.endswith(b"\n"):
    chunk = client.recv(4096)
    if not chunk:
        break
    request += chunk
print("request", request.decode().strip(), flush=True)
with open(lines_file, "rb") as f:
    try:
        client.sendall(f.read())
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client hung up before the end: what the test wants to see
print("sent", flush=True)
sys.stdin.read()
