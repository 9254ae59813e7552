"""The model server's /metrics, and nothing else, on a port of its own.

vLLM and TGI serve their Prometheus metrics on the same port as the inference API, so a NetworkPolicy that lets
Prometheus scrape them would also let Prometheus's namespace call the model, past the gateway's auth and quotas.
This sidecar runs in the model server's pod (with the runtime's own image: the standard library only) and answers
GET /metrics on its port by reading the server's /metrics over loopback; every other path and method is refused,
so the Prometheus NetworkPolicy admits this port and never the API's.

Usage: python3 metrics_proxy.py --port 9400 --upstream http://127.0.0.1:8080/metrics
(an https upstream, as KServe's LLMInferenceService serves, is read without verifying its self-issued
certificate: the connection never leaves the pod.)
"""

from __future__ import annotations

import argparse
import http.server
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 10.0
MAX_BYTES = 64 * 1024 * 1024  # a scrape larger than this is an upstream bug, not metrics


class MetricsOnly(http.server.BaseHTTPRequestHandler):
    """GET /metrics (query ignored) is forwarded; anything else is 404 or 405, with no upstream call."""

    upstream = ""
    context: ssl.SSLContext | None = None
    server_version = "tuneline-metrics"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._refuse(404, "only /metrics is served here")
            return
        try:
            with urllib.request.urlopen(self.upstream, timeout=TIMEOUT_S, context=self.context) as reply:
                body = reply.read(MAX_BYTES + 1)
                content_type = reply.headers.get("Content-Type", "text/plain; version=0.0.4")
        except (OSError, urllib.error.URLError) as exc:
            self._refuse(502, f"the model server's metrics are unavailable: {exc}")
            return
        if len(body) > MAX_BYTES:
            self._refuse(502, "the model server's metrics exceed the size limit")
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_allowed(self) -> None:
        self._refuse(405, "only GET /metrics is served here")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _not_allowed

    def _refuse(self, status: int, message: str) -> None:
        data = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Scrapes are routine: only refusals are logged."""
        if str(getattr(code, "value", code)).startswith(("4", "5")):
            super().log_request(code, size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 (the pod's port; its NetworkPolicy admits Prometheus only)
    parser.add_argument("--upstream", required=True, help="the model server's metrics URL on loopback")
    args = parser.parse_args(argv)
    MetricsOnly.upstream = args.upstream
    if args.upstream.startswith("https://"):
        MetricsOnly.context = ssl._create_unverified_context()  # noqa: S323 (loopback, KServe's self-issued cert)
    server = http.server.ThreadingHTTPServer((args.host, args.port), MetricsOnly)
    server.daemon_threads = True
    print(f"serving {args.upstream} as /metrics on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
