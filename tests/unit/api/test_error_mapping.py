"""The API maps every class of the error tree by its `retriable` flag (httpx's map-and-test)."""

from __future__ import annotations

import inspect

import pytest
from starlette.requests import Request

from metering.api.app import _metering_error
from metering.core import errors
from metering.core.errors import (
    MeteringError,
    StateStoreError,
    StateStoreRefusingWrites,
    StreamError,
)

CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, MeteringError) and cls.__module__ == errors.__name__
]


def _instance(cls: type[MeteringError]) -> MeteringError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, "boom")
    if issubclass(cls, StateStoreRefusingWrites):
        exc.cause = "persistence"
    return exc


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_every_error_class_is_mapped_by_its_flag(cls: type[MeteringError]) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})
    response = await _metering_error(request, _instance(cls))
    if cls.retriable:
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
    elif issubclass(cls, StateStoreError | StreamError):
        assert response.status_code == 500
    else:
        assert response.status_code == 409
