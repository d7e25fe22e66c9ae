"""Push authentication's configuration: secure unless provably local, and complete or refused."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from redis_spanner.consumers.push import MAX_BODY_BYTES, PUBSUB_MAX_MESSAGE_BYTES
from redis_spanner.consumers.push_auth import (
    DEFAULT_MAX_AGE_SECONDS,
    CachingRequest,
    PushAuthConfigError,
    _max_age,
    auth_config,
)
from redis_spanner.schemas.settings import GOOGLE_CERTS_URL, Settings

from tests.tokens import Issuer, serving_certs
from tests.waiting import wait_until

EMULATORS = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "SPANNER_EMULATOR_HOST": "127.0.0.1:2"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REDIS_SPANNER_PUSH") or name.endswith("_EMULATOR_HOST"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("emulators", [{}, {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"},
                                       {"SPANNER_EMULATOR_HOST": "127.0.0.1:2"}])
def test_auth_off_is_refused_unless_both_emulators(monkeypatch: pytest.MonkeyPatch,
                                                   emulators: dict[str, str]) -> None:
    """Turning verification off needs both emulator hosts: with one or none, start fails."""
    for name, value in {**emulators, "REDIS_SPANNER_PUSH_AUTH": "off"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PushAuthConfigError, match="REDIS_SPANNER_PUSH_AUTH=off is refused"):
        auth_config(Settings())


def test_auth_off_is_allowed_on_the_emulators(monkeypatch: pytest.MonkeyPatch) -> None:
    """With both emulators, off means no verifier."""
    for name, value in {**EMULATORS, "REDIS_SPANNER_PUSH_AUTH": "off"}.items():
        monkeypatch.setenv(name, value)
    assert auth_config(Settings()) is None


@pytest.mark.parametrize("present", [{}, {"REDIS_SPANNER_PUSH_AUDIENCE": "https://a/push"},
                                     {"REDIS_SPANNER_PUSH_SERVICE_ACCOUNT": "p@x.iam"}])
def test_verification_is_on_by_default_and_needs_both_settings(
        monkeypatch: pytest.MonkeyPatch, present: dict[str, str]) -> None:
    """By default (even on the emulators) verification is on, so audience and account must be
    set; the error names each missing variable."""
    for name, value in {**EMULATORS, **present}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PushAuthConfigError) as raised:
        auth_config(Settings())
    for name in ("REDIS_SPANNER_PUSH_AUDIENCE", "REDIS_SPANNER_PUSH_SERVICE_ACCOUNT"):
        assert (name in str(raised.value)) == (name not in present)


def test_complete_settings_give_googles_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    """With audience and account set, tokens are checked against Google's certificates."""
    monkeypatch.setenv("REDIS_SPANNER_PUSH_AUDIENCE", "https://a/push")
    monkeypatch.setenv("REDIS_SPANNER_PUSH_SERVICE_ACCOUNT", "p@x.iam")
    config = auth_config(Settings())
    assert config is not None and config.certs_url == GOOGLE_CERTS_URL


@pytest.mark.parametrize(("control", "seconds"), [
    ("public, max-age=19869, must-revalidate, no-transform", 19869.0),
    ("max-age=0", 0.0), ("no-store", 0.0), ("private, no-cache, max-age=60", 0.0),
    ("", DEFAULT_MAX_AGE_SECONDS), ("max-age=abc", DEFAULT_MAX_AGE_SECONDS),
])
def test_certificates_are_kept_for_their_max_age(control: str, seconds: float) -> None:
    """Cache-Control decides how long fetched certificates are kept."""
    assert _max_age({"Cache-Control": control}) == seconds


def test_the_largest_pubsub_message_fits_under_the_body_cap() -> None:
    """The cap is a little above Pub/Sub's limit: its largest message, base64-encoded with 100
    attributes at their size limits, is accepted; a body 2 MB larger is not."""
    data = base64.b64encode(b"\xff" * PUBSUB_MAX_MESSAGE_BYTES).decode()
    attributes = {f"{n:0256d}": "v" * 1024 for n in range(100)}
    body = json.dumps({"message": {"data": data, "messageId": "1" * 20,
                                   "attributes": attributes, "publishTime": "x" * 30},
                       "subscription": "s" * 300, "deliveryAttempt": 100})
    assert len(body) < MAX_BODY_BYTES < len(body) + 2_000_000


def test_serve_refuses_auth_off_in_one_line() -> None:
    """`serve` with verification off and no emulators exits 2 with one line naming the
    setting, before it connects to anything."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_EMULATOR_HOST") and not k.startswith("REDIS_SPANNER_PUSH")}
    env["REDIS_SPANNER_PUSH_AUTH"] = "off"
    done = subprocess.run([sys.executable, "-m", "redis_spanner.infra.cli", "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "REDIS_SPANNER_PUSH_AUTH=off" in done.stderr


def test_certificates_are_fetched_again_once_their_max_age_passes() -> None:
    """Within max-age the transport answers from memory; after it, the next call fetches the
    certificates again (so rotated keys are picked up)."""
    with serving_certs(Issuer().certs, max_age=1) as certs:
        request = CachingRequest()
        for _ in range(5):
            assert request(certs.url).status == 200
        assert len(certs.fetches) == 1
        wait_until(lambda: request(certs.url) and len(certs.fetches) == 2, timeout=20)
        assert request.fetches == 2
