"""One simulated lift: physics, doors, passengers, modes, power, counters, and what it sends.

The model is pure and deterministic: it runs on virtual time (epoch ms) given by the caller
and a seeded :class:`random.Random`, and collects the messages it would publish in
:attr:`LiftModel.out`. Nothing here does I/O; :mod:`simulator.runner` paces it against a
wall clock and :mod:`simulator.publisher` puts the messages on MQTT.

Motion is analytic, not integrated: a run follows a raised-cosine speed profile (acceleration
is continuous and jerk bounded: the "jerk-limited run" of a real drive), so position and speed
at any instant come from a formula and the tick length (``step_ms``) only sets how often the
controller looks at them. While nothing moves the model jumps straight to its next event, so
an idle lift costs nothing between its 60 s heartbeats (what makes 10,000 lifts in one process
possible).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import msgspec

from liftwatch.protocol import Kind, ServiceMode, format_ts

SERVICE_MODES: tuple[str, ...] = get_args(ServiceMode)

# A final limit switch sits this far beyond the terminal landing (EN 81-20 5.12.2: it must
# operate before the car touches the buffers, i.e. within the overtravel).
LIMIT_SWITCH_MM = 100
STATIONARY_SPEED = 0.1
OVERSPEED_FACTOR = 1.15
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish the device makes. ``malformed`` marks deliberately broken payloads."""

    lift_id: str
    kind: Kind
    payload: bytes
    at_ms: int
    qos: int = 1
    retain: bool = False
    malformed: bool = False
    tag: str = ""


@dataclass(frozen=True, slots=True)
class LinkChange:
    """The device's network link goes down abruptly (``up=False``: the broker then publishes
    the Last Will) or comes back."""

    lift_id: str
    at_ms: int
    up: bool


Output = Message | LinkChange


@dataclass(frozen=True)
class LiftConfig:
    lift_id: str
    floor_labels: tuple[str, ...] = tuple(str(i) for i in range(1, 11))
    landings_mm: tuple[int, ...] = tuple(i * 3000 for i in range(10))
    rated_speed: float = 1.0
    acceleration: float = 0.8
    inspection_speed: float = 0.3
    door_zone_mm: int = 100
    door_open_s: float = 2.0
    door_dwell_s: float = 3.0
    door_close_s: float = 2.5
    door_lock_s: float = 0.3
    capacity: int = 8
    rated_load_kg: float = 630.0
    calls_per_hour: float = 20.0
    passenger_sensor: bool = True
    telemetry_running_s: float = 0.5
    telemetry_idle_s: float = 60.0
    selftest_interval_s: float = 86_400.0
    selftest_at_start: bool = True
    ts_format: Literal["rfc3339", "epoch_ms"] = "rfc3339"
    main_floor: int = 0
    start_floor: int = 0
    battery_drain_pct_per_min: float = 1.0
    telemetry_qos: int = 1
    # Also report the button in telemetry. Off by default: the event already reports each
    # press, and a consumer could count one press twice (FAULTS.md: event *or* rising edge).
    alarm_button_telemetry: bool = False
    step_ms: int = 100

    def __post_init__(self) -> None:
        n = len(self.floor_labels)
        if n < 2 or len(self.landings_mm) != n:
            raise ValueError(f"{self.lift_id}: need ≥ 2 floors and one landing height per floor")
        if any(b <= a for a, b in itertools.pairwise(self.landings_mm)):
            raise ValueError(f"{self.lift_id}: landing heights must increase")
        if not 0 <= self.start_floor < n or not 0 <= self.main_floor < n:
            raise ValueError(f"{self.lift_id}: start_floor/main_floor out of range")
        if self.telemetry_running_s > 5 or self.telemetry_idle_s > 60:
            raise ValueError(
                f"{self.lift_id}: PROTOCOL.md requires telemetry at least every 5 s running, "
                "60 s idle"
            )


