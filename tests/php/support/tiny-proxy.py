"""A tiny HTTP forward proxy on 127.0.0.1, for the S3 client's proxy test.

    tiny-proxy.py <log file> <user:password or "">
        -> prints its port, then serves until stopped by PID

Each request (an absolute URL, as curl sends through an HTTP proxy) is
logged as one JSON line {method, url, proxy_authorization} and forwarded;
without the expected Proxy-Authorization it answers 407, as a real
authenticating proxy does. Plain http only: the stand-in has no TLS.
"""

import base64
import http.client
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


class Proxy(BaseHTTPRequestHandler):
    log_file = ""
    expected = ""

    def _log(self) -> None:
        line = {
            "method": self.command,
            "url": self.path,
            "proxy_authorization": self.headers.get("Proxy-Authorization", ""),
        }
        with open(self.log_file, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    def _authorized(self) -> bool:
        if not self.expected:
            return True
        token = base64.b64encode(self.expected.encode()).decode()
        return self.headers.get("Proxy-Authorization", "") == f"Basic {token}"

    def _forward(self) -> None:
        self._log()
        if not self._authorized():
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="postbag-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        target = url.path + (f"?{url.query}" if url.query else "")
        upstream.request(self.command, target, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP | {"transfer-encoding", "content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def main() -> None:
    Proxy.log_file, Proxy.expected = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
