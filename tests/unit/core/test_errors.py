"""The error tree: every exception class we define is in metering/core/errors.py, under one
root, with a `retriable` flag; the module docstring draws all of them (ADR 0007)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from metering.core import errors
from metering.core.errors import MeteringError

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("metering", "streams", "sinks")
HTTP_CONTROL_FLOW = {("metering/api/problems.py", "Problem"), ("metering/api/app.py", "_TooLarge")}
"""Starlette control flow of the HTTP face, not errors of the service (see errors.py)."""


def tree() -> list[type[MeteringError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, MeteringError) and cls.__module__ == errors.__name__
    ]


def exception_classes_outside_the_tree() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "metering/core/errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef) or (rel, node.name) in HTTP_CONTROL_FLOW:
                    continue
                bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                names = {c.__name__ for c in tree()} | {"Exception", "BaseException"}
                if bases & names or any(b.endswith(("Error", "Exception")) for b in bases):
                    found.append(f"{rel}:{node.lineno} {node.name}")
    return found


def test_every_exception_class_is_in_the_tree() -> None:
    assert exception_classes_outside_the_tree() == []


@pytest.mark.parametrize("cls", tree(), ids=lambda c: c.__name__)
def test_each_class_has_a_flag_and_is_drawn_in_the_docstring(cls: type[MeteringError]) -> None:
    assert isinstance(cls.retriable, bool)
    assert errors.__doc__ is not None
    assert f" {cls.__name__}\n" in errors.__doc__ or f" {cls.__name__} " in errors.__doc__


def test_only_unavailability_is_retriable() -> None:
    retriable = {cls.__name__ for cls in tree() if cls.retriable}
    assert retriable == {
        "StateStoreUnavailable",
        "StateStoreRefusingWrites",
        "StreamUnavailable",
        "KafkaWriteTimeout",
        "DeliveryError",
        "BufferFull",  # the SDK's buffer drains as Kafka acknowledges: the same emit succeeds
    }
