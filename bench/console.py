"""Web console benchmark (issue 16 targets: the lift board with 10,000 lifts usable within
1 s; a new alarm on screen within 1 s of its commit).

    .venv/bin/python -m bench.console [--lifts 10000] [--alarms 20] [--loads 5]

A private Mosquitto and InfluxDB and a real ``liftwatch serve`` are started
(``simulator.stack.start_stack``, everything in a temp dir). ``--lifts`` lifts of one
company are registered through ``POST /lifts/import`` (one CSV, as an administrator would),
an administrator and a dispatcher (maintainer of that company) through ``POST /users``. Then
headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright) logs in through the
console's login page.

**board_10k_lifts_ms** — the administrator's lift list (``/console/admin/lifts``: search and
paging over every registered lift) *usable*: ``board_load_ms + board_search_ms``, the medians
of ``--loads`` cold navigations (after one warm-up) of

- ``board_load_ms``: navigation start (``performance.timeOrigin``) to ``DOMContentLoaded``:
  the page is parsed, its scripts ran and the first page of rows is there (the rows are in
  the HTML; the bench checks the first one is in the DOM);
- ``board_search_ms``: the search box answering — from the ``input`` event of a query for the
  *last* registered lift (its rescue code: the server reads all ``--lifts`` rows for matches,
  the worst case) to the moment a ``MutationObserver`` saw that lift's row added, with no
  other row left. It includes the box's 200 ms debounce (htmx ``delay:``), which a person
  typing sees too. The time Playwright itself takes between the load and the typing is not
  counted: a person would start typing then, not after the driver's round trips.

**alarm_to_screen_ms_p95** — the dispatcher's alarm queue (``/console/``, live over the
server-sent-events stream) is open; ``--alarms`` alarm-button events, each on another lift,
are published over MQTT (QoS 1) one after the other. Latency = the time a
``MutationObserver`` in the page saw a node with that lift's name added to the document
(``performance.timeOrigin + performance.now()``, this host's clock) minus the time just before
the publish (same clock). No sleeps: each alarm waits for its row (deadline 10 s, else
``lost``) before the next is published.

Same-run baselines, so that a figure from a busy shared machine can be read as a ratio:

- ``baseline_static_ms``: the same HTML as the lift list (its bytes saved after a load),
  served by a plain ``http.server`` in this process, to ``DOMContentLoaded`` + first row —
  what a browser needs for a page of that size with no server work and no scripts;
- ``baseline_stream_ms_p95``: publish → the ``alarm.raised`` event read from
  ``GET /api/v1/alarms/stream`` by a Python client (the administrator's token) in this
  process, for the same alarms: the pipeline's share (MQTT, alerts, commit, stream) without
  the browser.

Progress goes to stderr; the last stdout line is ``board_10k_lifts_ms=…
alarm_to_screen_ms_p95=…`` followed by the other figures and the ratios ``load_ratio=``
(``board_load_ms`` over ``baseline_static_ms``: what the server's rendering and the page's
scripts add to a page of that size) and ``alarm_ratio=`` (screen p95 over stream p95: what
the console adds to the stream).
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, sync_playwright

from simulator.stack import Stack, start_stack

CHROMIUM = "/usr/bin/chromium"
COMPANY = "bench-co"
PASSWORD = "bench-Pa55word"
PREFIX = "benchconsole"

# Records, for every pending needle, when a node containing it was first added to the page.
OBSERVER = """
(() => {
  if (window.__seen) return;
  window.__seen = {};
  window.__want = new Set();
  // when the last input event reached the page (a search typed), same clock as __seen
  document.addEventListener("input", () => {
    window.__inputAt = performance.timeOrigin + performance.now();
  }, true);
  const look = (node) => {
    const text = node.textContent || "";
    for (const needle of window.__want) {
      if (text.includes(needle)) {
        window.__seen[needle] = performance.timeOrigin + performance.now();
        window.__want.delete(needle);
      }
    }
  };
  new MutationObserver((records) => {
    if (window.__want.size === 0) return;
    for (const r of records) {
      for (const n of r.addedNodes) look(n);
      if (r.type === "characterData") look(r.target);
    }
  }).observe(document, { childList: true, subtree: true, characterData: true });
})();
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def lift_id(i: int) -> str:
    return f"bl-{i:05d}"


