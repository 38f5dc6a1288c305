"""One scrape of the service's /metrics, parsed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain"), answer.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice in one scrape"
            samples[key] = sample.value
    return samples


async def scrape_until(port: int, done: Callable[[Samples], bool], within_s: float = 10.0) -> Samples:
    """Scrapes until `done` holds (the workers write their calls' counts
    each second); the last scrape, done or not, after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        samples = await scrape(port)
        if done(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.2)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels; 0 when absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def matching(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of `name` whose labels include these."""
    want = set(labels.items())
    return {key: v for (n, key), v in samples.items() if n == name and want <= key}


async def exported_names(port: int) -> set[str]:
    """Every series name the scrape declares, with or without values yet (a
    labelled family has its HELP and TYPE before its first value)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            found.add(name)
            if kind == "histogram":
                found |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif line and not line.startswith("#"):
            found.add(line.split("{", 1)[0].split(" ", 1)[0])
    return found