class Run:
    """A run from one position to another on a raised-cosine speed profile.

    Accelerating, v(t) = V/2·(1 − cos(πt/Ta)): peak acceleration πV/(2Ta) is set to the lift's
    rating, and jerk stays bounded (π²V/(2Ta²)). A run too short to reach V gets a lower peak.
    """

    def __init__(self, start_ms: int, from_mm: float, to_mm: float, vmax: float, accel: float):
        self.start_ms = start_ms
        self.from_mm = from_mm
        self.to_mm = to_mm
        self.sign = 1.0 if to_mm >= from_mm else -1.0
        dist = abs(to_mm - from_mm) / 1000.0
        v = vmax
        ta = v * math.pi / (2 * accel)
        if v * ta > dist:
            v = math.sqrt(2 * accel * dist / math.pi)
            ta = v * math.pi / (2 * accel) if v > 0 else 0.0
        self.v = v
        self.ta = ta
        self.tc = (dist - v * ta) / v if v > 0 else 0.0
        self.dist = dist
        self.duration_s = 2 * ta + self.tc

    def _accel(self, t: float) -> tuple[float, float]:
        if self.ta <= 0:
            return 0.0, 0.0
        x = self.v / 2 * (t - self.ta / math.pi * math.sin(math.pi * t / self.ta))
        v = self.v / 2 * (1 - math.cos(math.pi * t / self.ta))
        return x, v

    def at(self, now_ms: int) -> tuple[float, float, bool]:
        """(position mm, signed speed m/s, finished) at ``now_ms``."""
        t = (now_ms - self.start_ms) / 1000.0
        if t >= self.duration_s:
            return self.to_mm, 0.0, True
        if t < self.ta:
            x, v = self._accel(t)
        elif t < self.ta + self.tc:
            x = self.v * self.ta / 2 + self.v * (t - self.ta)
            v = self.v
        else:
            xr, v = self._accel(self.duration_s - t)
            x = self.dist - xr
        return self.from_mm + self.sign * x * 1000.0, self.sign * v, False


@dataclass
class _Timer:
    at_ms: int
    order: int
    action: Callable[[], None] = field(compare=False)

    def __lt__(self, other: _Timer) -> bool:
        return (self.at_ms, self.order) < (other.at_ms, other.order)


Hook = Callable[["LiftModel"], None]
Transform = Callable[[Message], list[Message]]


