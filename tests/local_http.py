"""A local HTTP server for tests: a handler class served on 127.0.0.1 (a free port) from a daemon thread."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class LocalHTTPServer:
    """Use as a context manager: serving starts on enter and stops on exit. Subclasses pass their handler."""

    def __init__(self, handler: type):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
