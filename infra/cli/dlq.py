"""``redis-spanner dlq``: list, show, replay and purge the dead letters the hold subscription
keeps. Names come from the settings; the same commands serve the emulator and Pub/Sub."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from redis_spanner.infra.cli.errors import fail, reported
from redis_spanner.infra.cli.tables import print_table
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # the Pub/Sub client is slow to import: commands import what they use
    from redis_spanner.consumers.dead_letter_replay import ReplayReport
    from redis_spanner.consumers.dead_letters import DeadLetter, Filter
    from redis_spanner.consumers.redaction import Sensitive

dlq_app = typer.Typer(
    help="Inspect, replay and purge dead letters (the dead-letter hold subscription).",
    no_args_is_help=True,
)

Reasons = Annotated[list[str] | None, typer.Option(
    "--reason", help="Only dead letters with this reason (repeatable).")]
Types = Annotated[list[str] | None, typer.Option(
    "--type", help="Only events of this type, e.g. row.changed (repeatable).")]
Ids = Annotated[list[str] | None, typer.Option(
    "--id", help="Only this dead-letter message id or event id (repeatable).")]
Limit = Annotated[int | None, typer.Option(help="Act on at most this many.", min=1)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON as the last line.")]
ERROR_WIDTH = 48


@dataclass(frozen=True)
class _Options:
    timeout: float
    wait: float


@dlq_app.callback()
def _options(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(
        help="Give up on Pub/Sub after this many seconds of failing calls.",
        min=0.5)] = 10.0,
    wait: Annotated[float, typer.Option(
        help="Seconds a pull waits for more dead letters before a pass ends.", min=0.1)] = 2.0,
) -> None:
    ctx.obj = _Options(timeout, wait)


@contextmanager
def _hold(ctx: typer.Context) -> Iterator[Any]:
    from redis_spanner.consumers.pubsub import HoldSubscription
    from redis_spanner.infra.cli.reachability import PUBSUB, require_reachable
    from redis_spanner.schemas.settings import get_settings

    options: _Options = ctx.obj
    settings = get_settings()
    require_reachable(settings, PUBSUB, timeout=options.timeout)
    hold = HoldSubscription(settings.dead_letter_subscription_path,
                            deadline=options.timeout, wait=options.wait)
    try:
        yield hold
    finally:
        hold.close()


@contextmanager
def _audited(name: str, reasons: Sequence[str] | None, types: Sequence[str] | None,
             ids: Sequence[str] | None, **details: Any) -> Iterator[Any]:
    """The action's audit record, with the filters it was given."""
    from redis_spanner.infra.cli.audit_trail import audited
    from redis_spanner.schemas.settings import get_settings

    with audited(name, get_settings(), reasons=list(reasons or ()), types=list(types or ()),
                 ids=list(ids or ()), **details) as action:
        yield action


def _acted_on(report: ReplayReport) -> dict[str, list[str]]:
    """Event ids (else message ids) by verdict, skipped ones left out."""
    acted: dict[str, list[str]] = {}
    for decision in report.decisions:
        if decision.verdict != "skipped":
            acted.setdefault(decision.verdict, []).append(decision.event_id or
                                                          decision.message_id)
    return acted


def _filter(reasons: Sequence[str] | None = None, types: Sequence[str] | None = None,
            ids: Sequence[str] | None = None) -> Filter:
    from redis_spanner.consumers.dead_letters import Filter

    return Filter(frozenset(reasons or ()), frozenset(types or ()), frozenset(ids or ()))


@dlq_app.command("list")
def list_(
    ctx: typer.Context,
    reason: Reasons = None,
    event_type: Types = None,
    limit: Annotated[int, typer.Option(help="List at most this many.", min=1)] = 100,
    as_json: Json = False,
) -> None:
    """Show the dead letters in a table; every one stays in place."""
    from redis_spanner.consumers.dead_letter_scan import collect

    with reported(), _hold(ctx) as hold:
        letters = collect(hold, _filter(reason, event_type), limit)
        path = hold.path
    now = time.time()
    console = Console(stderr=as_json)
    if letters:
        print_table(console, COLUMNS, [_row(letter, now) for letter in letters],
                    shrink="error", shrink_to=ERROR_WIDTH)
        more = "; the limit was reached, there may be more" if len(letters) >= limit else ""
        summary = f"{len(letters)} dead letter(s) in {path}, all left in place{more}"
    else:
        summary = f"no dead letter in {path}" + (
            f" matches {_described(reason, event_type)}" if reason or event_type else "")
    console.print(summary, markup=False, highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps([letter.as_dict(now) for letter in letters]))


