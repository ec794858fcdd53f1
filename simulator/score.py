"""Score detection: ground-truth labels + the alarms liftwatch raised → recall, false alarms,
delays. Pure: no I/O, so the end-to-end test, ``bench/detection_score.py`` and
``liftwatch simulate score`` share one definition of "detected".

Matching rules:

- A ``raise`` label is detected by the earliest unused, unsuppressed observation of the same
  lift and code (and subtype, when both name one) at or after ``onset − 1 s``. Its delay is
  counted from the onset; ``over`` is delay − threshold, and a detection is *in time* when
  over ≤ the tolerance (1 s).
- ``allow`` labels absorb matching observations inside their window: neither hit nor harm.
- An unsuppressed ``raised`` observation matching a ``forbid`` label's lift, code (``*`` =
  any) and window is a **forbidden** alarm; one that matches no label at all is
  **unexpected**. Both count as false alarms. Suppressed alarms are recorded but never
  notified (FAULTS.md), so they are ignored. ``returned`` observations (an unresolved alarm's
  condition coming back) can detect a label but are never counted as false alarms unless
  they hit a ``forbid`` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from simulator.labels import Label

EARLY_SLACK_MS = 1000


@dataclass(frozen=True)
class Observed:
    """One alarm (or condition return) liftwatch produced."""

    lift_id: str
    code: str
    at_ms: int
    subtype: str | None = None
    suppressed: bool = False
    kind: Literal["raised", "returned"] = "raised"
    alarm_id: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Observed:
        """Accepts the API's alarm view (``raised_at`` RFC 3339) or ``at_ms``."""
        at = data.get("at_ms")
        if at is None:
            raw = data.get("raised_at") or data.get("at") or data.get("timestamp")
            if not isinstance(raw, str):
                raise ValueError(f"alarm without a time: {dict(data)!r:.200}")
            at = round(datetime.fromisoformat(raw).timestamp() * 1000)
        return cls(
            lift_id=str(data["lift_id"]),
            code=str(data["code"]),
            at_ms=int(at),
            subtype=data.get("subtype"),
            suppressed=bool(data.get("suppressed", False)),
            kind="returned" if data.get("kind") == "returned" else "raised",
            alarm_id=str(data.get("alarm_id") or data.get("id") or ""),
        )


@dataclass
class Row:
    label: Label
    observed: Observed | None = None

    @property
    def delay_s(self) -> float | None:
        if self.observed is None:
            return None
        return (self.observed.at_ms - self.label.onset_ms) / 1000

    @property
    def over_s(self) -> float | None:
        delay = self.delay_s
        return None if delay is None else delay - self.label.threshold_s


