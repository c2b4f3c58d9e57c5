"""Wiring: the only room that builds processes (processor, publisher, closer, backfill, API)
from `Settings`. It may import every room; nothing but cli/ and demo/ imports it.
"""
