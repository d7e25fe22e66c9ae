"""Invalid settings are explained in one line that never shows a secret, whether the rule
broken is one setting's or a rule across several."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis_spanner.schemas.settings import Settings, explain

SECRET = "pa55-word-never-shown"


@pytest.mark.parametrize("fields", [
    # a rule across settings (model-level): the whole input must not be echoed
    {"redis_wait_replicas": 1, "redis_wait_timeout_ms": 5000, "redis_timeout_seconds": 1},
    # a rule of the secret itself
    {"REDIS_URL": f"http://:{SECRET}@h:1/0"},
])
def test_an_invalid_combination_is_explained_without_the_redis_password(
    fields: dict[str, object],
) -> None:
    """The explanation names what is wrong and holds no part of REDIS_URL's password, nor
    does the error's own text."""
    values: dict[str, object] = {"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:6379/0", **fields}
    with pytest.raises(ValidationError) as refused:
        Settings(**values)  # type: ignore[arg-type]
    line = explain(refused.value)
    assert line.startswith("invalid setting ") and "\n" not in line
    assert SECRET not in line and SECRET not in str(refused.value)
