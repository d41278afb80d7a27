"""A local HTTP server that answers JSON, for tests that stand in for a real server.

`JsonServer(get, post)` serves on a free port of 127.0.0.1 in a daemon thread:
`get(path)` answers GET requests, `post(path, body)` answers POST requests with
their decoded JSON body; both return what is sent back as JSON with status 200.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonServer:
    def __init__(self, get: Callable[[str], Any], post: Callable[[str, Any], Any]):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._send(get(self.path))

            def do_POST(self):
                self._send(post(self.path, json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")))

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
