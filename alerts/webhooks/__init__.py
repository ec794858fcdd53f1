"""Webhook delivery (WEBHOOKS.md), laid out like Alertmanager's notify pipeline:

- :mod:`.signing` — Standard Webhooks secrets and signatures;
- :mod:`.backoff` — the retry schedule and ``Retry-After``;
- :mod:`.ssrf` — which URLs and resolved addresses may be called;
- :mod:`.filters` — which subscriptions an event goes to;
- :mod:`.dispatcher` — drains the outbox into deliveries and sends them, durably and in order.
"""
