"""Cost of decoding one typical telemetry message: liftwatch's msgspec decoder against the
same rules written with pydantic v2 + orjson (the alternative DESIGN.md weighed).

    .venv/bin/python bench/decoder_cost.py

Last line: ``decode_us=… msgspec_model_us=… pydantic_orjson_model_us=… ratio=…``:
``decode_us`` is the whole of ``liftwatch.protocol.decode`` (topic, size, model, ts
normalisation); the two ``model`` figures validate the same rules from bytes with each library;
``ratio`` = pydantic / msgspec, both measured in this run, so machine noise cancels out.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field

from liftwatch.protocol import Decoded, Telemetry, decode

PAYLOAD = (
    b'{"v":1,"ts":"2026-11-26T20:01:02.345Z","seq":1842,"service_mode":"normal",'
    b'"car_status":"running","direction":"up","floor":"7","floor_index":8,"door_zone":false,'
    b'"doors_closed":true,"door_state":"locked","passenger_present":true,"speed":1.52,'
    b'"position":21300,"load":35.0,"safety_circuit":"closed","power_source":"mains",'
    b'"battery":96,"run_count":182733,"rssi":-71}'
)
TOPIC = "lifts/31101201002018040001/telemetry"
N = 50_000
ROUNDS = 5


class _PFault(BaseModel):
    namespace: str
    code: int | str
    text: str | None = None


class _PTelemetry(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    v: int
    ts: int | str
    seq: int = Field(ge=0)
    service_mode: Literal[
        "normal",
        "inspection",
        "out_of_service",
        "fire_return",
        "firefighter",
        "emergency_power",
        "earthquake",
        "unknown",
    ]
    car_status: Literal["stopped", "running"]
    direction: Literal["none", "up", "down"]
    floor: str | None
    door_zone: bool
    doors_closed: bool
    floor_index: int | None = None
    door_state: (
        Literal["open", "opening", "closing", "closed", "locked", "not_fully_closed", "unknown"]
        | None
    ) = None
    passenger_present: bool | None = None
    speed: float | None = None
    position: int | None = None
    load: float | None = None
    safety_circuit: Literal["closed", "open"] | None = None
    door_lock_circuit: Literal["closed", "open"] | None = None
    up_limit: bool | None = None
    down_limit: bool | None = None
    power_source: Literal["mains", "battery", "other"] | None = None
    alarm_button: bool | None = None
    battery: int | None = None
    controller_faults: list[_PFault] | None = None
    total_running_time: float | None = None
    run_count: int | None = None
    machine_room_temp: float | None = None
    rssi: int | None = None


def _pydantic_model() -> None:
    _PTelemetry.model_validate(orjson.loads(PAYLOAD))


_MSGSPEC = msgspec.json.Decoder(Telemetry)


def _msgspec_model() -> None:
    _MSGSPEC.decode(PAYLOAD)


def _liftwatch_decode() -> None:
    decode(TOPIC, PAYLOAD)


def _time_per_call(fn: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    assert isinstance(decode(TOPIC, PAYLOAD), Decoded)
    cases = {"decode": _liftwatch_decode, "msgspec": _msgspec_model, "pydantic": _pydantic_model}
    results: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(ROUNDS):
        # Interleaved rounds, so a noisy neighbour hurts every case alike.
        for name, fn in cases.items():
            results[name].append(_time_per_call(fn, N))
        print(
            f"round {r + 1}/{ROUNDS}: "
            + ", ".join(f"{name} {vals[-1]:.2f} µs" for name, vals in results.items()),
            file=sys.stderr,
            flush=True,
        )
    med = {name: statistics.median(vals) for name, vals in results.items()}
    print(
        f"decode_us={med['decode']:.2f} msgspec_model_us={med['msgspec']:.2f} "
        f"pydantic_orjson_model_us={med['pydantic']:.2f} "
        f"ratio={med['pydantic'] / med['msgspec']:.2f}"
    )


if __name__ == "__main__":
    main()
