"""Reads and updates ``chalice_app/.chalice/config.json`` and renders the role policy.

``postbag provision`` owns a stage's concrete values (bucket, ledger table,
sender identities, configuration set, events topic, work queue, the fan-out
sender's concurrency, policy files); everything shared by all stages (memory,
timeouts, the other functions' reserved concurrency, log retention) stays as
written in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from postbag.aws import CommandError
from postbag.stack import (
    CONTROL_HANDLERS,
    DRAIN_HANDLER,
    EVENTS_HANDLER,
    HANDLER,
    INBOX_HANDLER,
    JOB_HANDLER,
    PUBLISH_HANDLER,
    REDRIVE_HANDLER,
    WORK_HANDLER,
    Stack,
)

CHALICE_DIR = Path(__file__).resolve().parent.parent / "chalice_app"
Config = dict[str, Any]
# The functions with a role of their own (the sender's is the stage's policy file).
OWN_POLICY_HANDLERS = (EVENTS_HANDLER, JOB_HANDLER, WORK_HANDLER, DRAIN_HANDLER,
                       *CONTROL_HANDLERS, INBOX_HANDLER, PUBLISH_HANDLER, REDRIVE_HANDLER)
# Concurrent fan-out senders SQS may run (Chalice's maximum_concurrency: 2-1000).
MIN_CONCURRENCY, MAX_CONCURRENCY = 2, 1000
DEFAULT_CONCURRENCY = 2
DEFAULT_CHUNK_ROWS = "500"
CHALICE_DEFAULT_TIMEOUT = 60


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


def function_setting(config: Config, stage: str, handler: str, name: str) -> Any:
    """A function's setting where Chalice finds it: the stage's entry for the
    function, the stage, the function's top-level entry, then the top level."""
    stage_cfg = config.get("stages", {}).get(stage, {})
    for scope in (
        stage_cfg.get("lambda_functions", {}).get(handler, {}),
        stage_cfg,
        config.get("lambda_functions", {}).get(handler, {}),
        config,
    ):
        if name in scope:
            return scope[name]
    return None


def function_timeout(config: Config, stage: str, handler: str) -> int:
    """The function's timeout in seconds (Chalice's default is 60)."""
    found = function_setting(config, stage, handler, "lambda_timeout")
    return CHALICE_DEFAULT_TIMEOUT if found is None else int(found)


def _max_concurrency(value: int) -> str:
    if not MIN_CONCURRENCY <= value <= MAX_CONCURRENCY:
        raise CommandError(
            f"--max-concurrency must be {MIN_CONCURRENCY}-{MAX_CONCURRENCY} "
            f"(SQS's maximum concurrency for a Lambda), not {value}"
        )
    return str(value)


def _configure_fanout(stage_cfg: Config, stack: Stack, max_concurrency: int | None) -> None:
    """The notify jobs' queue and how many fan-out senders may run at once.

    The sender's reserved concurrency equals its maximum concurrency: SQS's
    pollers invoke at most that many, and fewer reserved would throttle them
    (a throttled invocation returns its message to the queue and counts a
    receive, a step towards the dead-letter queue). Without a maximum
    concurrency Lambda starts five pollers at once, hence AWS's advice to
    reserve five at least; with one, its value is what must be reserved.
    """
    env = stage_cfg.setdefault("environment_variables", {})
    env["POSTBAG_WORK_QUEUE"] = stack.work_queue
    env.setdefault("POSTBAG_CHUNK_ROWS", DEFAULT_CHUNK_ROWS)
    current = str(env.get("POSTBAG_MAX_CONCURRENCY", DEFAULT_CONCURRENCY))
    if max_concurrency is None and not current.isdigit():
        raise CommandError(
            f"POSTBAG_MAX_CONCURRENCY of stage {stack.stage} is {current!r}, not a number: "
            "pass --max-concurrency"
        )
    env["POSTBAG_MAX_CONCURRENCY"] = _max_concurrency(
        int(current) if max_concurrency is None else max_concurrency
    )
    work_cfg = stage_cfg["lambda_functions"].setdefault(WORK_HANDLER, {})
    work_cfg["reserved_concurrency"] = int(env["POSTBAG_MAX_CONCURRENCY"])


def configure_stage(
    config: Config,
    stack: Stack,
    senders: list[str],
    configuration_set: str | None,
    reserved_concurrency: int | None,
    max_concurrency: int | None = None,
) -> None:
    """Put the stage's concrete values into ``config`` (in place).

    The configuration set is the one given, else the one the stage already
    uses, else Postbag's own (``Stack.configuration_set``).
    """
    stage_cfg = config.setdefault("stages", {}).setdefault(stack.stage, {})
    stage_cfg["iam_policy_file"] = policy_name(stack.stage)
    # Chalice gives each function its own role; the others' policies are narrower.
    functions = stage_cfg.setdefault("lambda_functions", {})
    for handler in OWN_POLICY_HANDLERS:
        functions.setdefault(handler, {})["iam_policy_file"] = policy_name(stack.stage, handler)
    if reserved_concurrency is not None:
        stage_cfg["reserved_concurrency"] = reserved_concurrency
    current_set = stage_env(config, stack.stage).get("POSTBAG_DEFAULT_CONFIGURATION_SET")
    env = stage_cfg.setdefault("environment_variables", {})
    env["POSTBAG_BUCKET"] = stack.bucket
    env["POSTBAG_LEDGER_TABLE"] = stack.ledger_table
    env["POSTBAG_SUPPRESSION_TABLE"] = stack.suppression_table
    if senders:
        env["POSTBAG_ALLOWED_SENDERS"] = ",".join(senders)
    env["POSTBAG_DEFAULT_CONFIGURATION_SET"] = (
        configuration_set or current_set or stack.configuration_set
    )
    env["POSTBAG_SES_EVENTS_TOPIC"] = stack.ses_events_topic
    _configure_fanout(stage_cfg, stack, max_concurrency)
    stage_cfg.setdefault("tags", {}).update(stack.tags)
