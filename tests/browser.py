"""Open a local HTML file in headless Chromium and report what a reader's browser would see.

    from tests.browser import find_or_install_chromium, open_page
    chromium = find_or_install_chromium()          # pytest.skip(reason) only if it cannot be had
    page = open_page(chromium, Path("report/index.html"), screenshot=Path("shot.png"))
    assert not page.errors and not page.failed_requests

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), which needs no websocket library
and opens no port. One page load yields the DOM after load, console errors, uncaught
exceptions, CSP violations, failed requests and a screenshot. Debian's package is ``chromium``;
when it is missing and we are root, ``apt-get install -y chromium`` installs it (a minute or two).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_or_install_chromium() -> str:
    """The Chromium binary; installs Debian's package if missing; skips the test if impossible."""
    import pytest

    path = find_chromium()
    if path:
        return path
    if not shutil.which("apt-get"):
        pytest.skip("headless Chromium is not installed and there is no apt-get to install it")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        pytest.skip("headless Chromium is not installed and installing it needs root (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(prefix + command, capture_output=True, text=True, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"installing Chromium timed out: {' '.join(command)}")
        log.append(done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else [])
        if command[1] == "install" and done.returncode == 0 and find_chromium():
            return find_chromium()
    pytest.skip(f"could not install Chromium with apt-get: {log[-1][0] if log and log[-1] else 'unknown error'}")


@dataclass
class Page:
    dom: str                                               # document.documentElement.outerHTML after load
    text: str = ""                                         # document.body.innerText: what a reader sees
    errors: list[str] = field(default_factory=list)        # console errors, exceptions, CSP violations
    failed_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)      # every URL the page asked for
    images: list[dict] = field(default_factory=list)       # {"src", "loaded", "width"} per <img>
    screenshot: Path | None = None


class _Pipe:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, proc, to_browser: int, from_browser: int):
        self.proc, self.out, self.next_id = proc, os.fdopen(to_browser, "wb", buffering=0), 0
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, args=(os.fdopen(from_browser, "rb", buffering=0),),
                         daemon=True).start()

    def _read(self, handle) -> None:
        buffer = b""
        while True:
            chunk = handle.read(65536)
            if not chunk:
                self.messages.put(None)
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                self.messages.put(json.loads(message))

    def _next(self, deadline: float) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("Chromium did not answer in time")
        message = self.messages.get(timeout=remaining)
        if message is None:
            raise RuntimeError("Chromium closed the debugging pipe")
        return message

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        self.out.write(json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message


def _high_fd(fd: int) -> int:
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def open_page(chromium: str, html_file: Path, screenshot: Path | None = None,
              width: int = 1200, height: int = 2000, full_page: Path | None = None,
              timeout: float = 45) -> Page:
    """Load ``html_file`` (file://), wait for its load event, collect problems, take screenshots."""
    html_file = Path(html_file).resolve()
    with tempfile.TemporaryDirectory(prefix="eraselab-chromium-") as profile:
        # We write requests that Chromium reads on fd 3; it writes replies on fd 4. The ends are
        # first moved above fd 10 so that dup2 onto 3/4 in the child never hits itself (dup2(3, 3)
        # would keep close-on-exec set and Chromium would find fd 3 closed).
        to_r, to_w, from_r, from_w = (_high_fd(fd) for fd in (*os.pipe(), *os.pipe()))

        def child_fds():  # runs in the child before exec: put the pipe ends where Chromium looks
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}",
                                 f"--window-size={width},{height}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=child_fds, close_fds=False)
        os.close(to_r)
        os.close(from_w)
        client = _Pipe(proc, to_w, from_r)
        stderr_lines: list[str] = []
        threading.Thread(target=lambda: stderr_lines.extend(proc.stderr.read().decode(errors="replace")
                                                            .splitlines()), daemon=True).start()
        try:
            return _load(client, html_file, screenshot, full_page, width, height, timeout)
        finally:
            try:
                client.call("Browser.close", timeout=10)
            except Exception:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()  # only the browser process this function started
                proc.wait(timeout=10)


def _load(client: _Pipe, html_file: Path, screenshot, full_page, width, height, timeout) -> Page:
    target = client.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = client.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        client.call(f"{domain}.enable", session=session)
    client.call("Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
    client.events.clear()  # only what the report page itself does counts
    client.call("Page.navigate", {"url": html_file.as_uri()}, session=session)
    client.wait_for("Page.loadEventFired", timeout=timeout)
    dom = client.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                           "returnByValue": True}, session=session)["result"]["value"]
    images = client.call("Runtime.evaluate", {
        "expression": "Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
                      "loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth}))",
        "returnByValue": True}, session=session)["result"]["value"]
    text = client.call("Runtime.evaluate", {"expression": "document.body.innerText",
                                            "returnByValue": True}, session=session)["result"]["value"]
    page = Page(dom=dom, text=text, images=images)
    if screenshot is not None:
        shot = client.call("Page.captureScreenshot", {"format": "png"}, session=session)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        page.screenshot = Path(screenshot)
    if full_page is not None:
        size = client.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = client.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(size["height"], 16000), "scale": 1}},
            session=session)
        Path(full_page).write_bytes(base64.b64decode(shot["data"]))
    for event in client.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            page.errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                      for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            page.errors.append("exception: " + str(details.get("exception", {}).get("description")
                                                   or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            page.errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Page.javascriptDialogOpening":  # an alert() ran: injected script executed
            page.errors.append(f"dialog opened: {params.get('type')} {params.get('message')!r}")
        elif method == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            page.failed_requests.append(f"{params.get('errorText')} (request {params.get('requestId')})")
        elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
            page.failed_requests.append(f"HTTP {params['response']['status']} {params['response']['url']}")
    return page