def lift_name(i: int) -> str:
    return f"BenchLift{i:05d}"


def rescue_code(i: int) -> str:
    return f"{100000 + i:06d}"


def registry_csv(lifts: int) -> bytes:
    out = io.StringIO()
    out.write("lift_id,name,address,rescue_code,company_id\n")
    for i in range(lifts):
        address = f"{i % 400} 人民路 {i // 400} 号"
        out.write(f"{lift_id(i)},{lift_name(i)},{address},{rescue_code(i)},{COMPANY}\n")
    return out.getvalue().encode()


def seed(stack: Stack, lifts: int) -> None:
    with stack.client(timeout=600) as api:
        r = api.post("/companies", json={"company_id": COMPANY, "name": "基准维保"})
        r.raise_for_status()
        started = time.monotonic()
        r = api.post(
            "/lifts/import", content=registry_csv(lifts), headers={"content-type": "text/csv"}
        )
        r.raise_for_status()
        answer = r.json()
        say(
            f"imported {answer['inserted']} lifts in {time.monotonic() - started:.1f} s "
            f"({answer['rejected']} rejected)"
        )
        for user, role, company in (("admin", "admin", None), ("disp", "maintainer", COMPANY)):
            body = {"username": user, "password": PASSWORD, "role": role, "company_id": company}
            api.post("/users", json=body).raise_for_status()


