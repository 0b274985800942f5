"""Reads and updates ``chalice_app/.chalice/config.json`` and renders the role policy.

``postbag provision`` owns a stage's concrete values (bucket, ledger table,
sender identities, configuration set, events topic, policy files); everything
shared by all stages (memory, timeout, reserved concurrency, log retention)
stays as written in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from postbag.aws import CommandError
from postbag.stack import EVENTS_HANDLER, HANDLER, Stack

CHALICE_DIR = Path(__file__).resolve().parent.parent / "chalice_app"
Config = dict[str, Any]


def config_path(chalice_dir: Path) -> Path:
    return chalice_dir / ".chalice" / "config.json"


def policy_name(stage: str, handler: str = HANDLER) -> str:
    """The role policy file of a function: the sender's is the stage's own."""
    return f"policy-{stage}.json" if handler == HANDLER else f"policy-{stage}-{handler}.json"


def policy_path(chalice_dir: Path, stage: str, handler: str = HANDLER) -> Path:
    return chalice_dir / ".chalice" / policy_name(stage, handler)


def load(chalice_dir: Path) -> Config:
    path = config_path(chalice_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CommandError(f"no Chalice project at {chalice_dir} ({path} is missing)") from exc
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc


def write_json(path: Path, data: Any) -> bool:
    """Write ``data`` as pretty JSON; answer whether the file changed."""
    text = json.dumps(data, indent=2) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def stage_env(config: Config, stage: str) -> dict[str, str]:
    """The environment the stage's function gets (Chalice merges every level)."""
    stage_cfg = config.get("stages", {}).get(stage, {})
    env: dict[str, str] = {}
    for scope in (
        config,
        config.get("lambda_functions", {}).get(HANDLER, {}),
        stage_cfg,
        stage_cfg.get("lambda_functions", {}).get(HANDLER, {}),
    ):
        env.update(scope.get("environment_variables", {}))
    return env


def stage_settings(config: Config, stage: str) -> Settings:
    return Settings.from_env(stage_env(config, stage))


def configure_stage(
    config: Config,
    stack: Stack,
    senders: list[str],
    configuration_set: str | None,
    reserved_concurrency: int | None,
) -> None:
    """Put the stage's concrete values into ``config`` (in place).

    The configuration set is the one given, else the one the stage already
    uses, else Postbag's own (``Stack.configuration_set``).
    """
    stage_cfg = config.setdefault("stages", {}).setdefault(stack.stage, {})
    stage_cfg["iam_policy_file"] = policy_name(stack.stage)
    # Chalice gives each function its own role; the event recorder's policy is narrower.
    events_cfg = stage_cfg.setdefault("lambda_functions", {}).setdefault(EVENTS_HANDLER, {})
    events_cfg["iam_policy_file"] = policy_name(stack.stage, EVENTS_HANDLER)
    if reserved_concurrency is not None:
        stage_cfg["reserved_concurrency"] = reserved_concurrency
    current_set = stage_env(config, stack.stage).get("POSTBAG_DEFAULT_CONFIGURATION_SET")
    env = stage_cfg.setdefault("environment_variables", {})
    env["POSTBAG_BUCKET"] = stack.bucket
    env["POSTBAG_LEDGER_TABLE"] = stack.ledger_table
    if senders:
        env["POSTBAG_ALLOWED_SENDERS"] = ",".join(senders)
    env["POSTBAG_DEFAULT_CONFIGURATION_SET"] = (
        configuration_set or current_set or stack.configuration_set
    )
    env["POSTBAG_SES_EVENTS_TOPIC"] = stack.ses_events_topic
    stage_cfg.setdefault("tags", {}).update(stack.tags)
