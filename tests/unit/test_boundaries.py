"""The import contract: which room may import which (ADR 0001 rooms, ADR 0007 arrows).

One table, parsed from the imports of every module (ast, so imports inside functions count
too), failing with the offending file:line. A room is a package or module prefix; the first
matching prefix in `ROOMS` names a module's room.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("metering", "streams", "sinks")

ROOMS = (
    ("metering.core", "core"),
    ("metering.state", "state"),
    ("metering.api", "api"),
    ("metering.runtime", "runtime"),
    ("metering.cli", "cli"),
    ("metering.demo", "demo"),
    ("metering.client.http", "client_http"),
    ("metering.client", "client"),
    ("metering.settings", "settings"),
    ("metering", "metering"),
    ("streams", "streams"),
    ("sinks", "sinks"),
)
"""Module prefix -> room, most specific first."""

EVERYTHING = frozenset(room for _, room in ROOMS)


@dataclass(frozen=True)
class Rule:
    rooms: frozenset[str]
    """Rooms of ours this room may import (itself included)."""
    modules: frozenset[str] = frozenset()
    """Single modules of other rooms it may import as well."""
    third_party: frozenset[str] | None = None
    """When set, the only non-stdlib libraries allowed; None: any but `forbidden`."""
    forbidden: frozenset[str] = frozenset()
    """Libraries this room must not import."""


KAFKA = frozenset({"aiokafka"})
REDIS = frozenset({"redis"})
HTTP = frozenset({"starlette", "uvicorn", "httpx"})

CONTRACT: dict[str, Rule] = {
    # The pure domain: nothing of ours outside core/, no Kafka/Redis/HTTP/metrics library.
    "core": Rule(frozenset({"core"}), third_party=frozenset({"orjson", "msgspec"})),
    "settings": Rule(frozenset({"settings", "core"}), third_party=frozenset()),
    # The only importer of redis; speaks core values.
    "state": Rule(frozenset({"state", "core"}), forbidden=KAFKA | HTTP),
    # Kafka in: typed against the core ports; never sinks/, state/ or api/.
    "streams": Rule(frozenset({"streams", "core", "settings"}), forbidden=REDIS | HTTP),
    # Kafka out: never the engine (the processor, the closer); only the Kafka client adapter.
    "sinks": Rule(
        frozenset({"sinks", "core", "settings"}),
        modules=frozenset({"streams.kafka"}),
        forbidden=REDIS | HTTP,
    ),
    # HTTP face: never streams/ or sinks/ (runtime/api.py wires it to Kafka).
    "api": Rule(frozenset({"api", "core", "state"}), forbidden=KAFKA | REDIS),
    # The producer SDK: a face of its own, on the core's event codec.
    "client": Rule(frozenset({"client", "core"}), forbidden=REDIS | HTTP),
    # The SDK's HTTP API client (extra `http`): httpx, never the server's libraries; nothing
    # else of the SDK imports it, so `metering[sdk]` needs no httpx.
    "client_http": Rule(
        frozenset({"client", "core"}), forbidden=REDIS | KAFKA | frozenset({"starlette", "uvicorn"})
    ),
    # Wiring and the faces that start processes may import everything.
    "runtime": Rule(EVERYTHING),
    "cli": Rule(EVERYTHING),
    "demo": Rule(EVERYTHING),
    "metering": Rule(frozenset({"metering"})),
}


def room_of(module: str) -> str | None:
    for prefix, room in ROOMS:
        if module == prefix or module.startswith(prefix + "."):
            return room
    return None


@dataclass(frozen=True)
class Arrow:
    path: str
    line: int
    source: str
    """The importing module."""
    target: str
    """The imported module (for `from a import b`: `a.b` when that is a module, else `a`)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def arrows(path: Path) -> list[Arrow]:
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    rel = path.relative_to(ROOT).as_posix()
    found: list[Arrow] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [Arrow(rel, node.lineno, source, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*candidate.split(".")) / "__init__.py"
                ).exists()
                found.append(Arrow(rel, node.lineno, source, candidate if is_module else base))
    return found


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def violations(arrow: Arrow) -> str | None:
    """Why `arrow` breaks the contract, or None."""
    room = room_of(arrow.source)
    assert room is not None, arrow.source
    rule = CONTRACT[room]
    top = arrow.target.split(".")[0]
    where = f"{arrow.path}:{arrow.line}: {room} -> {arrow.target}"
    if top in PACKAGES:
        target_room = room_of(arrow.target)
        if target_room in rule.rooms or arrow.target in rule.modules:
            return None
        return f"{where} (room {target_room!r} is not allowed from {room!r})"
    if top in sys.stdlib_module_names or top == "__future__":
        return None
    if top in rule.forbidden:
        return f"{where} (library {top!r} is forbidden in {room!r})"
    if rule.third_party is not None and top not in rule.third_party:
        return f"{where} (only the standard library and {sorted(rule.third_party)} in {room!r})"
    return None


def test_every_module_has_a_room() -> None:
    assert [module_name(p) for p in modules() if room_of(module_name(p)) is None] == []


def test_the_rooms_of_the_target_house_exist() -> None:
    rooms = {room_of(module_name(p)) for p in modules()}
    assert {"core", "state", "api", "runtime", "cli", "streams", "sinks"} <= rooms
    core = {p.stem for p in modules() if room_of(module_name(p)) == "core"}
    assert {"events", "periods", "plans", "meters", "thresholds", "tiers", "ports"} <= core


@pytest.mark.parametrize("room", sorted(CONTRACT))
def test_imports_follow_the_contract(room: str) -> None:
    broken = [
        problem
        for path in modules()
        if room_of(module_name(path)) == room
        for arrow in arrows(path)
        if (problem := violations(arrow)) is not None
    ]
    assert not broken, "forbidden imports:\n" + "\n".join(broken)


def test_only_state_imports_redis() -> None:
    broken = [
        f"{a.path}:{a.line}: {a.target}"
        for path in modules()
        for a in arrows(path)
        if a.target.split(".")[0] == "redis" and room_of(a.source) != "state"
    ]
    assert broken == []


def test_settings_are_built_only_where_processes_start() -> None:
    """`Settings()` / `Settings.from_env()` only in runtime/, cli/ and demo/ (and settings.py)."""
    broken = []
    for path in modules():
        room = room_of(module_name(path))
        if room in {"runtime", "cli", "demo", "settings"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called in {"Settings", "Settings.from_env"}:
                    broken.append(f"{path.relative_to(ROOT)}:{node.lineno}: {called}()")
    assert broken == []