class LiftModel:
    """A lift and its monitoring terminal. Drive it with :meth:`advance`; read :attr:`out`."""

    def __init__(self, cfg: LiftConfig, rng: random.Random, start_ms: int) -> None:
        self.cfg = cfg
        self.rng = rng
        self.t = start_ms
        self.position = float(cfg.landings_mm[cfg.start_floor])
        self.speed = 0.0
        self.run: Run | None = None
        self.run_kind = "none"  # dispatch | relevel | inspection | forced
        self.run_vmax = cfg.rated_speed
        # Whether the doors were locked when the current movement began (UCM vs door open
        # while running, FAULTS.md).
        self.run_started_closed = True
        self.target_floor: int | None = None
        self.door_state = "locked"
        self.door_until: int | None = None
        self.door_hold = False  # held open: obstruction, button, fire recall
        self.doors_blocked = False  # the operator will not open them (fault)
        self.door_cycles_left = 0
        self.doors_forced_open = False  # opened while running (fault)
        self.allow_open_movement = False
        self.riders: list[int] = []
        self.waiting: dict[int, list[int]] = {}
        self.mode: str = "normal"
        self.power: str = "mains"
        self.battery = 100.0
        self.battery_pinned: float | None = None
        self.safety = "closed"
        self.halted = False
        self.slipping = False
        self.position_lost = False
        self.alarm_pressed = False
        self.controller_faults: dict[tuple[str, str], tuple[str | int, str | None]] = {}
        self.run_count = 0
        self.running_ms = 0
        self.seq = 0
        self.skew_ms = 0
        self.silent = False
        self.link_up = True
        self.transform: Transform | None = None
        self.out: list[Output] = []
        self.hooks: list[Hook] = []  # may change state, run before telemetry is decided
        self.watchers: list[Hook] = []  # read-only, run after telemetry went out
        self.last_published_ms: int | None = None
        self.last_selftest_ok_ms: int | None = None
        self.door_transitions: list[int] = []  # times doors_closed flipped (door_cycling)
        self._timers: list[_Timer] = []
        self._timer_order = itertools.count()
        self._last_key: tuple[Any, ...] | None = None
        self._prev_t = start_ms
        self.next_telemetry_ms = start_ms
        self.next_selftest_ms = (
            start_ms if cfg.selftest_at_start else start_ms + int(cfg.selftest_interval_s * 1000)
        )
        self.next_arrival_ms = self._draw_arrival(start_ms)
        self.temp = 22.0 + rng.uniform(-3, 3)
        self.rssi = -60 - rng.randint(0, 25)

    # ------------------------------------------------------------------ derived state ----
    @property
    def top_mm(self) -> int:
        return self.cfg.landings_mm[-1]

    @property
    def bottom_mm(self) -> int:
        return self.cfg.landings_mm[0]

    def nearest_floor(self) -> int:
        landings = self.cfg.landings_mm
        i = bisect.bisect_left(landings, self.position)
        if i == 0:
            return 0
        if i == len(landings):
            return i - 1
        return i if landings[i] - self.position < self.position - landings[i - 1] else i - 1

    @property
    def door_zone(self) -> bool:
        landing = self.cfg.landings_mm[self.nearest_floor()]
        return abs(landing - self.position) <= self.cfg.door_zone_mm

    @property
    def car_running(self) -> bool:
        return self.run is not None or self.slipping

    @property
    def doors_closed(self) -> bool:
        return self.door_state == "locked"

    @property
    def stationary(self) -> bool:
        return not self.car_running and abs(self.speed) < STATIONARY_SPEED

    @property
    def passenger_present(self) -> bool | None:
        return bool(self.riders) if self.cfg.passenger_sensor else None

    @property
    def up_limit(self) -> bool:
        return self.position > self.top_mm + LIMIT_SWITCH_MM

    @property
    def down_limit(self) -> bool:
        return self.position < self.bottom_mm - LIMIT_SWITCH_MM

    @property
    def floor(self) -> str | None:
        return None if self.position_lost else self.cfg.floor_labels[self.nearest_floor()]

    def speed_band(self) -> int:
        v = abs(self.speed)
        if v < STATIONARY_SPEED:
            return 0
        if v <= 0.3:
            return 1
        return 2 if v <= OVERSPEED_FACTOR * self.cfg.rated_speed else 3

    # ----------------------------------------------------------------------- driving ----
    def advance(self, to_ms: int) -> None:
        """Run the lift up to ``to_ms`` (virtual epoch ms)."""
        while self.t < to_ms:
            self.t = min(to_ms, self.next_event_ms())
            self._update()

    def settle(self) -> None:
        """Let the controller react to an outside change at the current instant."""
        self._update()

    def next_event_ms(self) -> int:
        """The next instant at which something can change without outside input."""
        t = self.t
        if self.run is not None or self.slipping:
            return t + self.cfg.step_ms
        cands = [self.next_telemetry_ms, self.next_selftest_ms, self.next_arrival_ms]
        if self.door_until is not None:
            cands.append(self.door_until)
        if self._timers:
            cands.append(self._timers[0].at_ms)
        if self.power != "mains" or (self.battery < 100 and self.battery_pinned is None):
            cands.append(t + 1000)
        return max(t + 1, min(cands))

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        """Call ``action`` once ``seconds`` of model time have passed."""
        at = self.t + max(1, round(seconds * 1000))
        heapq.heappush(self._timers, _Timer(at, next(self._timer_order), action))

    def _update(self) -> None:
        prev, self._prev_t = self._prev_t, self.t
        if self.run is not None:
            self._move()
        if self.car_running:
            self.running_ms += self.t - prev
        self._battery(prev)
        if self.door_until is not None and self.t >= self.door_until:
            self._door_phase_done()
        while self._timers and self._timers[0].at_ms <= self.t:
            heapq.heappop(self._timers).action()
        if self.t >= self.next_arrival_ms:
            self._arrival()
        self._dispatch()
        for hook in list(self.hooks):
            hook(self)
        if self.t >= self.next_selftest_ms:
            self.next_selftest_ms = self.t + int(self.cfg.selftest_interval_s * 1000)
            self.emit_event("selftest", result="ok")
            self.last_selftest_ok_ms = self.t
        key = self._change_key()
        if key != self._last_key or self.t >= self.next_telemetry_ms:
            if self._last_key is not None and key[5] != self._last_key[5]:
                self.door_transitions.append(self.t)
                del self.door_transitions[:-20]
            self._last_key = key
            self.emit_telemetry()
        for watcher in list(self.watchers):
            watcher(self)

    def _battery(self, prev_ms: int) -> None:
        if self.battery_pinned is not None:
            self.battery = self.battery_pinned
            return
        minutes = (self.t - prev_ms) / 60_000
        if self.power == "mains":
            self.battery = min(100.0, self.battery + 0.5 * minutes)
        else:
            self.battery = max(0.0, self.battery - self.cfg.battery_drain_pct_per_min * minutes)

    # ----------------------------------------------------------------------- motion ----
    def start_run(self, to_mm: float, vmax: float, kind: str) -> None:
        self.run = Run(self.t, self.position, to_mm, vmax, self.cfg.acceleration)
        self.run_started_closed = self.door_state == "locked"
        self.run_kind = kind
        self.run_vmax = vmax
        self.run_count += 1

    def _move(self) -> None:
        assert self.run is not None
        pos, speed, done = self.run.at(self.t)
        self.position, self.speed = pos, speed
        if done:
            kind = self.run_kind
            self.run, self.run_kind, self.speed = None, "none", 0.0
            self._arrived(kind)

    def emergency_stop(self) -> None:
        """Brake where the car is (safety gear, power loss, controller halt)."""
        if self.run is not None:
            self.position, _, _ = self.run.at(self.t)
        self.run, self.run_kind, self.speed, self.target_floor = None, "none", 0.0, None

    @property
    def direction(self) -> str:
        if self.slipping:
            return "up"
        if self.run is None:
            return "none"
        return "up" if self.run.sign > 0 else "down"

    def _arrived(self, kind: str) -> None:
        if kind not in ("dispatch", "relevel") or not self.door_zone:
            return
        floor = self.nearest_floor()
        if kind == "relevel" and self.riders:
            # After a stop between floors the passengers leave at the nearest landing.
            self.riders = [floor] * len(self.riders)
        if floor in self.riders or self.waiting.get(floor):
            self.open_doors()
        self.target_floor = None

    def can_operate(self) -> bool:
        return (
            self.power == "mains"
            and self.safety == "closed"
            and not self.halted
            and not self.slipping
            and not self.position_lost
        )

    def _dispatch(self) -> None:
        if self.run is not None or not self.can_operate():
            return
        if self.mode == "fire_return":
            self._fire_return()
            return
        if self.mode != "normal":
            if self.riders and self.door_zone and self.door_state == "locked":
                # Taken out of normal service: whoever is inside gets out here.
                self.riders = [self.nearest_floor()] * len(self.riders)
                self.open_doors()
            return
        if self.door_state != "locked" or self.door_cycles_left:
            return
        if not self.door_zone:
            # A controller that finds its car between floors relevels at low speed.
            floor = self.nearest_floor()
            self.start_run(self.cfg.landings_mm[floor], self.cfg.inspection_speed, "relevel")
            return
        here = self.nearest_floor()
        if (self.waiting.get(here) and len(self.riders) < self.cfg.capacity) or here in self.riders:
            self.open_doors()
            return
        targets = set(self.riders) | {f for f, q in self.waiting.items() if q}
        targets.discard(here)
        if not targets:
            return
        target = min(targets, key=lambda f: (abs(f - here), f))
        self.target_floor = target
        self.start_run(self.cfg.landings_mm[target], self.cfg.rated_speed, "dispatch")

    def _fire_return(self) -> None:
        main = self.cfg.main_floor
        if self.nearest_floor() != main or not self.door_zone:
            if self.door_state == "locked":
                self.start_run(self.cfg.landings_mm[main], self.cfg.rated_speed, "forced")
            elif self.door_state == "open":
                self.door_hold = False
                self._close_doors()
            return
        self.riders = [main] * len(self.riders)
        self.door_hold = True
        if self.door_state == "locked":
            self.open_doors()

    # ------------------------------------------------------------------------ doors ----
    def _door_times(self) -> tuple[float, float, float]:
        if self.door_cycles_left:
            return 1.0, 0.3, 1.0  # the operator's reversal cycle is short
        return self.cfg.door_open_s, self.cfg.door_dwell_s, self.cfg.door_close_s

    def open_doors(self) -> None:
        if (
            self.doors_blocked
            or self.power != "mains"
            or not self.door_zone
            or self.run is not None
            or self.door_state in ("open", "opening")
        ):
            return
        self.door_state = "opening"
        self.door_until = self.t + round(self._door_times()[0] * 1000)

    def _close_doors(self) -> None:
        self.door_state = "closing"
        self.door_until = self.t + round(self._door_times()[2] * 1000)

    def _door_phase_done(self) -> None:
        if self.power != "mains":
            self.door_until = None  # the operator stops where it is
            return
        state = self.door_state
        if state == "opening":
            self.door_state = "open"
            moved = self._exchange_passengers()
            if self.door_hold:
                self.door_until = None
            else:
                dwell = self._door_times()[1] + 0.6 * moved
                self.door_until = self.t + round(dwell * 1000)
        elif state == "open":
            if self.door_hold:
                self.door_until = None
            else:
                self._close_doors()
        elif state == "closing":
            self.door_state = "closed"
            self.door_until = self.t + round(self.cfg.door_lock_s * 1000)
        elif state == "closed":
            self.door_state = "locked"
            self.door_until = None
            if self.door_cycles_left:
                self.door_cycles_left -= 1
                if self.door_cycles_left:
                    # Locked for a moment (and reported), then the reversal reopens it.
                    self.door_until = self.t + 400
        elif state == "locked" and self.door_cycles_left:
            self.door_until = None
            self.open_doors()
        else:
            self.door_until = None

    def hold_doors(self, held: bool) -> None:
        self.door_hold = held
        if held:
            self.open_doors()
        elif self.door_state == "open":
            self._close_doors()

    def _exchange_passengers(self) -> int:
        here = self.nearest_floor()
        leaving = sum(1 for d in self.riders if d == here)
        self.riders = [d for d in self.riders if d != here]
        queue = self.waiting.get(here, [])
        room = max(0, self.cfg.capacity - len(self.riders))
        if self.mode != "normal":
            room = 0
        boarding, self.waiting[here] = queue[:room], queue[room:]
        self.riders.extend(boarding)
        return leaving + len(boarding)

    # ------------------------------------------------------------------- passengers ----
    def _draw_arrival(self, now_ms: int) -> int:
        rate = self.cfg.calls_per_hour
        if rate <= 0:
            return 2**62
        return now_ms + max(1, round(self.rng.expovariate(rate / 3600.0) * 1000))

    def _arrival(self) -> None:
        self.next_arrival_ms = self._draw_arrival(self.t)
        if self.mode != "normal":
            return
        n = len(self.cfg.floor_labels)
        main = self.cfg.main_floor
        others = [f for f in range(n) if f != main]
        roll = self.rng.random()
        if roll < 0.5:  # up-peak: from the lobby
            origin, dest = main, self.rng.choice(others)
        elif roll < 0.9:  # down to the lobby
            origin, dest = self.rng.choice(others), main
        else:  # inter-floor
            origin = self.rng.randrange(n)
            dest = self.rng.choice([f for f in range(n) if f != origin])
        self.add_passengers(origin, dest, 1 + (self.rng.random() < 0.25))

    def add_passengers(self, origin: int, dest: int, count: int = 1) -> None:
        self.waiting.setdefault(origin, []).extend([dest] * count)

    # ---------------------------------------------------------------------- messages ----
    def _change_key(self) -> tuple[Any, ...]:
        return (
            self.mode,
            self.car_running,
            self.direction,
            self.floor,
            self.door_zone,
            self.doors_closed,
            self.door_state,
            self.passenger_present,
            self.speed_band(),
            self.safety,
            self.up_limit,
            self.down_limit,
            self.power,
            int(self.battery),
            self.alarm_pressed and self.cfg.alarm_button_telemetry,
            tuple(sorted(self.controller_faults)),
            len(self.riders),
        )

    def snapshot(self) -> dict[str, Any]:
        """The telemetry body (PROTOCOL.md § Telemetry) without ``v``/``ts``/``seq``."""
        lock_open = self.door_state != "locked" or self.doors_forced_open
        body: dict[str, Any] = {
            "service_mode": self.mode,
            "car_status": "running" if self.car_running else "stopped",
            "direction": self.direction,
            "floor": self.floor,
        }
        if not self.position_lost:
            body["floor_index"] = self.nearest_floor()
        body |= {
            "door_zone": self.door_zone,
            "doors_closed": self.doors_closed,
            "door_state": self.door_state,
        }
        if self.cfg.passenger_sensor:
            body["passenger_present"] = bool(self.riders)
        body |= {
            "speed": round(self.speed, 3),
            "position": round(self.position),
            "load": round(len(self.riders) * 75 / self.cfg.rated_load_kg * 100, 1),
            "safety_circuit": self.safety,
            "door_lock_circuit": "open" if lock_open else "closed",
            "up_limit": self.up_limit,
            "down_limit": self.down_limit,
            "power_source": self.power,
            "battery": int(self.battery),
            "controller_faults": [
                {"namespace": ns, "code": code} | ({"text": text} if text else {})
                for (ns, _), (code, text) in sorted(self.controller_faults.items())
            ],
            "total_running_time": round(self.running_ms / 3_600_000, 4),
            "run_count": self.run_count,
            "machine_room_temp": round(self.temp, 1),
            "rssi": self.rssi,
        }
        if self.cfg.alarm_button_telemetry:
            body["alarm_button"] = self.alarm_pressed
        return body

    def device_ts(self) -> int | str:
        ms = self.t + self.skew_ms
        return ms if self.cfg.ts_format == "epoch_ms" else format_ts(ms)

    def emit_telemetry(self) -> None:
        interval = self.cfg.telemetry_running_s if self.car_running else self.cfg.telemetry_idle_s
        self.next_telemetry_ms = self.t + round(interval * 1000)
        self._send("telemetry", self.snapshot(), self.cfg.telemetry_qos)

    def emit_event(self, type_: str, **fields: Any) -> None:
        self._send("event", {"type": type_, **fields}, 1)

    def _send(self, kind: Kind, body: dict[str, Any], qos: int) -> None:
        if self.silent or not self.link_up:
            return  # a hung device sends nothing; a disconnected one drops what it samples
        full = {"v": 1, "ts": self.device_ts(), "seq": self.seq, **body}
        self.seq += 1
        msg = Message(self.cfg.lift_id, kind, _ENCODER.encode(full), self.t, qos)
        self.last_published_ms = self.t
        self.out.extend(self.transform(msg) if self.transform else [msg])

    def status(self, state: Literal["online", "offline"]) -> Message:
        payload = _ENCODER.encode({"v": 1, "state": state})
        return Message(self.cfg.lift_id, "status", payload, self.t, qos=1, retain=True)

    def drain(self) -> list[Output]:
        out, self.out = self.out, []
        return out
