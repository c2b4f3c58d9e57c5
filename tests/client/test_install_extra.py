"""`pip install 'metering[sdk]'` gives the SDK without the web server or Redis.

A fresh virtual environment in a temporary directory, the repository installed into it with
the `sdk` extra only (pip may reuse its wheel cache; about a minute), then a subprocess of
that environment imports `metering.client` and checks the server's libraries are absent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import importlib.util, sys
import metering.client
from metering.client import SyncUsageProducer, UsageProducer
usage = UsageProducer.connect("127.0.0.1:1", source="venv-check")
assert usage.build("email.sent", "acme", contact="c1").kind == "marketing"
server = ["starlette", "uvicorn", "redis", "prometheus_client", "httpx"]
present = [name for name in server if importlib.util.find_spec(name) is not None]
print("present:", present)
sys.exit(1 if present else 0)
"""


def test_the_sdk_extra_installs_without_the_web_server(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"{REPO}[sdk]"],
        check=True,
        cwd=tmp_path,  # not the repository: the import below must come from the venv
    )  # fmt: skip
    checked = subprocess.run(
        [str(python), "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "present: []" in checked.stdout
