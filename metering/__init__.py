"""Usage metering. The package is a house of rooms (docs/decisions/0001 and 0007):

core/ the pure domain and the ports; state/ Redis; api/ HTTP; runtime/ builds the processes
from `settings.Settings`; cli/, client/ and demo/ are faces. Kafka lives beside this package
in `streams` (in) and `sinks` (out). tests/unit/test_boundaries.py checks the arrows.
"""
