"""`repo-agent view --serve`: the written site over HTTP on 127.0.0.1 only (never another interface)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise here
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def make_server(root: Path, port: int) -> ThreadingHTTPServer:
    """A server for the files under `root`, bound to 127.0.0.1:`port` (0 picks a free port)."""
    handler = functools.partial(_QuietHandler, directory=str(Path(root).resolve()))
    return ThreadingHTTPServer((HOST, port), handler)
