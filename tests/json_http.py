"""The small HTTP servers tests play other parties with (push gateways, remote homeservers): a
JSON answer, and a threaded server on loopback, over TLS when given a certificate."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    def answer_json(self, status: int, body) -> None:
        self.answer_raw(status, json.dumps(body).encode())

    def answer_raw(self, status: int, raw: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def log_message(self, *args):
        pass


def start_server(handler_class, port: int = 0, tls: tuple[str, str] | None = None,
                 host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A threaded server on `host` serving in a daemon thread; `tls` is (cert path, key path).
    Stop it with server.shutdown() and server.server_close()."""
    server = ThreadingHTTPServer((host, port), handler_class)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
