"""The package layers of docs/architecture.md, and the pipeline's stages as data.

``lint-imports`` (run by scripts/test) enforces the layers on every import; these tests check
that the contract itself forbids each import loop the code once had, and that the handler,
:data:`~keyguard.proxy.pipeline.STAGES` and the architecture page agree.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from keyguard.proxy.app import ProxyHandler
from keyguard.proxy.pipeline import STAGES, render

ROOT = Path(__file__).resolve().parents[2]


def _layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "layers"]
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def _allowed(importer: str, imported: str) -> bool:
    """Whether the layers contract lets package ``importer`` import package ``imported``."""
    layers = _layers()
    at = {name: i for i, layer in enumerate(layers) for name in layer}
    return at[importer] < at[imported]  # higher layers come first


# The import loops of the first version, each as its upward (or sideways) edge.
FORMER_LOOPS = [
    ("identity", "admin"),  # identity/wiring.py built the admin API
    ("identity", "proxy"),  # Principal lived in proxy/authn.py
    ("policy", "proxy"),
    ("policy", "identity"),  # PolicySettings lived in identity/settings.py
    ("proxy", "config"),  # DEPLOYMENT_NAME lived in config.py
    ("detect", "config"),
    ("detect", "proxy"),
    ("detect", "respond"),  # detect/replay.py
    ("keys", "rotation"),  # keys/rotation.py
    ("keys", "wiring"),  # the runtime
    ("rotation", "wiring"),
    ("metrics", "detect"),  # Observation lived in detect/
    ("respond", "monitor"),
    ("limits", "proxy"),  # limits read proxy.context
    ("upstream", "config"),
    ("upstream", "rotation"),
    ("audit", "wiring"),
    ("scan", "wiring"),
]


@pytest.mark.parametrize(("importer", "imported"), FORMER_LOOPS)
def test_the_layers_forbid_every_former_import_loop(importer: str, imported: str) -> None:
    assert not _allowed(importer, imported)


def test_every_package_is_in_a_layer() -> None:
    named = set().union(*_layers())
    packages = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "src" / "keyguard").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert packages - named == {"emulator"}  # the emulator has a contract of its own


def test_the_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contract_fails_on_an_upward_import(tmp_path: Path) -> None:
    """The check is not vacuous: a copy of the package with one upward import breaks it."""
    copy = tmp_path / "src"
    subprocess.run(["cp", "-r", str(ROOT / "src"), str(copy)], check=True)
    (copy / "keyguard" / "core" / "upward.py").write_text("from keyguard import server\n")
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "keyguard.core.upward -> keyguard.server" in result.stdout


def test_the_handler_runs_the_stages_in_order() -> None:
    source = inspect.getsource(ProxyHandler._handle) + inspect.getsource(ProxyHandler.__call__)
    marked = re.findall(r"# stage: (\w+)", source)
    assert marked == [stage.name for stage in STAGES]


def test_the_architecture_page_shows_the_stages() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- stages -->\n```\n(.*?)```\n<!-- /stages -->", page, re.S)
    assert block is not None, "docs/architecture.md lost its stages block"
    assert block.group(1).rstrip("\n") == render()
