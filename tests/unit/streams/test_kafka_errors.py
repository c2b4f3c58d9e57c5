"""Every aiokafka error class maps deliberately to one of our stream errors.

The table names each class: a new aiokafka release that adds one fails this test until
someone decides whether the processor retries it or stops (as httpx tests its exception map).
"""

from __future__ import annotations

import inspect

import aiokafka.errors
import pytest
from aiokafka import TopicPartition

from metering.core.errors import (
    NotPositioned,
    PositionOutOfRange,
    RecordRejected,
    StreamError,
    StreamUnavailable,
)
from streams.kafka import translate

RETRIED = {
    # aiokafka's own `retriable` / `invalid_metadata` flag
    "Cancelled", "CorrelationIdError", "GroupCoordinatorNotAvailableError",
    "GroupLoadInProgressError", "KafkaConnectionError", "KafkaProtocolError", "KafkaStorageError",
    "LeaderNotAvailableError", "MetadataEmptyBrokerList", "NoBrokersAvailable",
    "NodeNotReadyError", "NotControllerError", "NotCoordinatorForGroupError",
    "NotEnoughReplicasAfterAppendError", "NotEnoughReplicasError", "NotLeaderForPartitionError",
    "RequestTimedOutError", "StaleMetadata", "TooManyInFlightRequests",
    "UnknownTopicOrPartitionError",
    # transient although not flagged (streams.kafka.ALSO_RETRIABLE)
    "BrokerNotAvailableError", "KafkaTimeoutError", "KafkaUnavailableError",
    "RebalanceInProgressError", "ReplicaNotAvailableError",
}  # fmt: skip
RECORD = {"MessageSizeTooLargeError", "RecordListTooLargeError", "RecordTooLargeError"}
OUT_OF_RANGE = {"OffsetOutOfRangeError"}
NOT_POSITIONED = {"NoOffsetForPartitionError"}
FATAL = {
    "AuthenticationFailedError", "AuthenticationMethodNotSupported", "BrokerResponseError",
    "ClusterAuthorizationFailedError", "CommitFailedError", "ConcurrentTransactions",
    "ConsumerStoppedError", "CorruptRecordException", "DelegationTokenAuthDisabled",
    "DelegationTokenAuthorizationFailed", "DelegationTokenExpired", "DelegationTokenNotFound",
    "DelegationTokenOwnerMismatch", "DelegationTokenRequestNotAllowed", "DuplicateSequenceNumber",
    "FetchSessionIdNotFound", "GroupAuthorizationFailedError", "GroupIdNotFound",
    "IllegalArgumentError", "IllegalGenerationError", "IllegalOperation", "IllegalSaslStateError",
    "IllegalStateError", "IncompatibleBrokerVersion", "InconsistentGroupProtocolError",
    "InvalidCommitOffsetSizeError", "InvalidConfigurationError", "InvalidFetchRequestError",
    "InvalidFetchSessionEpoch", "InvalidGroupIdError", "InvalidPartitionsError",
    "InvalidPrincipalType", "InvalidProducerEpoch", "InvalidProducerIdMapping",
    "InvalidReplicationAssignmentError", "InvalidReplicationFactorError", "InvalidRequestError",
    "InvalidRequiredAcksError", "InvalidSessionTimeoutError", "InvalidTimestampError",
    "InvalidTopicError", "InvalidTransactionTimeout", "InvalidTxnState", "KafkaConfigurationError",
    "KafkaError", "ListenerNotFound", "LogDirNotFound", "MemberIdRequired", "NoError",
    "NonEmptyGroup", "OffsetMetadataTooLargeError",
    "OperationNotAttempted", "OutOfOrderSequenceNumber", "PolicyViolationError", "ProducerClosed",
    "ProducerFenced", "QuotaViolationError", "ReassignmentInProgress", "SaslAuthenticationFailed",
    "SecurityDisabled", "StaleControllerEpochError", "StaleLeaderEpochCodeError",
    "TopicAlreadyExistsError", "TopicAuthorizationFailedError", "TransactionCoordinatorFenced",
    "TransactionalIdAuthorizationFailed", "UnknownError", "UnknownMemberIdError",
    "UnknownProducerId", "UnrecognizedBrokerVersion", "UnsupportedCodecError",
    "UnsupportedForMessageFormatError", "UnsupportedSaslMechanismError", "UnsupportedVersionError",
}  # fmt: skip


def aiokafka_error_classes() -> dict[str, type[BaseException]]:
    return {
        cls.__name__: cls
        for cls in vars(aiokafka.errors).values()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__.startswith("aiokafka")
    }


def test_the_table_names_every_aiokafka_error_once() -> None:
    groups = [RETRIED, RECORD, OUT_OF_RANGE, NOT_POSITIONED, FATAL]
    assert sum(len(g) for g in groups) == len(set().union(*groups)), "a class is in two groups"
    assert set().union(*groups) == set(aiokafka_error_classes())


@pytest.mark.parametrize("name", sorted(aiokafka_error_classes()))
def test_each_error_maps_as_the_table_says(name: str) -> None:
    cls = aiokafka_error_classes()[name]
    translated = translate(cls("detail"), "fetch")
    expected: type[StreamError] = (
        StreamUnavailable
        if name in RETRIED
        else RecordRejected
        if name in RECORD
        else PositionOutOfRange
        if name in OUT_OF_RANGE
        else NotPositioned
        if name in NOT_POSITIONED
        else StreamError
    )
    assert type(translated) is expected
    assert "fetch" in str(translated)


def test_flagged_retriable_errors_are_retried() -> None:
    """aiokafka's own flag decides, so the table cannot drift from it."""
    for name, cls in aiokafka_error_classes().items():
        if getattr(cls, "retriable", False) or getattr(cls, "invalid_metadata", False):
            assert name in RETRIED, name


def test_out_of_range_keeps_the_positions() -> None:
    exc = aiokafka.errors.OffsetOutOfRangeError({TopicPartition("events", 3): 41})
    translated = translate(exc, "fetch")
    assert isinstance(translated, PositionOutOfRange)
    assert translated.positions == {("events", 3): 41}


def test_no_position_names_the_partition() -> None:
    exc = aiokafka.errors.NoOffsetForPartitionError(TopicPartition("events", 2))
    translated = translate(exc, "fetch")
    assert isinstance(translated, NotPositioned)
    assert translated.partitions == [("events", 2)]
