"""boto3 clients for the operator's tool, and the few error helpers every step uses.

``AWS_ENDPOINT_URL`` (botocore reads it) points every client at a stand-in
such as moto's server; nothing here knows about it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


class CommandError(Exception):
    """A command cannot go on; the message says why and what to do instead."""


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def exists(look: Callable[[], Any], *missing: str) -> bool:
    """Whether ``look()`` finds the resource; AWS answering a ``missing`` code means no."""
    try:
        look()
    except ClientError as exc:
        if error_code(exc) not in missing:
            raise
        return False
    return True


# Every call has a timeout: a command never hangs on a network that went quiet
# (botocore's own default read timeout is a minute per try).
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})


class Aws:
    """One session per command; clients are made on first use."""

    def __init__(self, region: str | None = None):
        self._session = boto3.session.Session(region_name=region)
        self._clients: dict[str, Any] = {}
        if not self._session.region_name:
            raise CommandError("no region: pass --region or set AWS_DEFAULT_REGION")

    @property
    def region(self) -> str:
        return self._session.region_name

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service, config=CLIENT_CONFIG)
        return self._clients[service]

    def account(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]
