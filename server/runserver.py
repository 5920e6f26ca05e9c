#!/usr/bin/env python3
"""keepup's example service: answers every GET with {"msg":"running"} on env PORT (default 8000),
or on the socket it is handed (LISTEN_FDS, as keepup's `listen` and systemd pass it)."""

import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"msg": "running"}, separators=(",", ":")).encode()

# Where handed sockets start (systemd's SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, fmt, *args):
        # A unix socket's client has no address.
        client = self.client_address[0] if self.client_address else "unix"
        print("%s %s" % (client, fmt % args), flush=True)


def handed_socket():
    """The first socket handed over, if any: only when LISTEN_PID names this process (the
    variables may have been meant for a parent, and leaked)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0") or "0") < 1:
        return None
    return socket.socket(fileno=LISTEN_FDS_START)


def main():
    handed = handed_socket()
    if handed is None:
        port = int(os.environ.get("PORT", "8000"))
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        print("listening on 127.0.0.1:%d" % port, flush=True)
    else:
        # Already bound and listening: the server only accepts on it.
        server = ThreadingHTTPServer(
            handed.getsockname(), Handler, bind_and_activate=False
        )
        server.socket = handed
        print("listening on the socket it was handed, %s" % (handed.getsockname(),), flush=True)
    # TERM (keepup's stop_signal, and how `keepup reload` retires a generation): stop
    # accepting, finish the requests in progress, then exit. Connections not yet accepted stay
    # in the socket's queue for the next generation.
    server.daemon_threads = False
    server.block_on_close = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
