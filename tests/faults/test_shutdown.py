"""SIGTERM stops ``redis-spanner worker`` and ``redis-spanner serve`` within 10 s in every
case (during start-up, with Pub/Sub, Spanner or Redis out of reach, in the middle of a batch),
and nothing is acked that was not applied."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.infra.local import faults
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType

from tests.faults.commands import command, dead_address, healthy, serve_args
from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

LONG_RETRIES = {"REDIS_SPANNER_RETRY_ATTEMPTS": "1000", "REDIS_SPANNER_RETRY_SECONDS": "120"}
"""A retry budget far longer than a stop may take: only the stop signal can end it."""


def rewarm_event() -> Event:
    return Event("5e1f0c2a-0000-4000-8000-000000000001", EventType.ROW_CHANGED, "Members",
                 (7, "member-1"), time.time_ns())


def publish(pipe: Pipeline, event: Event) -> None:
    client = pubsub_v1.PublisherClient()
    try:
        faults.publish_raw(client, pipe.settings.topic_path, event.encode(),
                           **event.attributes())
    finally:
        client.stop()


def push(url: str, event: Event) -> threading.Thread:
    """POST the event as Pub/Sub's push would, in a thread; the thread records the status."""
    body = json.dumps({"message": {"data": base64.b64encode(event.encode()).decode(),
                                   "messageId": "push-1", "attributes": event.attributes()},
                       "subscription": "projects/p/subscriptions/s"}).encode()
    statuses: list[int | str] = []

    def post() -> None:
        request = urllib.request.Request(f"{url}/push", body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
        except OSError as e:
            statuses.append(type(e).__name__)

    thread = threading.Thread(target=post, daemon=True)
    thread.statuses = statuses  # type: ignore[attr-defined]
    thread.start()
    return thread


# --- start-up --------------------------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize("program", ["worker", "serve"])
def test_sigterm_during_start_up_stops_within_10s(open_pipeline: Any, program: str) -> None:
    """SIGTERM at any moment of start-up (importing, building clients, checking Redis) with
    Redis frozen so that start-up is slow: the process is gone within 10 s."""
    pipe: Pipeline = open_pipeline()
    args = ["worker"] if program == "worker" else serve_args()[0]
    with pipe.redis.paused():
        for delay in (0.3, 1.5, 3.0):
            with command(args) as running:
                time.sleep(delay)
                running.stop()


# --- a dependency out of reach ---------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize("program", ["worker", "serve"])
def test_sigterm_while_pubsub_is_unreachable_stops_within_10s(
    open_pipeline: Any, own_pubsub: faults.OwnProcess, program: str
) -> None:
    """Pub/Sub frozen (SIGSTOP) under a running process: the pull and heal loops hang in
    their calls and retries; SIGTERM still stops the process within 10 s."""
    open_pipeline(environ={"PUBSUB_EMULATOR_HOST": own_pubsub.address})
    args = ["worker"] if program == "worker" else serve_args()[0]
    with command(args) as running:
        wait_until(lambda: running.said("pulling"), timeout=60)
        with own_pubsub.paused():
            time.sleep(3)  # the client is now inside its own retries
            running.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("program", ["worker", "serve"])
def test_a_dependency_on_a_dead_port_is_one_line_and_exit_1_at_start(
    open_pipeline: Any, program: str
) -> None:
    """Pub/Sub or Spanner on a dead port when the process starts: it doesn't start, and says
    so in one line naming the address, exit status 1, well within the stop bound."""
    open_pipeline()
    args = ["worker"] if program == "worker" else serve_args()[0]
    for variable in ("PUBSUB_EMULATOR_HOST", "SPANNER_EMULATOR_HOST"):
        address = dead_address()
        with command(args, {variable: address}) as running:
            status = running.wait_exit(30)
            lines = running.stderr().strip().splitlines()
            assert status == 1 and len(lines) == 1 and address in lines[0], lines


@pytest.mark.timeout(180)
def test_sigterm_while_spanner_is_unreachable_mid_rewarm_stops_within_10s(
    open_pipeline: Any, own_spanner: faults.OwnProcess
) -> None:
    """A rewarm whose Spanner read hangs (Spanner frozen by SIGSTOP), with a retry budget of
    minutes: SIGTERM while the worker is at it stops the worker within 10 s."""
    pipe: Pipeline = open_pipeline(environ={"SPANNER_EMULATOR_HOST": own_spanner.address})
    with command(["worker"], LONG_RETRIES) as running:
        wait_until(lambda: running.said("pulling"), timeout=60)
        with own_spanner.paused():
            publish(pipe, rewarm_event())
            time.sleep(3)  # pulled, and inside the Spanner client's call
            running.stop()


@pytest.mark.timeout(180)
def test_sigterm_mid_batch_while_redis_is_frozen_stops_within_10s_and_acks_nothing(
    open_pipeline: Any
) -> None:
    """Redis frozen while the worker holds a batch, with a retry budget of minutes: SIGTERM
    ends the retries and the worker within 10 s; the events were not acked, so once Redis
    is back a new worker applies every one and no key is stale."""
    pipe: Pipeline = open_pipeline()
    ids = pipe.accounts(5)
    pipe.fill(ids)
    pipe.start_relay()
    with command(["worker"], LONG_RETRIES) as running:
        wait_until(lambda: running.said("pulling"), timeout=60)
        with pipe.redis.paused():
            for account in ids:
                pipe.bump(account)
            wait_until(pipe.published_everything, timeout=30)
            time.sleep(3)  # pulled, and inside the core's retries
            running.stop()
    pipe.start_worker()
    pipe.check(ids)
    assert pipe.deliveries().keys() >= pipe.event_keys.keys()


@pytest.mark.timeout(180)
def test_serve_sigterm_with_a_push_in_flight_while_redis_is_frozen(open_pipeline: Any) -> None:
    """A push request waiting on a frozen Redis, with a retry budget of minutes: SIGTERM stops
    the server within 10 s, and the request is not answered 204 (Pub/Sub will redeliver)."""
    pipe: Pipeline = open_pipeline()
    args, url = serve_args()
    [account] = pipe.accounts(1)
    event = Event("5e1f0c2a-0000-4000-8000-000000000002", EventType.ROW_CHANGED, "Accounts",
                  (account,), time.time_ns())
    with command(args, LONG_RETRIES) as running:
        wait_until(lambda: healthy(url), timeout=60)
        with pipe.redis.paused():
            request = push(url, event)
            time.sleep(2)
            running.stop()
        request.join(timeout=30)
    assert request.statuses and request.statuses[0] != 204  # type: ignore[attr-defined]
