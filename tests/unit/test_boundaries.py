"""The domain core imports only the standard library, orjson, msgspec and itself (ADR 0001)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import metering.core.deltas

PACKAGE = Path(metering.core.deltas.__file__).parent
NOT_DOMAIN = {"state", "api", "cli", "client", "console", "demo"}
"""Sub-packages/modules of `metering` that are faces (API, CLI, console, producer SDK, demo)
or the Redis adapter (`state`), not the pure core."""
FORBIDDEN = {"aiokafka", "redis", "starlette", "uvicorn", "httpx", "prometheus_client"}
ALLOWED_THIRD_PARTY = {"orjson", "msgspec"}


def domain_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0].removesuffix(".py") not in NOT_DOMAIN
    )


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_there_are_domain_modules() -> None:
    names = {p.stem for p in domain_modules()}
    assert {"events", "periods", "plans", "meters", "thresholds", "tiers"} <= names


@pytest.mark.parametrize("path", domain_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_domain_module_imports_only_stdlib_orjson_and_the_domain(path: Path) -> None:
    for name in imported(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "metering":
            parts = name.split(".")
            assert len(parts) < 2 or parts[1] not in NOT_DOMAIN, f"{path.name} imports {name}"
            continue
        assert (
            top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY or top == "__future__"
        ), f"{path.name} imports {name}"
