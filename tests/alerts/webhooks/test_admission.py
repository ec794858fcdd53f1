"""Admission control alone: the limits, the release, a rolled-back claim (no store, no loop)."""

from __future__ import annotations

from alerts.webhooks.admission import Admission
from liftwatch.store.webhooks import Delivery
from tests.support.webhooks import a_delivery as _d


def test_one_attempt_per_chain_and_per_delivery() -> None:
    a = Admission(concurrency=10, per_subscription=10)
    assert a.reserve(_d(1))
    assert not a.reserve(_d(1))  # the same delivery
    assert not a.reserve(_d(2))  # the same chain (subscription, alarm)
    assert a.reserve(_d(3, alarm="al_2"))
    assert a.busy == 2 and a.chains == {("wh_1", "al_1"), ("wh_1", "al_2")}
    a.release(_d(1))
    assert a.reserve(_d(2))
    assert a.reserved_ids() == {2, 3}


def test_limits_overall_and_per_subscription() -> None:
    a = Admission(concurrency=3, per_subscription=2)
    assert a.reserve(_d(1, alarm="al_1")) and a.reserve(_d(2, alarm="al_2"))
    assert not a.reserve(_d(3, alarm="al_3"))  # wh_1 has its 2
    assert a.reserve(_d(4, sub="wh_2", alarm=None))  # a test event: a chain of its own
    assert not a.reserve(_d(5, sub="wh_3"))  # 3 in all
    a.release(_d(2, alarm="al_2"))
    a.release(_d(2, alarm="al_2"))  # releasing twice gives back one slot only
    assert a.busy == 2
    assert a.reserve(_d(3, alarm="al_3"))


def test_a_rolled_back_claim_gives_its_reservations_back() -> None:
    a = Admission(concurrency=2, per_subscription=2)
    claimed: list[Delivery] = []
    claim = a.claimer(claimed)
    assert claim(_d(1)) and claim(_d(2, alarm="al_2"))
    assert not claim(_d(3, alarm="al_3"))  # full: not remembered
    assert [d.id for d in claimed] == [1, 2]
    a.release_all(claimed)
    assert a.busy == 0 and a.reserved_ids() == frozenset() and not a.chains
