"""Helpers for the deploy test: run the operator's commands as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Shell:
    """Runs commands against the stand-in, with its endpoint and dummy credentials."""

    env: dict[str, str]

    def run(self, *argv: str, cwd: Path | None = None, check: bool = True):
        done = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done


def copy_chalice_app(target: Path, package_cache: Path) -> Path:
    """A throw-away copy of chalice_app/ whose deployment packages are cached.

    Chalice names its package after a hash of requirements.txt, so keeping
    ``.chalice/deployments`` between runs saves downloading the wheels again.
    """
    app_dir = target / "chalice_app"
    # As a fresh clone has it: no deployment state (a local provision's generated
    # .chalice/config.json and policies are git-ignored, so left out too).
    shutil.copytree(
        ROOT / "chalice_app",
        app_dir,
        ignore=shutil.ignore_patterns("deployed", "deployments", "__pycache__", ".chalice"),
    )
    (app_dir / ".chalice").mkdir()
    (app_dir / ".chalice" / "deployments").symlink_to(package_cache, target_is_directory=True)
    return app_dir


def shell_for(client_env: dict[str, str]) -> Shell:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POSTBAG_"))}
    return Shell({**env, **client_env})