@dataclass
class Score:
    rows: list[Row]
    forbidden: list[tuple[Label, Observed]] = field(default_factory=list)
    unexpected: list[Observed] = field(default_factory=list)
    tolerance_s: float = 1.0

    def _recall(self, critical_only: bool) -> float:
        rows = [r for r in self.rows if not critical_only or r.label.severity == "critical"]
        if not rows:
            return 1.0
        return sum(1 for r in rows if r.observed is not None) / len(rows)

    @property
    def recall_critical(self) -> float:
        return self._recall(True)

    @property
    def recall_all(self) -> float:
        return self._recall(False)

    @property
    def false_alarms(self) -> int:
        return len(self.forbidden) + len(self.unexpected)

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.observed is None]

    @property
    def late(self) -> list[Row]:
        return [r for r in self.rows if r.over_s is not None and r.over_s > self.tolerance_s]

    @property
    def max_delay_over_threshold_s(self) -> float:
        overs = [r.over_s for r in self.rows if r.over_s is not None]
        return max(overs) if overs else 0.0

    @property
    def passed(self) -> bool:
        critical_ok = self.recall_critical == 1.0
        return critical_ok and self.false_alarms == 0 and not self.late and not self.missed

    def summary_line(self) -> str:
        return (
            f"recall_critical={self.recall_critical:.3f} recall_all={self.recall_all:.3f} "
            f"false_alarms={self.false_alarms} "
            f"max_delay_over_threshold_s={self.max_delay_over_threshold_s:.3f}"
        )

    def table(self, start_ms: int | None = None) -> str:
        """A fixed-width table: one row per expected alarm, then every false alarm."""
        base = (
            start_ms
            if start_ms is not None
            else min((r.label.onset_ms for r in self.rows), default=0)
        )

        def rel(ms: int) -> str:
            return f"{(ms - base) / 1000:8.1f}"

        head = (
            f"{'lift':<14} {'code':<34} {'sev':<8} {'onset':>8} {'thr':>7} "
            f"{'raised':>8} {'delay':>7} {'over':>6}  result"
        )
        lines = [head, "-" * len(head)]
        for row in sorted(self.rows, key=lambda r: (r.label.onset_ms, r.label.lift_id)):
            lab = row.label
            code = lab.code + (f"/{lab.subtype}" if lab.subtype else "")
            if row.observed is None:
                tail = f"{'-':>8} {'-':>7} {'-':>6}  MISSED"
            else:
                over = row.over_s or 0.0
                verdict = "ok" if over <= self.tolerance_s else "LATE"
                tail = f"{rel(row.observed.at_ms)} {row.delay_s:7.2f} {over:6.2f}  {verdict}"
            lines.append(
                f"{lab.lift_id:<14} {code:<34} {lab.severity:<8} {rel(lab.onset_ms)} "
                f"{lab.threshold_s:7.1f} {tail}"
            )
        for lab, obs in self.forbidden:
            code = obs.code + (f"/{obs.subtype}" if obs.subtype else "")
            lines.append(
                f"{obs.lift_id:<14} {code:<34} {'':<8} {'':>8} {'':>7} {rel(obs.at_ms)} "
                f"{'':>7} {'':>6}  FORBIDDEN ({lab.cause})"
            )
        for obs in self.unexpected:
            code = obs.code + (f"/{obs.subtype}" if obs.subtype else "")
            lines.append(
                f"{obs.lift_id:<14} {code:<34} {'':<8} {'':>8} {'':>7} {rel(obs.at_ms)} "
                f"{'':>7} {'':>6}  UNEXPECTED"
            )
        return "\n".join(lines)


def _same_alarm(label: Label, obs: Observed) -> bool:
    if label.lift_id != obs.lift_id:
        return False
    if label.code != "*" and label.code != obs.code:
        return False
    return label.subtype is None or obs.subtype is None or label.subtype == obs.subtype


def _in_window(label: Label, obs: Observed, end_ms: int | None) -> bool:
    until = label.until_ms if label.until_ms is not None else end_ms
    return obs.at_ms >= label.onset_ms - EARLY_SLACK_MS and (until is None or obs.at_ms <= until)


def score(
    labels: Sequence[Label],
    observed: Iterable[Observed],
    *,
    lifts: Iterable[str] | None = None,
    end_ms: int | None = None,
    tolerance_s: float = 1.0,
) -> Score:
    """Compare ``observed`` alarms with ``labels``; observations of lifts not in ``lifts``
    (default: the lifts the labels name) are someone else's and ignored."""
    scope = set(lifts) if lifts is not None else {lab.lift_id for lab in labels}
    pool = sorted(
        (o for o in observed if o.lift_id in scope and not o.suppressed),
        key=lambda o: o.at_ms,
    )
    used: set[int] = set()
    rows: list[Row] = []
    for label in sorted(
        (lab for lab in labels if lab.expect == "raise"), key=lambda lab: lab.due_ms
    ):
        row = Row(label)
        for i, obs in enumerate(pool):
            if i not in used and _same_alarm(label, obs) and _in_window(label, obs, None):
                used.add(i)
                row.observed = obs
                break
        rows.append(row)
    allows = [lab for lab in labels if lab.expect == "allow"]
    forbids = [lab for lab in labels if lab.expect == "forbid"]
    forbidden: list[tuple[Label, Observed]] = []
    unexpected: list[Observed] = []
    for i, obs in enumerate(pool):
        if i in used:
            continue
        hit = next((f for f in forbids if _same_alarm(f, obs) and _in_window(f, obs, end_ms)), None)
        if hit is not None:
            forbidden.append((hit, obs))
            continue
        if any(_same_alarm(a, obs) and _in_window(a, obs, end_ms) for a in allows):
            continue
        if obs.kind == "raised" and (end_ms is None or obs.at_ms <= end_ms):
            unexpected.append(obs)
    return Score(rows, forbidden, unexpected, tolerance_s)
