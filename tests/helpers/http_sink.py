"""A local HTTP server for the webhook tests (Python's http.server).

POST /ok answers 200; POST /flaky answers 500 the first time, then 200;
POST /slow answers only after a minute. Each POST is printed as
`post PATH BODY` when it arrives; the port as `port N` at the start.
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
seen = {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            seen[self.path] = seen.get(self.path, 0) + 1
            n = seen[self.path]
            print("post", self.path, body.decode(), flush=True)
        if self.path == "/slow":
            time.sleep(60)
        status = 500 if self.path == "/flaky" and n == 1 else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("port", server.server_address[1], flush=True)
server.serve_forever()
