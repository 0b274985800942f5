"""moto's server with one test-harness fix: S3 notification filter-rule names.

Real S3 and Chalice name the rules ``Prefix`` and ``Suffix``; moto 5.2's server
accepts only ``prefix``/``suffix`` and answers 500 otherwise (see
shared/PITFALLS.md). This middleware lower-cases the names in
PutBucketNotificationConfiguration bodies before moto parses them. It lives in
the test harness on purpose: product code keeps sending what real S3 expects.

Run as ``python moto_server.py HOST PORT``; :class:`HarnessAws` does that.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from standin.aws import HOST, LocalAws
from standin.server import application, serve

_FILTER_NAME = re.compile(rb"<Name>\s*(Prefix|Suffix)\s*</Name>")


def lower_filter_rule_names(body: bytes) -> bytes:
    return _FILTER_NAME.sub(lambda m: b"<Name>" + m.group(1).lower() + b"</Name>", body)


class LowerCaseFilterRules:
    """WSGI middleware: rewrites the body of ``PUT /<bucket>?notification``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "PUT" and "notification" in environ.get(
            "QUERY_STRING", ""
        ):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = lower_filter_rule_names(environ["wsgi.input"].read(length))
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


class HarnessAws(LocalAws):
    """:class:`standin.aws.LocalAws`, but serving the middleware-wrapped moto."""

    def _command(self) -> list[str]:
        return [sys.executable, os.path.abspath(__file__), HOST, str(self.port)]


def main(host: str, port: int) -> None:
    serve(host, port, LowerCaseFilterRules(application()))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
