"""An alerts replica's leases, kept every second (docs/ha.md § The lease protocol).

:class:`Keeper` runs :func:`liftwatch.store.leases.lease_round` each :data:`ROUND_S`: it
renews this replica's partitions, takes free or expired ones up to a fair share, gives back
what is above it, and tells the engine (:meth:`Engine.take_over`, :meth:`Engine.give_up`).
A clean stop gives everything back so the other replicas take over at their next round.
The store is the only shared thing: no replica talks to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Final

from alerts.engine import Engine
from liftwatch.store import OperationalError, leases
from liftwatch.store.leases import Round

log = logging.getLogger("liftwatch.alerts")

ROUND_S: Final = 1.0


class Keeper:
    def __init__(
        self, engine: Engine, *, ttl_ms: int = leases.LEASE_TTL_MS, round_s: float = ROUND_S
    ) -> None:
        if engine.replica_id is None or engine.held is None:
            raise ValueError("the engine is not a replica (no replica_id)")
        self.engine = engine
        self.replica_id = engine.replica_id
        self.incarnation = secrets.token_hex(8)
        self.ttl_ms = ttl_ms
        self.round_s = round_s
        self.first = True
        self._conflict_logged = False

    def round(self) -> Round:
        """One lease round and what follows from it (blocking: run it in a thread)."""
        engine = self.engine
        with engine._lock:
            held = dict(engine.held or {})
        r = leases.lease_round(
            engine.db,
            self.replica_id,
            self.incarnation,
            held,
            first=self.first,
            now_ms=engine.clock.now_ms(),
            ttl_ms=self.ttl_ms,
        )
        self.first = False
        if r.conflict and not self._conflict_logged:
            self._conflict_logged = True
            log.error(
                "event=replica_id_conflict replica=%s: another process started with this"
                " replica id and took its partitions; give each alerts process its own"
                " LIFTWATCH_ALERTS_REPLICA_ID (this one now evaluates without committing)",
                self.replica_id,
            )
        released = engine.hand_over(r.surplus) if r.surplus else 0
        if r.lost:
            engine.give_up(r.lost)
        if r.lost or r.surplus:
            log.info(
                "event=partitions_left replica=%s lost=%d released=%d held=%d live=%d which=%s",
                self.replica_id,
                len(r.lost),
                released,
                len(r.held) - len(r.surplus),
                r.live,
                ",".join(map(str, sorted(r.lost | set(r.surplus)))),
            )
        if r.gained:
            try:
                report = engine.take_over(r.gained)
            except Exception:
                # Give them back: the next round (this replica's or another's) takes them
                # again with a whole takeover. If even that fails, they expire.
                with contextlib.suppress(Exception), engine.db.transaction(serialized=False) as c:
                    leases.release_in(c, self.replica_id, r.gained)
                raise
            saved = engine.save_partitions(r.gained)
            previous = sorted({o for o in r.previous.values() if o and o != self.replica_id})
            log.info(
                "event=partitions_taken replica=%s partitions=%d from=%s held=%d live=%d"
                " lifts=%d adopted=%d replayed=%d transitions=%d took_ms=%d saved=%d which=%s",
                self.replica_id,
                len(r.gained),
                ",".join(previous) or "-",
                len(r.held),
                r.live,
                report["lifts"],
                report["adopted"],
                report["replayed"],
                report["transitions"],
                report["took_ms"],
                saved,
                ",".join(map(str, sorted(r.gained))),
            )
        return r

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop``; then give every partition back (a clean stop)."""
        failing = False
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.round)
                    if failing:
                        log.info("event=lease_round_recovered replica=%s", self.replica_id)
                    failing = False
                except Exception as exc:
                    # The store is away: nothing can be committed anyway; the epochs decide
                    # who owns what when it is back.
                    if not failing:
                        log.warning(
                            "event=lease_round_failed replica=%s error=%r",
                            self.replica_id,
                            str(exc)[:200],
                        )
                    failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.round_s)
        finally:
            await asyncio.to_thread(self.leave)

    def leave(self) -> None:
        """Save the last checkpoints, then give every partition back."""
        engine = self.engine
        try:
            while engine.checkpoint_dirty() > 0:
                pass
        except OperationalError as exc:
            log.warning("event=checkpoint_failed replica=%s error=%r", self.replica_id, exc)
        with engine._lock:
            held = dict(engine.held or {})
        try:
            n = engine.hand_over(held)
            leases.leave(engine.db, self.replica_id, self.incarnation, now_ms=engine.clock.now_ms())
        except Exception as exc:  # the store is away: the leases expire by themselves
            engine.give_up(held)
            log.warning("event=lease_release_failed replica=%s error=%r", self.replica_id, exc)
            return
        log.info("event=partitions_released replica=%s partitions=%d", self.replica_id, n)
