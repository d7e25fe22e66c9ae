"""Shared fixtures: one fresh local stack per test session, and per-test resource names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_spanner.infra.discovery import StackError
from redis_spanner.infra.local import LocalStack, StackEnv
from redis_spanner.schemas.settings import Settings, get_settings

TEST_PROJECT = "redis-spanner-test"
TEST_INSTANCE = "redis-spanner"
INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEnv]:
    """The session's own stack, exported to the environment; stopped when the session ends.

    PUBSUB_EMULATOR_HOST, SPANNER_EMULATOR_HOST or REDIS_URL already set in the environment are
    used instead of starting that component, which points the tests at a stack of one's choice.
    A stack that cannot start fails the tests that need it, with the reason; it never skips them.
    """
    local = LocalStack(tmp_path_factory.mktemp("stack"))
    try:
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
