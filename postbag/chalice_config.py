"""Reads and updates ``chalice_app/.chalice/config.json`` and renders the role policy.

``postbag provision`` owns a stage's concrete values (bucket, ledger table,
sender identities, policy file); everything shared by all stages (memory,
timeout, reserved concurrency, log retention) stays as written in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from postbag.aws import CommandError
from postbag.stack import HANDLER, Stack

CHALICE_DIR = Path(__file__).resolve().parent.parent / "chalice_app"
Config = dict[str, Any]


def config_path(chalice_dir: Path) -> Path:
    return chalice_dir / ".chalice" / "config.json"


def policy_name(stage: str) -> str:
    return f"policy-{stage}.json"


def policy_path(chalice_dir: Path, stage: str) -> Path:
    return chalice_dir / ".chalice" / policy_name(stage)


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
    """Put the stage's concrete values into ``config`` (in place)."""
    stage_cfg = config.setdefault("stages", {}).setdefault(stack.stage, {})
    stage_cfg["iam_policy_file"] = policy_name(stack.stage)
    if reserved_concurrency is not None:
        stage_cfg["reserved_concurrency"] = reserved_concurrency
    env = stage_cfg.setdefault("environment_variables", {})
    env["POSTBAG_BUCKET"] = stack.bucket
    env["POSTBAG_LEDGER_TABLE"] = stack.ledger_table
    if senders:
        env["POSTBAG_ALLOWED_SENDERS"] = ",".join(senders)
    if configuration_set is not None:
        env["POSTBAG_DEFAULT_CONFIGURATION_SET"] = configuration_set
    stage_cfg.setdefault("tags", {}).update(stack.tags)
