"""The deploy tests' stand-in: ``support.moto_server`` plus SES event destinations
kept the way real SES keeps them.

moto 5.2's SES v1 stores a configuration set's event destination but:

- checks destination names across the whole region, where SES checks them
  per configuration set (every stage's set holds one named ``postbag-ledger``);
- answers 500 to ``UpdateConfigurationSetEventDestination`` and
  ``DeleteConfigurationSetEventDestination`` (not implemented);
- answers 500 to ``DeleteConfigurationSet`` for a set that does not exist, and
  keeps a deleted set's destination.

The patch below, applied in the server process only, fills those gaps (one
destination per set, as moto's ``DescribeConfigurationSet`` reports one). It
lives in the test harness on purpose: ``postbag`` calls SES as SES documents it.
moto still never publishes an event to the destination.

Run as ``python moto_ses.py HOST PORT``; :class:`DeployAws` does that.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from moto.core.responses import EmptyResult
from moto.ses.exceptions import (
    ConfigurationSetDoesNotExist,
    EventDestinationAlreadyExists,
    SesError,
)
from moto.ses.models import SESBackend
from moto.ses.responses import EmailResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.*

from support.moto_server import HarnessAws  # noqa: E402


class DeployAws(HarnessAws):
    """:class:`support.moto_server.HarnessAws`, with the SES patch below applied."""

    def _command(self) -> list[str]:
        return [sys.executable, os.path.abspath(__file__), *super()._command()[2:]]


class EventDestinationDoesNotExist(SesError):
    code = "EventDestinationDoesNotExist"


def _destination(backend: Any, config_set: str, name: str | None = None) -> Any:
    """The set's destination (None if it has none); with ``name``, it must be that one."""
    if config_set not in backend.config_sets:
        raise ConfigurationSetDoesNotExist(f"Configuration set <{config_set}> does not exist.")
    found = backend.config_set_event_destination.get(config_set)
    if name is not None and (found is None or found["Name"] != name):
        raise EventDestinationDoesNotExist(f"No EventDestination found for {name}")
    return found


def create_destination(self: Any, configuration_set_name: str, event_destination: dict) -> None:
    found = _destination(self, configuration_set_name)
    if found is not None and found["Name"] == event_destination["Name"]:
        raise EventDestinationAlreadyExists("Duplicate Event destination Name.")
    self.config_set_event_destination[configuration_set_name] = event_destination


def update_destination(self: Any, configuration_set_name: str, event_destination: dict) -> None:
    _destination(self, configuration_set_name, event_destination["Name"])
    self.config_set_event_destination[configuration_set_name] = event_destination


def delete_destination(self: Any, configuration_set_name: str, event_destination_name: str) -> None:
    _destination(self, configuration_set_name, event_destination_name)
    del self.config_set_event_destination[configuration_set_name]


def delete_set(self: Any, configuration_set_name: str) -> None:
    _destination(self, configuration_set_name)
    self.config_set_event_destination.pop(configuration_set_name, None)
    del self.config_sets[configuration_set_name]


def respond_update(self: Any) -> Any:
    self.backend.update_configuration_set_event_destination(
        self._get_param("ConfigurationSetName"), self._get_param("EventDestination", {})
    )
    return EmptyResult()


def respond_delete(self: Any) -> Any:
    self.backend.delete_configuration_set_event_destination(
        self._get_param("ConfigurationSetName"), self._get_param("EventDestinationName")
    )
    return EmptyResult()


def patch_ses() -> None:
    SESBackend.create_configuration_set_event_destination = create_destination
    SESBackend.update_configuration_set_event_destination = update_destination
    SESBackend.delete_configuration_set_event_destination = delete_destination
    SESBackend.delete_configuration_set = delete_set
    EmailResponse.update_configuration_set_event_destination = respond_update
    EmailResponse.delete_configuration_set_event_destination = respond_delete


if __name__ == "__main__":
    from support.moto_server import main

    patch_ses()
    main(sys.argv[1], int(sys.argv[2]))
