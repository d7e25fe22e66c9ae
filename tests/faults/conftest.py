"""Fixtures of the fault-injection suite: a redis-server of each test's own, emulators of a
module's own, and the test's ``Pipeline`` (see ``harness``).

Each test injects its fault into processes nobody else uses: its own redis-server, and for the
Pub/Sub pause and the Spanner aborts, emulators of the module's own. Names come from the
``settings`` fixture, so topics, subscriptions, database and key namespace are the test's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from redis_spanner.infra.local import faults
from redis_spanner.infra.provision.declaration import load_declaration
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.schemas.settings import Settings, get_settings

from tests.faults.harness import Pipeline, own_process


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[faults.OwnProcess]:
    """A redis-server of the test's own, free to stall, kill, restart and flush."""
    yield from own_process(faults.redis_server(tmp_path))


@pytest.fixture(scope="module")
def own_pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.OwnProcess]:
    """A Pub/Sub emulator for the module alone: pausing it disturbs no other test."""
    yield from own_process(faults.pubsub_emulator(tmp_path_factory.mktemp("pubsub")))


@pytest.fixture(scope="module")
def own_spanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.OwnProcess]:
    """A Spanner emulator for the module alone: freezing it disturbs no other test."""
    yield from own_process(faults.spanner_emulator(tmp_path_factory.mktemp("spanner")))


@pytest.fixture(scope="module")
def aborting_spanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.OwnProcess]:
    """A fresh Spanner emulator for the module alone, aborting commits at random."""
    yield from own_process(faults.spanner_emulator(tmp_path_factory.mktemp("spanner"),
                                                   fault_injection=True))


@pytest.fixture
def open_pipeline(
    settings: Settings, own_redis: faults.OwnProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Pipeline]]:
    """Provision the test's resources and return its ``Pipeline``.

    ``ack_deadline`` shortens the subscription's ack deadline (the emulator takes less than the
    API's 10 s minimum), ``environ`` points at other services, and every other keyword is a
    setting: ``retry_seconds=1`` exports ``REDIS_SPANNER_RETRY_SECONDS=1``.
    """
    opened: list[Pipeline] = []

    def open_(*, ack_deadline: int | None = None, environ: Mapping[str, str] | None = None,
              **overrides: object) -> Pipeline:
        monkeypatch.setenv("REDIS_URL", own_redis.address)
        monkeypatch.setenv("REDIS_SPANNER_REDIS_TIMEOUT_SECONDS", "0.5")
        for name, value in (environ or {}).items():
            monkeypatch.setenv(name, value)
        for setting, override in overrides.items():
            monkeypatch.setenv(f"REDIS_SPANNER_{setting.upper()}", str(override))
        get_settings.cache_clear()
        configured = get_settings()
        declaration = load_declaration()
        if ack_deadline is not None:
            declaration = replace(declaration, subscription=replace(
                declaration.subscription, ack_deadline_seconds=ack_deadline))
        provision(configured, declaration, ddl=[DEMO_SCHEMA_PATH])
        pipeline = Pipeline(configured, own_redis)
        opened.append(pipeline)
        return pipeline

    yield open_
    for pipeline in opened:
        pipeline.close()
        teardown(pipeline.settings)

