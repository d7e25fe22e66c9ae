"""Who may push: Pub/Sub's OIDC token on each push request, verified with google-auth.

A push subscription with an ``oidc_token`` sends ``Authorization: Bearer <JWT>``, signed by
Google for the subscription's service account. A request is let through only when the token's
signature checks against the certificates at ``certs_url``, it has not expired, its audience is
ours, its issuer is Google's, and it names the expected service account with a verified email.

The certificates are fetched once and kept for as long as their ``Cache-Control: max-age``
allows, so verifying a push costs no network call. This module is the push side's one touch
point with google-auth.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions as gexc
import google.auth.transport.requests as gtransport
from google.auth import transport
from google.oauth2 import id_token
from redis_spanner.schemas.errors import PermanentError, TransientError
from redis_spanner.schemas.settings import Settings

log = logging.getLogger(__name__)

ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
FETCH_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_AGE_SECONDS = 300.0
"""How long certificates are kept when their response names no max-age."""
CLOCK_SKEW_SECONDS = 10


class PushAuthConfigError(PermanentError):
    """Push authentication is misconfigured: ``serve`` refuses to start."""

    reason = "config"


class Unauthenticated(Exception):
    """No token, or one that does not verify: answer 401."""


class Forbidden(Exception):
    """A valid Google token, but not the push identity's: answer 403."""


@dataclass(frozen=True)
class PushAuthConfig:
    audience: str
    service_account: str
    certs_url: str


def auth_config(settings: Settings) -> PushAuthConfig | None:
    """What ``serve`` checks, or None when verification is off (allowed on emulators only)."""
    if not settings.push_auth:
        if not settings.fully_emulated:
            raise PushAuthConfigError(
                "REDIS_SPANNER_PUSH_AUTH=off is refused unless PUBSUB_EMULATOR_HOST and "
                "SPANNER_EMULATOR_HOST are both set"
            )
        return None
    audience, account = settings.push_audience, settings.push_service_account
    if not audience or not account:
        missing = [name for name, value in (("REDIS_SPANNER_PUSH_AUDIENCE", audience),
                                            ("REDIS_SPANNER_PUSH_SERVICE_ACCOUNT", account))
                   if not value]
        raise PushAuthConfigError(
            f"{' and '.join(missing)} must be set to verify pushes "
            "(or REDIS_SPANNER_PUSH_AUTH=off against the emulators)"
        )
    return PushAuthConfig(audience, account, settings.push_certs_url)


class CachingRequest(transport.Request):
    """A google-auth transport that keeps GET responses for their ``max-age``.

    Only successful responses are kept; a failed fetch is tried again on the next request.
    """

    def __init__(self) -> None:
        self._inner = gtransport.Request()
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, transport.Response]] = {}
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> transport.Response:
        if method != "GET" or body is not None:
            passed: transport.Response = self._inner(
                url, method, body, headers, timeout or FETCH_TIMEOUT_SECONDS, **kwargs)
            return passed
        with self._lock:
            hit = self._cached.get(url)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            response: transport.Response = self._inner(
                url, "GET", None, headers, FETCH_TIMEOUT_SECONDS, **kwargs)
            self.fetches += 1
            if response.status == 200:
                max_age = _max_age(response.headers)
                self._cached[url] = (time.monotonic() + max_age, response)
            return response


def _max_age(headers: Mapping[str, str]) -> float:
    control = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
    if re.search(r"\b(no-store|no-cache)\b", control):
        return 0.0
    found = re.search(r"\bmax-age=(\d{1,9})\b", control)
    return float(found.group(1)) if found else DEFAULT_MAX_AGE_SECONDS


class PushVerifier:
    """Checks the ``Authorization`` header of one push request."""

    def __init__(self, config: PushAuthConfig, request: CachingRequest | None = None) -> None:
        self.config = config
        self.request = request or CachingRequest()

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims; raises ``Unauthenticated``, ``Forbidden`` or ``TransientError``
        (the certificates could not be fetched: the push should be retried)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("no bearer token")
        try:
            claims = id_token.verify_token(
                token.strip(), self.request, audience=self.config.audience,
                certs_url=self.config.certs_url, clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        except gexc.TransportError as e:
            raise TransientError("could not fetch the token certificates") from e
        except (ValueError, gexc.GoogleAuthError) as e:
            raise Unauthenticated(f"token refused: {type(e).__name__}") from e
        if claims.get("iss") not in ISSUERS:
            raise Unauthenticated("token not issued by Google")
        if claims.get("email") != self.config.service_account:
            raise Forbidden("token names another service account")
        if claims.get("email_verified") is not True:
            raise Forbidden("token's email is not verified")
        return claims