def login(page: Page, base: str, user: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.press("input[name=password]", "Enter")


def board_once(page: Page, base: str, last: int) -> tuple[float, float]:
    """One cold navigation to the lift list: ``(load_ms, search_ms)``."""
    page.goto("about:blank")
    page.goto(f"{base}/console/admin/lifts", wait_until="commit")
    page.wait_for_function(
        "document.readyState !== 'loading' && !!document.querySelector('#lift-rows tbody tr a')"
    )
    # The rows are in the HTML itself: parsed, they are there at DOMContentLoaded.
    load_ms = page.evaluate(
        "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
    )
    page.evaluate(OBSERVER)
    needle = json.dumps(lift_id(last))
    page.evaluate(f"window.__want.add({needle})")
    page.fill("#lift-q", rescue_code(last))
    page.wait_for_function(
        f"window.__seen[{needle}] !== undefined"
        " && document.querySelectorAll('#lift-rows tbody tr').length === 1",
        timeout=10_000,
    )
    search_ms = page.evaluate(f"window.__seen[{needle}] - window.__inputAt")
    return load_ms, search_ms


def board(page: Page, base: str, lifts: int, loads: int) -> dict[str, float]:
    loaded, searched = [], []
    for k in range(loads + 1):
        load_ms, search_ms = board_once(page, base, lifts - 1)
        if k == 0:
            continue  # the first load warms the server's and the browser's caches
        loaded.append(load_ms)
        searched.append(search_ms)
        say(f"lift list: rows at {load_ms:.0f} ms, a search answered in {search_ms:.0f} ms")
    load, search = statistics.median(loaded), statistics.median(searched)
    return {"board": load + search, "load": load, "search": search}


class _Static(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def static_baseline(page: Page, html: str, loads: int) -> float:
    # Without its scripts: the floor for parsing and showing that much HTML.
    stripped = "\n".join(line for line in html.splitlines() if "<script" not in line)
    _Static.body = stripped.encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    times: list[float] = []
    try:
        for k in range(loads + 1):
            page.goto("about:blank")
            page.goto(url, wait_until="commit")
            page.wait_for_function(
                "document.readyState !== 'loading'"
                " && !!document.querySelector('#lift-rows tbody tr a')"
            )
            dcl = page.evaluate(
                "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
            )
            if k:
                times.append(float(dcl))
    finally:
        server.shutdown()
    return statistics.median(times)


class StreamWatch:
    """``alarm.raised`` events from the API's stream, by lift: when each arrived here."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("GET", f"{self.url}/api/v1/alarms/stream", headers=headers) as r,
        ):
            event = ""
            for line in r.iter_lines():
                self.ready.set()
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "alarm.raised":
                    data = json.loads(line[5:])
                    lift = (data.get("data") or data).get("lift_id")
                    if lift and lift not in self.arrived:
                        self.arrived[lift] = time.time() * 1000


def mqtt_client(url: str) -> paho.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-console", protocol=paho.MQTTv311
    )
    client.connect(host, int(port))
    client.loop_start()
    return client


def press(client: paho.Client, lift: str) -> float:
    body = {
        "v": 1,
        "ts": time.time_ns() // 1_000_000,
        "seq": 1,
        "type": "alarm_button",
        "pressed": True,
    }
    at = time.time() * 1000
    client.publish(f"{PREFIX}/{lift}/event", json.dumps(body), qos=1).wait_for_publish(5)
    return at


def alarms(
    page: Page, stack: Stack, lifts: int, count: int
) -> tuple[list[float], list[float], int]:
    page.goto(f"{stack.api_url}/console/")
    page.wait_for_load_state("load")
    page.evaluate(OBSERVER)
    watch = StreamWatch(stack.api_url, stack.admin_token)
    watch.ready.wait(10)
    client = mqtt_client(stack.mqtt_url)
    screen: list[float] = []
    stream: list[float] = []
    lost = 0
    step = max(1, (lifts - 1) // count)
    try:
        # A warm-up alarm (not counted): the first raise pays for cold caches on every side.
        for k in range(count + 1):
            i = (k * step + 7) % lifts
            needle = lift_name(i)
            page.evaluate(f"window.__want.add({json.dumps(needle)})")
            published = press(client, lift_id(i))
            try:
                page.wait_for_function(
                    f"window.__seen[{json.dumps(needle)}] !== undefined", timeout=10_000
                )
            except Exception:
                lost += 1
                say(f"alarm {k}: {needle} never appeared on screen")
                continue
            seen = page.evaluate(f"window.__seen[{json.dumps(needle)}]")
            deadline = time.monotonic() + 5
            while lift_id(i) not in watch.arrived and time.monotonic() < deadline:
                time.sleep(0.01)
            if k == 0:
                say(f"warm-up alarm on screen after {seen - published:.0f} ms")
                continue
            screen.append(seen - published)
            if lift_id(i) in watch.arrived:
                stream.append(watch.arrived[lift_id(i)] - published)
            say(f"alarm {k}/{count}: on screen after {seen - published:.0f} ms")
    finally:
        watch.stop.set()
        client.loop_stop()
        client.disconnect()
    return screen, stream, lost


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifts", type=int, default=10_000)
    parser.add_argument("--alarms", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        stack = start_stack(Path(tmp), prefix=PREFIX, progress=say)
        try:
            say(f"liftwatch serve at {stack.api_url}; registering {args.lifts} lifts")
            seed(stack, args.lifts)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    admin = browser.new_context(locale="zh-CN").new_page()
                    login(admin, stack.api_url, "admin")
                    say("measuring the lift list")
                    b = board(admin, stack.api_url, args.lifts, args.loads)
                    admin.goto(f"{stack.api_url}/console/admin/lifts")
                    static = static_baseline(admin, admin.content(), args.loads)
                    say(f"static baseline: {static:.0f} ms")
                    disp = browser.new_context(locale="zh-CN").new_page()
                    login(disp, stack.api_url, "disp")
                    say(f"publishing {args.alarms} alarms")
                    screen, stream, lost = alarms(disp, stack, args.lifts, args.alarms)
                finally:
                    browser.close()
        finally:
            stack.close()
    screen_p95, stream_p95 = p95(screen), p95(stream)
    print(
        f"board_10k_lifts_ms={b['board']:.0f} alarm_to_screen_ms_p95={screen_p95:.0f}"
        f" board_load_ms={b['load']:.0f} board_search_ms={b['search']:.0f}"
        f" baseline_static_ms={static:.0f}"
        f" alarm_to_screen_ms_p50={statistics.median(screen) if screen else float('nan'):.0f}"
        f" baseline_stream_ms_p95={stream_p95:.0f} lost={lost} lifts={args.lifts}"
        f" load_ratio={b['load'] / static:.2f} alarm_ratio={screen_p95 / stream_p95:.2f}"
    )


if __name__ == "__main__":
    main()
