"""``liftwatch simulate``: run a scenario, a load test, or score a detection run."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from liftwatch.clock import now_ms
from liftwatch.protocol import format_ts
from liftwatch.settings import MqttTarget, Settings, settings_from
from simulator.labels import Label
from simulator.load import LoadOptions, run_load
from simulator.model import LinkChange, Output
from simulator.publisher import Publisher, PublisherError
from simulator.runner import Simulation, read_labels, run_realtime, write_labels
from simulator.scenario import Scenario, ScenarioError, Step, load_scenario
from simulator.score import Observed, score

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulated lifts: scripted fault scenarios, load tests, detection scoring",
        description="Simulated lift devices speaking PROTOCOL.md over MQTT. See docs/simulator.md.",
    )
    ssub = p.add_subparsers(dest="simulate_command", metavar="ACTION", required=True)

    sc = ssub.add_parser(
        "scenario",
        help="run a scenario file and write its ground-truth labels",
        description="Run FILE (YAML/JSON, or a built-in name: demo, all_faults) in real time "
        "against the broker of LIFTWATCH_MQTT_URL, printing a live log; write the label file.",
    )
    sc.add_argument("file", help="scenario file, or a built-in scenario name")
    sc.add_argument("--labels", type=Path, metavar="OUT", help="write the label file here")
    sc.add_argument("--seed", type=int, help="override the scenario's seed")
    sc.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="run X times faster than real time (device clocks run ahead: labels cannot be "
        "scored against a live liftwatch; see docs/simulator.md)",
    )
    sc.add_argument(
        "--compress-idle",
        type=float,
        metavar="S",
        help="cut idle stretches of the timeline to at most S seconds (lifts stay real time)",
    )
    sc.add_argument(
        "--dry-run",
        type=Path,
        metavar="OUT",
        help="no broker: simulate in virtual time and write every message as JSON lines",
    )
    sc.add_argument(
        "--shared-connection",
        action="store_true",
        help="one MQTT connection for all lifts (no per-lift Last Will)",
    )
    sc.add_argument("--offline-at-end", action="store_true", help="publish offline at the end")
    sc.add_argument("--quiet", action="store_true", help="no live log")
    _mqtt_args(sc)
    sc.set_defaults(handler=_scenario)

    ck = ssub.add_parser("check", help="validate a scenario file and summarise it")
    ck.add_argument("file")
    ck.set_defaults(handler=_check)

    ld = ssub.add_parser(
        "load",
        help="many lifts with a realistic traffic mix, with a progress line",
        description="Simulate --lifts lifts for --duration seconds at about --rate messages/s "
        "in total. Run several processes (different --id-prefix) for more.",
    )
    ld.add_argument("--lifts", type=int, default=1000)
    ld.add_argument("--rate", type=float, default=1000.0, help="target messages/s in total")
    ld.add_argument("--duration", type=float, default=60.0, help="seconds")
    ld.add_argument("--seed", type=int, default=0)
    ld.add_argument("--id-prefix", default="LOAD-", help="lift ids are PREFIX000000, …")
    ld.add_argument("--qos", type=int, choices=(0, 1), default=1, help="telemetry QoS")
    ld.add_argument(
        "--connections",
        type=int,
        default=4,
        help="shared MQTT connections carrying all lifts (default 4)",
    )
    ld.add_argument(
        "--per-lift-connections",
        action="store_true",
        help="one connection (with Last Will) per lift, like real devices; needs a file "
        "descriptor per lift (ulimit -n)",
    )
    _mqtt_args(ld)
    ld.set_defaults(handler=_load)

    sco = ssub.add_parser(
        "score",
        help="score observed alarms against a label file",
        description="ALARMS is a JSON list (or JSON lines) of alarms with lift_id, code, "
        "subtype, raised_at (RFC 3339) or at_ms, and suppressed. Prints the table and the "
        "summary line; exit 0 when every expected alarm was raised in time and none forbidden.",
    )
    sco.add_argument("labels", type=Path)
    sco.add_argument("alarms", type=Path)
    sco.set_defaults(handler=_score)


def _mqtt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt-url", help="broker (default: LIFTWATCH_MQTT_URL)")
    p.add_argument("--prefix", help="topic prefix (default: LIFTWATCH_MQTT_TOPIC_PREFIX)")
    p.add_argument("--client-id-prefix", default="liftsim", help="MQTT client ids start so")


def _load_or_exit(source: str) -> Scenario:
    try:
        return load_scenario(source)
    except ScenarioError as exc:
        print(f"liftwatch simulate: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def _publisher(args: argparse.Namespace, settings: Settings, *, per_lift: bool) -> Publisher:
    url = args.mqtt_url or settings.mqtt_url
    if not url.startswith(("mqtt://", "mqtts://")):
        print("liftwatch simulate: --mqtt-url must start with mqtt:// or mqtts://", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    return Publisher(
        MqttTarget.parse(url),
        args.prefix or settings.mqtt_topic_prefix,
        per_lift=per_lift,
        connections=getattr(args, "connections", 1),
        client_id_prefix=args.client_id_prefix,
        protocol=settings.mqtt_protocol,
        keepalive=settings.mqtt_keepalive_s,
        ca_file=settings.mqtt_ca_file,
    )


class _Stop:
    """Ctrl-C / SIGTERM: finish cleanly (labels written, connections closed)."""

    def __init__(self) -> None:
        self.flag = threading.Event()

    def install(self) -> None:
        def handler(_sig: int, _frame: FrameType | None) -> None:
            self.flag.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def __call__(self) -> bool:
        return self.flag.is_set()


def _scenario(args: argparse.Namespace) -> int:
    scn = _load_or_exit(args.file)
    if args.time_scale <= 0:
        print("liftwatch simulate: --time-scale must be > 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    start_ms = now_ms()
    sim = Simulation(scn, start_ms, seed=args.seed, compress_idle_s=args.compress_idle)
    log = None if args.quiet else _LiveLog(sim)
    if log:
        sim.on_step = log.step
    if args.dry_run is not None:
        items = sim.run_all()
        with args.dry_run.open("w", encoding="utf-8") as fh:
            prefix = args.prefix or "lifts"
            for item in items:
                fh.write(json.dumps(_dump(item, prefix)) + "\n")
        print(f"wrote {len(items)} messages to {args.dry_run}", file=sys.stderr)
    else:
        settings = settings_from(args)
        pub = _publisher(args, settings, per_lift=not args.shared_connection)
        stop = _Stop()
        stop.install()
        try:
            pub.start([lift.id for lift in scn.lifts])
        except PublisherError as exc:
            print(f"liftwatch simulate: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if log:
            print(
                f"scenario {scn.name}: {len(scn.lifts)} lifts, {sim.duration_s:.0f} s"
                + (f" (×{args.time_scale:g})" if args.time_scale != 1 else ""),
                flush=True,
            )
        try:
            run_realtime(
                sim,
                pub,
                time_scale=args.time_scale,
                should_stop=stop,
                on_output=log.output if log else None,
            )
        finally:
            pub.close(offline=args.offline_at_end)
        if log:
            print(
                f"done: published {pub.stats.published}, acknowledged {pub.stats.acked}, "
                f"errors {pub.stats.errors}",
                flush=True,
            )
    labels = sim.finish()
    if args.labels:
        write_labels(sim, args.labels)
        print(f"labels: {args.labels} ({_count(labels)})", file=sys.stderr)
    return 0


def _count(labels: list[Label]) -> str:
    kinds = {k: sum(1 for lab in labels if lab.expect == k) for k in ("raise", "forbid", "allow")}
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


class _LiveLog:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def _rel(self, at_ms: int) -> str:
        return f"[{(at_ms - self.sim.start_ms) / 1000:7.1f}s]"

    def step(self, at_ms: int, step: Step) -> None:
        lifts = ",".join(step.lifts) if len(step.lifts) <= 3 else f"{len(step.lifts)} lifts"
        params = step.action.model_dump(exclude={"kind"}, exclude_defaults=True)
        detail = " ".join(f"{k}={v}" for k, v in params.items())
        note = f" — {step.note}" if step.note else ""
        print(f"{self._rel(at_ms)} {lifts}: {step.do} {detail}{note}", flush=True)

    def output(self, item: Output) -> None:
        if isinstance(item, LinkChange):
            state = "back online" if item.up else "link lost (broker publishes the Last Will)"
            print(f"{self._rel(item.at_ms)} {item.lift_id}: {state}", flush=True)
        elif item.kind == "event" and not item.malformed:
            print(f"{self._rel(item.at_ms)} {item.lift_id} → {item.payload.decode()}", flush=True)


def _dump(item: Output, prefix: str) -> dict[str, Any]:
    if isinstance(item, LinkChange):
        return {"at": format_ts(item.at_ms), "lift_id": item.lift_id, "link_up": item.up}
    return {
        "at": format_ts(item.at_ms),
        "topic": f"{prefix}/{item.lift_id}/{item.kind}",
        "payload": item.payload.decode("utf-8", errors="replace"),
        "qos": item.qos,
        "retain": item.retain,
        "malformed": item.malformed,
        "tag": item.tag,
    }


def _check(args: argparse.Namespace) -> int:
    scn = _load_or_exit(args.file)
    sim = Simulation(scn, now_ms())
    sim.run_all()
    print(
        f"{scn.name}: {len(scn.lifts)} lifts, {len(scn.steps)} steps, {scn.duration_s:g} s; "
        f"labels {_count(sim.labels)}"
    )
    for lab in sim.labels:
        if lab.expect == "raise":
            code = lab.code + (f"/{lab.subtype}" if lab.subtype else "")
            rel = (lab.onset_ms - sim.start_ms) / 1000
            print(f"  {lab.lift_id:<16} {code:<36} at {rel:6.1f} s + {lab.threshold_s:g} s")
    return 0


def _load(args: argparse.Namespace) -> int:
    if args.lifts < 1 or args.rate <= 0 or args.duration <= 0:
        print("liftwatch simulate load: --lifts, --rate, --duration must be > 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = settings_from(args)
    opts = LoadOptions(
        lifts=args.lifts,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        id_prefix=args.id_prefix,
        qos=args.qos,
    )
    pub = _publisher(args, settings, per_lift=args.per_lift_connections)
    stop = _Stop()
    stop.install()

    def connecting(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rconnecting {done:,}/{total:,}", end="", file=sys.stderr, flush=True)

    try:
        pub.start([opts.lift_id(i) for i in range(opts.lifts)], timeout=300, progress=connecting)
    except PublisherError as exc:
        print(f"\nliftwatch simulate load: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if sys.stderr.isatty():
        print(file=sys.stderr)
    try:
        result = run_load(
            opts,
            pub,
            connected=lambda: pub.lifts_connected,
            errors=lambda: pub.stats.errors,
            should_stop=stop,
        )
    finally:
        pub.close()
    print(
        f"lifts={opts.lifts} duration_s={result.elapsed_s:.1f} sent={result.sent} "
        f"rate_avg={result.rate:.0f} acked={pub.stats.acked} errors={result.errors}"
    )
    return 0 if result.errors == 0 else EXIT_FAILED


def _score(args: argparse.Namespace) -> int:
    try:
        doc, labels = read_labels(args.labels)
        observed = _read_alarms(args.alarms)
    except (OSError, ValueError, KeyError) as exc:
        print(f"liftwatch simulate score: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = score(
        labels,
        observed,
        lifts=[lift["lift_id"] for lift in doc["lifts"]],
        end_ms=doc["ended_ms"],
        tolerance_s=doc.get("tolerance_s", 1.0),
    )
    print(result.table(doc["started_ms"]))
    print(result.summary_line())
    return 0 if result.passed else EXIT_FAILED


def _read_alarms(path: Path) -> list[Observed]:
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        items = json.loads(text)
    elif text.startswith("{") and '"items"' in text[:2000] and "\n" not in text.strip():
        items = json.loads(text)["items"]
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Observed.from_json(item) for item in items]
