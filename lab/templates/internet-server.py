#!/usr/bin/env python3
"""The lab internet's test server: answers and logs every request's source address."""
import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        source = self.client_address[0]
        with open("/lab/requests.log", "a", encoding="utf-8") as log:
            log.write(f"{datetime.datetime.now(datetime.UTC).isoformat()} {source} {self.path}\n")
        body = f"{source}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", 80), Handler).serve_forever()
