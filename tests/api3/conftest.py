"""Fixtures of the shotgun_api3 drop-in tests.

`cache` is a `shotgun_api3.Shotgun` pointed at the query-server's api3 endpoint, `site` the same
client pointed straight at the simulated site. Both use the same script credentials (the cache
forwards what it cannot answer with the client's own credentials). `answered_by` reads the
query-server's `api3_calls_total` counter, so a test can tell whether the cache answered a call
itself or forwarded it to the site. The stack is started by scripts/test-api3.
"""

import os
import re
import urllib.request

import pytest
import shotgun_api3


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the api3 tests through scripts/test-api3", returncode=2)
    return value


@pytest.fixture(scope="session")
def cache():
    return shotgun_api3.Shotgun(_env("API3_CACHE_URL"), _env("API3_SCRIPT"), _env("API3_KEY"))


@pytest.fixture(scope="session")
def site():
    return shotgun_api3.Shotgun(_env("API3_SITE_URL"), _env("API3_SCRIPT"), _env("API3_KEY"))


class Counters:
    """The query-server's `api3_calls_total{method, answered_by}` counters, read from /metrics."""

    LINE = re.compile(r'^api3_calls_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$')

    def __init__(self, url):
        self.url = url

    def read(self):
        with urllib.request.urlopen(self.url, timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            m = self.LINE.match(line.strip())
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
            key = (labels.get("method"), labels.get("answered_by"))
            out[key] = out.get(key, 0) + float(m.group("value"))
        return out

    def delta(self, before):
        after = self.read()
        return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


@pytest.fixture(scope="session")
def counters():
    return Counters(_env("API3_CACHE_METRICS"))


@pytest.fixture
def answered_by(counters, cache):
    """Runs a call through the cache and returns (its result, {(method, answered_by): count})."""
    # Make sure the client has read `info` already, so it does not show up in the counts.
    cache.server_caps  # noqa: B018

    def run(fn, *args, **kwargs):
        before = counters.read()
        result = fn(*args, **kwargs)
        return result, counters.delta(before)

    return run
