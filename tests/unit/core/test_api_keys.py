"""API key records of the accounts topic: what the writer sends is what the directory applies
and what docs/schemas/config-apikey.json describes, and it holds no token."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from metering.core.api_keys import KeyRecord, Scope, parse_topic_record, topic_record
from metering.core.directory import Directory
from metering.core.errors import ApiKeyError
from tests.unit.core.test_event_schemas import validator

TOKEN = "mk_" + "s" * 43
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
RECORDS = [
    KeyRecord("k_0123456789ab", Scope.ACCOUNT, "acme", 1_700_000_000_000),
    KeyRecord("k_0123456789ac", Scope.ADMIN, None, 1_700_000_000_000),
    KeyRecord("k_0123456789ad", Scope.ACCOUNT, "acme", 1_700_000_000_000, 1_700_000_000_500),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.id)
def test_the_topic_record_matches_its_schema_and_round_trips(record: KeyRecord) -> None:
    key, value = topic_record(DIGEST, record)
    assert key == f"apikey:{record.id}".encode()
    assert TOKEN.encode() not in value
    assert TOKEN[3:].encode() not in value
    doc = orjson.loads(value)
    assert list(validator("config-apikey.json").iter_errors(doc)) == []
    assert parse_topic_record(record.id, doc) == (DIGEST, record)
    directory = Directory()
    assert directory.apply_record(key, value) is None
    assert directory.api_key(DIGEST) == record
    assert directory.api_key_withdrawn(DIGEST) is (record.revoked_ms is not None)


def test_the_schema_refuses_what_the_directory_refuses() -> None:
    _, value = topic_record(DIGEST, RECORDS[0])
    doc = {**orjson.loads(value), "token": TOKEN}
    assert list(validator("config-apikey.json").iter_errors(doc)) != []
    with pytest.raises(ApiKeyError, match="token: unknown field"):
        parse_topic_record(RECORDS[0].id, doc)


def test_the_redis_copy_round_trips() -> None:
    for record in RECORDS:
        assert KeyRecord.from_json(record.to_json()) == record
