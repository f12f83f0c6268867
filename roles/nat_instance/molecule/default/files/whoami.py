"""Tiny HTTP server for the nat_instance scenario: answers every GET with the
peer address it sees (and logs it), so the test can tell whether a request
arrived from the client itself or from the NAT instance."""

import http.server
import sys


class WhoAmI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        sys.stdout.write(f"peer={self.client_address[0]} {format % args}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), WhoAmI).serve_forever()  # noqa: S104
