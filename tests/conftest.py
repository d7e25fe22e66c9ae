"""Shared fixtures: one redis-server per test session, started alone for the tests of Redis
alone, the emulators beside it for the integration tests, and per-test resource names.

Markers are set by where a test lives and what it needs: everything under tests/integration is
``integration`` (the emulators), and so is any module that says so (tests/faults); any other
test that uses the session's redis-server is ``redis``. ``make unit`` runs both ``redis`` and
plain unit tests: redis-server starts in milliseconds and needs no emulator.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.discovery import StackError
from redis_spanner.infra.local.stack import LocalStack, StackEnv
from redis_spanner.schemas.settings import Settings, get_settings

TEST_PROJECT = "redis-spanner-test"
TEST_INSTANCE = "redis-spanner"
INTEGRATION_DIR = Path(__file__).parent / "integration"

# No per-example deadline: a loaded two-core machine makes any example slow now and then, and
# a deadline would turn that into a failure. Each test still has pytest's timeout.
hypothesis_settings.register_profile("redis-spanner", deadline=None)
hypothesis_settings.load_profile("redis-spanner")


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in process configures logging on the stderr of its test, which pytest
    closes afterwards: give every test the root logger's handlers and level as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
        elif (item.get_closest_marker("integration") is None
              and "redis_url" in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's redis-server, started alone (no emulator), stopped when the session ends.

    REDIS_URL already set in the environment names one to use instead. A server that cannot
    start fails the tests that need it, with the reason; it never skips them.
    """
    if external := os.environ.get("REDIS_URL"):
        yield external
        return
    server = faults.redis_server(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except StackError as e:
        server.stop()
        pytest.fail(f"redis-server did not start: {e}", pytrace=False)
    with server:
        yield server.address


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[StackEnv]:
    """The session's own emulators beside the session's redis-server, exported to the
    environment; stopped when the session ends.

    PUBSUB_EMULATOR_HOST or SPANNER_EMULATOR_HOST already set in the environment are used
    instead of starting that emulator, which points the tests at a stack of one's choice.
    A stack that cannot start fails the tests that need it, with the reason; it never skips them.
    """
    local = LocalStack(tmp_path_factory.mktemp("stack"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("REDIS_URL", redis_url)  # the session's server: the stack keeps it
            env = local.up()
    except StackError as e:
        pytest.fail(f"the local stack did not start: {e}", pytrace=False)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.exports().items():
                patch.setenv(name, value)
            get_settings.cache_clear()
            yield env
    finally:
        get_settings.cache_clear()
        local.down()


@pytest.fixture
def settings(stack: StackEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings naming this test's own topics, subscriptions, database and key namespace.

    They are exported too, so code that calls ``get_settings()`` sees the same names.
    """
    tag = uuid.uuid4().hex[:12]
    names = {
        "GOOGLE_CLOUD_PROJECT": TEST_PROJECT,
        "REDIS_SPANNER_INSTANCE": TEST_INSTANCE,
        "REDIS_SPANNER_DATABASE": f"db-{tag}",
        "REDIS_SPANNER_TOPIC": f"events-{tag}",
        "REDIS_SPANNER_SUBSCRIPTION": f"consumer-{tag}",
        "REDIS_SPANNER_DEAD_LETTER_TOPIC": f"dead-letter-{tag}",
        "REDIS_SPANNER_DEAD_LETTER_SUBSCRIPTION": f"dead-letter-hold-{tag}",
        "REDIS_SPANNER_NAMESPACE": f"t{tag}",
    }
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
