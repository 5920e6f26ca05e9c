#!/usr/bin/env python3
"""keepup's example service: answers every GET with {"msg":"running"} on env PORT (default 8000)."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"msg": "running"}, separators=(",", ":")).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


def main():
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("listening on 127.0.0.1:%d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
