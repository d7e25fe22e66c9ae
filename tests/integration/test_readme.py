"""The README's Python examples run, in order, against the local stack, so they can't rot.

Every block fenced as ```python is executed in one namespace with the test's own settings
exported (its database, namespace and Redis), after the resources are provisioned.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis_spanner.schemas.settings import Settings

README = Path(__file__).parents[2] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text())


def test_the_readme_shows_the_public_api_in_python() -> None:
    """The README's examples cover the outbox, both read-through clients and the errors."""
    text = "\n".join(python_blocks())
    for name in ("record", "run_transaction", "open_database", "CacheClient.from_env",
                 "AsyncCacheClient.from_env", "TransientError", "FastPath.from_env",
                 "run_transaction_async"):
        assert name in text, f"the README shows no example of {name}"
    assert "redis_spanner." not in text, "examples import only the public API"


def test_the_readmes_python_examples_run(provisioned: Settings,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each example runs without error and its assertions hold on the real stack."""
    namespace: dict[str, object] = {"__name__": "readme"}
    for number, block in enumerate(python_blocks(), 1):
        code = compile(block, f"README.md python block {number}", "exec")
        exec(code, namespace)
    assert "bad key:" in capsys.readouterr().out
    closing = namespace.get("cache")
    if closing is not None:
        closing.close()  # type: ignore[attr-defined]
