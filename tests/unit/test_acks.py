"""The ack sender: every id handed over is sent exactly once, several loops' acks go out
together, a lone ack does not wait for company, a full backlog holds the loops back, and no
failure stops it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from redis_spanner.consumers.acks import AckSender
from redis_spanner.schemas.errors import TransientError


class Recorder:
    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.sent = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, ids: Sequence[str]) -> None:
        with self.lock:
            self.requests.append(list(ids))
        self.sent.set()

    @property
    def ids(self) -> list[str]:
        return [i for r in self.requests for i in r]


def test_every_id_from_every_thread_is_sent_exactly_once() -> None:
    record = Recorder()
    sender = AckSender(record, delay=0.01).start()

    def loop(n: int) -> None:
        for batch in range(50):
            sender.add([f"{n}-{batch}-{i}" for i in range(10)])

    loops = [threading.Thread(target=loop, args=(n,)) for n in range(4)]
    for t in loops:
        t.start()
    for t in loops:
        t.join()
    sender.close(5.0)
    assert sorted(record.ids) == sorted(f"{n}-{b}-{i}" for n in range(4) for b in range(50)
                                        for i in range(10))


def test_acks_waiting_together_go_in_one_request() -> None:
    record = Recorder()
    sender = AckSender(record, delay=30.0).start()  # only a full request or close sends
    for n in range(5):
        sender.add([f"{n}-{i}" for i in range(100)])
    sender.close(5.0)
    assert [len(r) for r in record.requests] == [500]


def test_a_lone_ack_goes_out_without_waiting_for_others() -> None:
    record = Recorder()
    sender = AckSender(record, delay=0.01).start()
    sender.add(["only"])
    assert record.sent.wait(5.0), "a lone ack was held back"
    sender.close(5.0)
    assert record.ids == ["only"]


def test_a_full_backlog_holds_the_loop_until_the_sender_catches_up() -> None:
    release = threading.Event()
    record = Recorder()

    def slow(ids: Sequence[str]) -> None:
        release.wait(10.0)
        record(ids)

    sender = AckSender(slow, delay=0.0, backlog=10).start()
    sender.add([f"a{i}" for i in range(10)])   # taken by the sender, which then blocks
    done = threading.Event()

    def loop() -> None:
        for n in range(3):
            sender.add([f"b{n}-{i}" for i in range(10)])
        done.set()

    threading.Thread(target=loop, daemon=True).start()
    assert not done.wait(0.5), "the loop went on past a full backlog"
    release.set()
    assert done.wait(5.0)
    sender.close(5.0)
    assert len(record.ids) == 40 and len(set(record.ids)) == 40


def test_a_failed_send_is_dropped_and_later_acks_still_go() -> None:
    record = Recorder()
    attempted = threading.Semaphore(0)
    failures = iter([TransientError("pubsub down"), RuntimeError("a bug")])

    def flaky(ids: Sequence[str]) -> None:
        try:
            error = next(failures, None)
            if error is not None:
                raise error
            record(ids)
        finally:
            attempted.release()

    sender = AckSender(flaky, delay=0.0).start()
    for name in ("lost-1", "lost-2", "kept"):
        sender.add([name])
        assert attempted.acquire(timeout=5.0), f"{name} was never sent"
    sender.close(5.0)
    assert record.ids == ["kept"]


def test_after_close_an_ack_is_sent_by_the_caller() -> None:
    record = Recorder()
    sender = AckSender(record, delay=30.0).start()
    sender.close(5.0)
    sender.add(["late"])
    assert record.ids == ["late"]
