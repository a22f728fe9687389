"""Every metric the worker defines is on its ``/metrics`` page."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from stream import metrics


def test_every_metric_defined_is_exported() -> None:
    # A metric made without registry=REGISTRY goes to prometheus_client's default
    # registry, which the worker does not serve: it counts, and nobody sees it.
    defined = {
        m._name: name for name, m in vars(metrics).items() if isinstance(m, MetricWrapperBase)
    }
    exported = {family.name for family in metrics.REGISTRY.collect()}
    assert defined, "no metrics found: the test proves nothing"
    assert sorted(set(defined) - exported) == []
