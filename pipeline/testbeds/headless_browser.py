"""Headless Chromium for the gallery's test and benchmark (tests/test_gallery.py, benchmarks/gallery.py), with no
Python dependency: `chromium --headless --dump-dom` prints the DOM
after the page's scripts ran, `--screenshot` writes a PNG, `--log-net-log` records every request the browser
made. Debian's `chromium` (`.ci/browser` installs it). No stage uses it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# No sandbox (tests run as root in containers), no GPU, and none of the browser's own background traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(url: str, *args: str, timeout: float = 60) -> tuple[str, list[dict]]:
    """(stdout, the page's own network requests) of one headless run on a fresh profile. A request is the
    page's when its initiator is an origin (the browser's own update and time checks have none) or its
    network isolation key is the file:// page's."""
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH")
    with tempfile.TemporaryDirectory(prefix="tai-chromium-") as tmp:
        net_log = Path(tmp) / "net.json"
        result = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={tmp}/profile", f"--log-net-log={net_log}", *args, url],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout, page_requests(net_log)


def page_requests(net_log: Path) -> list[dict]:
    try:
        log = json.loads(net_log.read_text())
    except (OSError, json.JSONDecodeError):  # chromium may leave the closing brackets off on exit
        text = net_log.read_text().rstrip().rstrip(",")
        log = json.loads(text + ("]}" if not text.endswith("]}") else ""))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [e["params"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})]
    return [
        r for r in requests if r.get("initiator") != "not an origin" or "file://" in r.get("network_isolation_key", "")
    ]


def dump_dom(url: str, budget_ms: int | None = 3000) -> tuple[str, list[dict]]:
    """The DOM after the page's scripts ran (virtual time lets timers and handlers finish; None: real time
    only, for timings the page takes with performance.now())."""
    return run_chromium(url, *([f"--virtual-time-budget={budget_ms}"] if budget_ms else []), "--dump-dom")


def screenshot(url: str, out: Path, size: str = "1280,900") -> list[dict]:
    _, requests = run_chromium(url, f"--screenshot={out}", f"--window-size={size}", "--virtual-time-budget=3000")
    return requests
