"""The one ``/metrics`` of ``voiceivr serve``: the workers' figures plus Kamailio's admission refusals.

Workers write their metrics to files (prometheus_client's multiprocess mode) and the supervisor serves their
sum. Behind Kamailio most refusals happen there, not in a worker (allow-list, digest, per-source limits, all
workers full, floods: kamailio.cfg.in counts each with a script counter). At every scrape the supervisor
reads those counters over Kamailio's JSON-RPC socket and adds them to ``voiceivr_sip_refused_total`` under
the same reason labels a worker uses without Kamailio, so one query covers both layouts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REFUSED = "voiceivr_sip_refused"
_HELP = "New calls refused at admission, by reason (worker and Kamailio)."


class ServeCollector(Collector):
    """The workers' families, with Kamailio's refusal counters merged into ``voiceivr_sip_refused_total``."""

    def __init__(self, workers: Collector, kamailio_counters: Callable[[], dict[str, int] | None]) -> None:
        self._workers = workers
        self._kamailio = kamailio_counters
        self._last: dict[str, int] = {}
        self._base: dict[str, int] = {}  # what a restarted Kamailio had counted before it died

    def collect(self) -> Iterator[Metric]:
        refused: dict[str, float] = dict(self._kamailio_totals())
        for family in self._workers.collect():
            if family.name != REFUSED:
                yield family
                continue
            for sample in family.samples:
                if sample.name == REFUSED + "_total":
                    reason = sample.labels.get("reason", "")
                    refused[reason] = refused.get(reason, 0.0) + sample.value
        merged = CounterMetricFamily(REFUSED, _HELP, labels=["reason"])
        for reason, value in sorted(refused.items()):
            merged.add_metric([reason], value)
        yield merged

    def _kamailio_totals(self) -> Iterable[tuple[str, float]]:
        try:
            counts = self._kamailio()
        except (OSError, ValueError) as exc:  # Kamailio restarting or not up yet: its figures are missing once
            log.warning("cannot read Kamailio's counters", extra={"error": str(exc)})
            counts = None
        if counts is None:
            counts = dict(self._last)
        for name, value in counts.items():
            if value < self._last.get(name, 0):  # Kamailio restarted: its counters began again at 0
                self._base[name] = self._base.get(name, 0) + self._last[name]
            self._last[name] = value
            yield name, float(value + self._base.get(name, 0))
