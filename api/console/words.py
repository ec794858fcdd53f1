"""Words the templates translate from data (``_(alarm.status)``): listed here so that
``pybabel extract -k N_`` finds them (docs/console.md § Translations)."""

from __future__ import annotations


def N_(message: str) -> str:
    return message


WORDS = (
    N_("critical"),
    N_("major"),
    N_("minor"),
    N_("open"),
    N_("acknowledged"),
    N_("on_site"),
    N_("resolved"),
    N_("active"),
    N_("cleared"),
    N_("online"),
    N_("offline"),
    N_("unknown"),
    N_("rescued"),
    N_("repaired"),
    N_("false_alarm"),
    N_("test"),
    # an alarm's transitions (alerts/lifecycle.py)
    N_("raised"),
    N_("escalated"),
    N_("overdue"),
    N_("condition_cleared"),
    N_("condition_returned"),
    N_("suppression_ended"),
    # where an alarm came from
    N_("device"),
    N_("rule"),
    # device events (PROTOCOL.md)
    N_("alarm_button"),
    N_("fault"),
    N_("selftest"),
    N_("end_of_alarm"),
)
