"""Tiny HTTP server for the nat_instance scenario: answers every GET with the
peer address it sees (and logs it with the port it came in on), so the test
can tell whether a request arrived, and from the client itself or from the
NAT instance. Listens on every port given on the command line."""

import http.server
import sys
import threading


class WhoAmI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = f"{self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        sys.stdout.write(f"peer={self.client_address[0]} port={self.server.server_port} {format % args}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    servers = [http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), WhoAmI) for port in sys.argv[1:]]  # noqa: S104
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()
