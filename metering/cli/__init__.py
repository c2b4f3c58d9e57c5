"""The command-line face: `metering <command>` (main.py) and its terminal views (console.py).

Like runtime/, it may import every room; nothing imports it back.
"""
