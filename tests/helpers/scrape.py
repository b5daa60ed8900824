"""Scraping a real /metrics endpoint and reading it with prometheus-client's own parser."""

from __future__ import annotations

import re

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

METRICS_LINE = re.compile(r"Metrics on: (http://\S+/)metrics")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def get(url: str) -> tuple[int, str]:
    """(status, body) of a plain GET on loopback (no proxy from the environment)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def scrape(base: str) -> Samples:
    """Every sample of ``base``/metrics, by (name, sorted labels), parsed as Prometheus would."""
    status, text = await get(base + "metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; fails naming what the scrape had of that name."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        found = sorted(k for k in samples if k[0] == name)
        raise AssertionError(f"no sample {key}; of that name: {found}")
    return samples[key]


def moved(before: Samples, after: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples that changed between two scrapes, by how much (gauges of time and
    disk, and _created timestamps, left out)."""
    unstable = ("_created", "heartbeat_timestamp", "disk_free", "workspace_bytes")
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if after[key] != before.get(key, 0.0) and not any(u in key[0] for u in unstable)
    }
