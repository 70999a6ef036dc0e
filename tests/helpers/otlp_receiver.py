"""An OTLP/HTTP logs receiver for the export tests, built on the
OpenTelemetry project's own protobuf messages (the `opentelemetry-proto`
package from PyPI, installed by `cargo xtask test`).

It prints `port N` once listening on 127.0.0.1, then one line per request
it takes: `request JSON`, where JSON holds the request's headers of note
and every log record decoded (event name, times, severity, body,
attributes, the resource's attributes). It answers as told on stdin:

  ok           200 with an empty ExportLogsServiceResponse (the default)
  fail CODE N  CODE (with Retry-After: 0) for the next N requests, then ok
  partial N    200, saying N records were rejected, for the next request
  hold         keeps the next request unanswered (prints `holding`) until
               `release`
  down         stops listening (prints `down`): connections are refused
  up           listens again on the same port (prints `up`)
"""

import gzip
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

lock = threading.Lock()
state = {"fail": None, "fail_left": 0, "partial": 0, "hold": False}
released = threading.Event()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind is None:
        return None
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: a connection per request, so `down` refuses the next.
    protocol_version = "HTTP/1.0"

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            hold = state["hold"]
            state["hold"] = False
            fail = None
            if state["fail_left"] > 0:
                state["fail_left"] -= 1
                fail = state["fail"]
            partial, state["partial"] = state["partial"], 0
        if hold:
            print("holding", flush=True)
            released.wait()
        if fail is not None:
            print("failed", fail, flush=True)
            self.answer(fail, b"", {"Retry-After": "0"})
            return
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        req = logs_service_pb2.ExportLogsServiceRequest()
        req.ParseFromString(body)
        records = []
        for rl in req.resource_logs:
            resource = attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    records.append(
                        {
                            "event_name": r.event_name,
                            "time": r.time_unix_nano,
                            "observed": r.observed_time_unix_nano,
                            "severity_number": r.severity_number,
                            "severity_text": r.severity_text,
                            "body": value(r.body),
                            "attributes": attrs(r.attributes),
                            "resource": resource,
                            "scope": sl.scope.name,
                        }
                    )
        print(
            "request",
            json.dumps(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "content_encoding": self.headers.get("Content-Encoding"),
                    "authorization": self.headers.get("Authorization"),
                    "records": records,
                }
            ),
            flush=True,
        )
        resp = logs_service_pb2.ExportLogsServiceResponse()
        if partial:
            resp.partial_success.rejected_log_records = partial
            resp.partial_success.error_message = "test rejects \x1b[31mthese"
        self.answer(200, resp.SerializeToString(), {"Content-Type": "application/x-protobuf"})

    def answer(self, code, body, headers):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
port = server.server_address[1]
serving = threading.Thread(target=server.serve_forever, daemon=True)
serving.start()
print("port", port, flush=True)

for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    with lock:
        if words[0] == "fail":
            state["fail"], state["fail_left"] = int(words[1]), int(words[2])
        elif words[0] == "partial":
            state["partial"] = int(words[1])
        elif words[0] == "hold":
            released.clear()
            state["hold"] = True
    if words[0] == "release":
        released.set()
    elif words[0] == "down":
        server.shutdown()
        server.server_close()
        print("down", flush=True)
    elif words[0] == "up":
        server = Server(("127.0.0.1", port), Handler)
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        print("up", flush=True)
    elif words[0] in ("ok", "fail", "partial", "hold"):
        print("set", words[0], flush=True)