@dlq_app.command()
def show(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(metavar="ID",
                                         help="Dead-letter message id or event id.")],
    as_json: Json = False,
) -> None:
    """Everything about one dead letter: attributes, data, decode error. Exit 1 if not found."""
    from redis_spanner.consumers.dead_letter_scan import collect

    with reported(), _hold(ctx) as hold:
        letters = collect(hold, _filter(ids=[ident]))
        path = hold.path
    if not letters:
        typer.echo(f"no dead letter with message id or event id {ident!r} in {path}", err=True)
        raise typer.Exit(1)
    from redis_spanner.schemas.settings import get_settings, require_catalog

    sensitive = require_catalog(get_settings()).sensitive_columns
    now = time.time()
    for n, letter in enumerate(letters, 1):
        typer.echo(_details(letter, now, f"{n} of {len(letters)}", sensitive), err=as_json)
    if as_json:
        typer.echo(json.dumps([_full(letter, now, sensitive) for letter in letters]))


@dlq_app.command()
def replay(
    ctx: typer.Context,
    reason: Reasons = None,
    event_type: Types = None,
    ids: Ids = None,
    limit: Limit = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would happen; change nothing.")] = False,
    rate: Annotated[float | None, typer.Option(
        help="At most this many republishes per second.", min=0.01)] = None,
    drop_superseded: Annotated[bool, typer.Option(
        "--drop-superseded",
        help="Ack dead letters Redis already holds a newer version of, unpublished.")] = False,
    as_json: Json = False,
) -> None:
    """Republish dead letters to the events topic; each is acked once its republish is
    confirmed. Superseded events (Redis holds every key at their version or newer) are
    reported and left in place unless --drop-superseded. Undecodable events are replayed only
    when named by --id or --reason."""
    from redis_spanner.consumers.dead_letter_replay import ReplayOptions
    from redis_spanner.consumers.dead_letter_replay import replay as run
    from redis_spanner.consumers.pubsub import EventsTopic
    from redis_spanner.consumers.redis_cache import RedisCache
    from redis_spanner.infra.cli.reachability import REDIS, require_reachable
    from redis_spanner.schemas.errors import ConfigError
    from redis_spanner.schemas.settings import get_settings, require_catalog

    options: _Options = ctx.obj
    replay_options = ReplayOptions(_filter(reason, event_type, ids), limit, dry_run,
                                   drop_superseded, rate)
    console = Console(stderr=True)
    with reported(), _audited("dlq replay", reason, event_type, ids, limit=limit,
                              dry_run=dry_run, drop_superseded=drop_superseded) as action, \
            _hold(ctx) as hold, ExitStack() as stack:
        settings = get_settings()
        catalog = require_catalog(settings)
        require_reachable(settings, REDIS, timeout=options.timeout)
        try:
            cache = RedisCache.from_settings(settings)  # ConfigError: reported as it is
        except ValueError as e:
            raise ConfigError(f"REDIS_URL is not usable: {e}") from None
        stack.callback(cache.client.close)
        topic = EventsTopic(settings.topic_path, deadline=options.timeout)
        stack.callback(topic.close)
        with _progress(console, limit) as advance:
            report = run(hold, topic, cache, catalog, replay_options, progress=advance)
        path = hold.path
        action.note(**report.as_dict(), event_ids=_acted_on(report))
        action.failed(report.error)
    out = Console(stderr=as_json)
    for decision in report.decisions:
        line = f"{_VERBS[report.dry_run][decision.verdict]:<22} {decision.message_id:<12} " \
               f"event {decision.event_id or '-'}"
        out.print(line + (f"  ({decision.detail})" if decision.detail else ""),
                  markup=False, highlight=False, soft_wrap=True)
    out.print(_summary(report, path), markup=False, highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    if report.failure:
        fail(report.failure)


@dlq_app.command()
def purge(
    ctx: typer.Context,
    reason: Reasons = None,
    event_type: Types = None,
    ids: Ids = None,
    limit: Limit = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete them.")] = False,
    as_json: Json = False,
) -> None:
    """Ack (delete for good) the matching dead letters. Refuses without --yes."""
    from redis_spanner.consumers.dead_letter_scan import purge as run

    if not yes:
        typer.echo("refusing to delete dead letters without --yes; 'redis-spanner dlq list' "
                   "with the same filters shows what would go", err=True)
        raise typer.Exit(2)
    with reported(), _audited("dlq purge", reason, event_type, ids, limit=limit) as action, \
            _hold(ctx) as hold:
        report = run(hold, _filter(reason, event_type, ids), limit)
        path = hold.path
        action.note(purged=report.purged, kept=report.kept)
        action.failed(report.error)
    typer.echo(f"purged {report.purged} dead letter(s) from {path}; {report.kept} left in place",
               err=as_json)
    if as_json:
        typer.echo(json.dumps({"purged": report.purged, "kept": report.kept,
                               "error": report.error}))
    if report.failure:
        fail(report.failure)


# --- rendering ---------------------------------------------------------------------------

# By verdict (redis_spanner.consumers.dead_letter_replay.Verdict), for a run and for a dry run.
_VERBS: dict[bool, dict[str, str]] = {
    False: {"replayed": "replayed", "superseded-dropped": "superseded, dropped",
            "superseded-kept": "superseded, kept", "held-back": "held back", "failed": "failed"},
    True: {"replayed": "would replay", "superseded-dropped": "would drop (superseded)",
           "superseded-kept": "superseded, would keep", "held-back": "would hold back",
           "failed": "failed"},
}


def _summary(report: ReplayReport, path: str) -> str:
    c = report.as_dict()
    dropped, kept = c["superseded_dropped"], c["superseded_kept"]
    came_back = f" ({report.came_back} came back during this replay)" if report.came_back else ""
    text = ", ".join([
        f"{_VERBS[report.dry_run]['replayed']} {c['replayed']}",
        f"superseded {dropped + kept} (dropped {dropped}, kept {kept})",
        f"skipped {c['skipped']}{came_back}",
        f"held back {c['held_back']}",
        f"failed {c['failed']}",
    ]) + f" ({path})"
    if report.poison_replayed:
        text += (f"\n{report.poison_replayed} of them do not decode or route: they "
                 f"{'would' if report.dry_run else 'will'} come back to the dead-letter topic "
                 "as before")
    if report.dry_run:
        text = "dry run, nothing changed: " + text
    return text


@contextmanager
def _progress(console: Console, total: int | None) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr, on a terminal only."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("dead letters", total=total)
        acted = 0

        def advance(verdict: str) -> None:
            nonlocal acted
            if verdict != "skipped":
                acted += 1
            bar.update(task, completed=acted, description=f"dead letters ({verdict})")

        yield advance


COLUMNS = ("message id", "event id", "type", "table", "key", "reason", "error", "attempts",
           "first failure (UTC)", "age")


def _described(reasons: Sequence[str] | None, types: Sequence[str] | None) -> str:
    parts = [f"--reason {r}" for r in reasons or ()] + [f"--type {t}" for t in types or ()]
    return " ".join(parts)


def _row(letter: DeadLetter, now: float) -> list[str]:
    """One line per dead letter: attribute values come from anyone who can publish."""
    return [_cell(text) for text in (
        letter.message_id, letter.event_id or "-", letter.event_type or "-",
        letter.table or "-", _key(letter.key), letter.reason, letter.error,
        str(letter.attempts or "-"), _when(letter.first_failure_time), _age(letter.age(now)))]


def _cell(text: str) -> str:
    """A table cell on one line, printable, at most 200 characters."""
    flat = " ".join(text.split())
    flat = flat if flat.isprintable() else repr(flat)[1:-1]
    return flat if len(flat) <= 200 else flat[:199] + "…"


def _when(timestamp: str | None) -> str:
    """An RFC 3339 attribute as a short UTC time; as it is when it doesn't parse."""
    if not timestamp:
        return "-"
    try:
        parsed = dt.datetime.fromisoformat(timestamp)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return timestamp
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def _key(key: list[Any] | None) -> str:
    if key is None:
        return "-"
    return ", ".join(str(part) for part in key) if key else "[]"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                              ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}{int(seconds % size // smaller_size)}{smaller}"
    return f"{int(seconds)}s"


def _full(letter: DeadLetter, now: float,
          sensitive: Sensitive | None = None) -> dict[str, Any]:
    from redis_spanner.consumers.dead_letters import render_data
    from redis_spanner.consumers.redaction import redacted

    kind, text = render_data(redacted(letter.data, sensitive))
    return {**letter.as_dict(now), "attributes": dict(letter.attributes),
            "data": {"format": kind, "bytes": len(letter.data), "text": text}}


def _details(letter: DeadLetter, now: float, position: str,
             sensitive: Sensitive | None = None) -> str:
    """Sensitive payload columns (by the catalog's key templates) are shown redacted."""
    from redis_spanner.consumers.dead_letters import render_data
    from redis_spanner.consumers.redaction import redacted

    kind, text = render_data(redacted(letter.data, sensitive))
    told = "forwarded by Pub/Sub" if letter.forwarded else "told by the consumer"
    lines = [
        f"dead letter {_safe(letter.message_id)} ({position})",
        f"  reason            {_safe(letter.reason)} ({told})",
        f"  event             {_safe(letter.event_id or '-')} {_safe(letter.event_type or '')}",
        f"  dead-lettered at  {letter.as_dict(now)['dead_lettered_at'] or '-'} "
        f"({_age(letter.age(now))} ago)",
        "attributes:",
        *(f"  {_safe(k):<30} {_safe(v)}" for k, v in sorted(letter.attributes.items())),
        f"data ({kind}, {len(letter.data)} bytes):",
        *(f"  {line}" for line in text.splitlines()),
    ]
    if letter.problem is not None:
        lines.append(f"decode error: {type(letter.problem).__name__}: "
                     f"{_safe(str(letter.problem))}")
    return "\n".join(lines)


def _safe(text: str) -> str:
    """Attribute values come from anyone who can publish: never let them drive the terminal."""
    return text if text.isprintable() else repr(text)
