"""Headless Chromium driven through the DevTools protocol: open a page, click, screenshot.

``make screenshots`` needs more than ``chromium --screenshot``: the approval form only exists
once an operator has pressed Resume. :class:`Browser` starts Chromium with a debugging port of
its own, speaks the protocol over one WebSocket (the ``websockets`` package Prefect already
brings), clicks with real mouse events (Radix menus in Prefect's newer UI open on pointer
down, not on ``element.click()``) and waits by polling a JavaScript condition, each wait with
a timeout whose error says what it waited for. Leaving the ``with`` block ends Chromium's
process group, so nothing it started outlives the script.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.request import urlopen

from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(RuntimeError):
    """Chromium did not start, or a page did not show what was waited for in time."""


def chromium_path() -> str:
    """The Chromium binary; raises SystemExit naming the package when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    return found


class Browser:
    """One headless Chromium and one page of it, for the length of a ``with`` block.

    Args:
        width: The page's viewport width in CSS pixels.
        height: Its height.
        timeout: The default wait, in seconds, for pages and selectors.
    """

    def __init__(self, width: int = 1400, height: int = 900, timeout: float = 60) -> None:
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = Path(tempfile.mkdtemp(prefix="iamc-chromium-"))
        self._log = self._profile.parent / f"{self._profile.name}.log"  # Chromium's stderr
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: ClientConnection | None = None
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Browser:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        with self._log.open("wb") as log:  # Chromium keeps its own descriptor
            self._process = subprocess.Popen(  # noqa: S603 - a fixed browser and arguments
                [
                    chromium_path(),
                    *FLAGS,
                    "--remote-debugging-port=0",  # Chromium picks a free port, writes it down
                    f"--user-data-dir={self._profile}",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # its renderers and helpers share a group we can end
            )
        port = self._debugging_port()
        with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.loads(answer.read())
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError(f"Chromium on port {port} has no page to drive: {targets}")
        self._socket = connect(
            pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10, proxy=None
        )
        self.resize(self.width, self.height)

    def resize(self, width: int, height: int) -> None:
        """Set the page's viewport (CSS pixels, one device pixel each)."""
        self.width, self.height = width, height
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _debugging_port(self) -> int:
        """The port Chromium chose, from the ``DevToolsActivePort`` file it writes on start."""
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                said = self._log.read_text(errors="replace").strip().splitlines()[-5:]
                raise BrowserError(
                    f"Chromium exited with {self._process.returncode} before listening: "
                    + " | ".join(said)
                )
            lines = marker.read_text().splitlines() if marker.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.1)
        raise BrowserError("Chromium did not open its debugging port within 30 s")

    def close(self) -> None:
        """Close the connection, end Chromium's whole process group, remove its profile."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        process, self._process = self._process, None
        if process is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL: a helper that lingers
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break  # the group is gone
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self._profile, ignore_errors=True)
        self._log.unlink(missing_ok=True)

    # -- the protocol ---------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call one DevTools method and return its result; events in between are dropped."""
        if self._socket is None:
            raise BrowserError("the browser is not started")
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self._socket.recv(timeout=left))
            except TimeoutError:
                break
            if message.get("id") != call_id:
                continue  # an event, or the answer to a call given up on
            if "error" in message:
                raise BrowserError(f"{method}: {message['error'].get('message')}")
            result: dict[str, Any] = message.get("result", {})
            return result
        raise BrowserError(f"{method}: no answer within {self.timeout:.0f} s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return result.get("result", {}).get("value")

    # -- what a script does with a page --------------------------------------------------

    def open(self, url: str) -> None:
        """Go to ``url`` and wait until its document has loaded."""
        answer = self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"could not open {url}: {answer['errorText']}")
        self.wait_for("document.readyState === 'complete'", f"{url} to load")

    def wait_for(self, condition: str, what: str, timeout: float | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value.

        Raises:
            BrowserError: It stayed falsy for ``timeout`` seconds (default: the browser's);
                the message names ``what`` and the page's address and title.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(condition)
            if value:
                return value
            time.sleep(0.25)
        where = self.evaluate("location.href + ' (' + document.title + ')'")
        raise BrowserError(f"timed out waiting for {what} on {where}")

    def click(self, finder: str, what: str, timeout: float | None = None) -> None:
        """Click, with real mouse events, the element a JavaScript expression finds.

        ``finder`` is an expression that yields the element or null; it is polled until the
        element is there and visible.
        """
        box = self.wait_for(
            f"""(() => {{
                const el = {finder};
                if (!el) return null;
                el.scrollIntoView({{block: 'center'}});
                const r = el.getBoundingClientRect();
                return r.width && r.height ? {{x: r.x + r.width / 2, y: r.y + r.height / 2}} : null;
            }})()""",
            what,
            timeout,
        )
        at = {"x": box["x"], "y": box["y"], "button": "left", "clickCount": 1}
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=at["x"], y=at["y"])
        self.send("Input.dispatchMouseEvent", type="mousePressed", **at)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", **at)

    def box(self, finder: str, what: str) -> dict[str, float]:
        """The viewport rectangle (x, y, width, height) of the element ``finder`` yields."""
        found = self.wait_for(
            f"(() => {{ const el = {finder}; if (!el) return null; const r = "
            "el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, "
            "height: r.height}; })()",
            what,
        )
        return {k: float(v) for k, v in found.items()}

    def settle(self, what: str = "the page's animations") -> None:
        """Wait until no CSS animation or transition runs (a dialog has finished opening)."""
        self.wait_for(
            "document.getAnimations().every(a => a.playState !== 'running')", f"{what} to end"
        )

    def text_shown(self, text: str, bottom: float | None = None) -> bool:
        """Whether ``text`` is on screen: inside the viewport (above ``bottom``, when given)
        and not cut off by a scrolling or clipping box around it."""
        limit = "innerHeight" if bottom is None else json.dumps(bottom)
        return bool(self.evaluate(f"({_TEXT_SHOWN})({json.dumps(text)}, {limit})"))

    def screenshot(self, path: Path, clip: dict[str, float] | None = None) -> Path:
        """Write the viewport (or the ``clip`` rectangle: x, y, width, height) as a PNG."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": False}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


# Whether an occurrence of ``text`` lies in the viewport above ``bottom`` and inside every box
# around it that clips its overflow (a table's horizontal scroller cuts long cells off).
_TEXT_SHOWN = """(text, bottom) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(text);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + text.length);
    const r = range.getBoundingClientRect();
    const inside = (c) => r.left >= c.left - 1 && r.right <= c.right + 1
      && r.top >= c.top - 1 && r.bottom <= c.bottom + 1;
    let shown = r.width > 0 && inside({left: 0, top: 0, right: innerWidth, bottom});
    for (let e = node.parentElement; shown && e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.overflowX !== 'visible' || style.overflowY !== 'visible') {
        shown = inside(e.getBoundingClientRect());
      }
    }
    if (shown) return true;
  }
  return false;
}"""
