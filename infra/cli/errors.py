"""Errors at the edge: every command's failure becomes one line on stderr and an exit status.

Everything below the command line raises typed errors and never prints. Here, once, they
become ``error: <cause>`` naming the setting or address involved, with exit status 2 for bad
usage or configuration (the same command can't succeed until someone changes it) and 1 for a
failure: an unreachable dependency, a failed call, or problems found. No traceback is shown
unless ``REDIS_SPANNER_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from typer._click import exceptions as usage  # typer's own click: its usage errors

USAGE, FAILURE = 2, 1
DEBUG_VARIABLE = "REDIS_SPANNER_DEBUG"
MAX_LINE = 1200
CREDENTIALS_HINT = (
    "no Google credentials found (PUBSUB_EMULATOR_HOST and SPANNER_EMULATOR_HOST are unset, so "
    "GCP is used): run 'gcloud auth application-default login', set "
    "GOOGLE_APPLICATION_CREDENTIALS, or export the emulator hosts"
)


def one_line(text: str) -> str:
    """A message as a single line: several problems joined by "; ", a log excerpt replaced by
    where to read it."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()] or ["(no message)"]
    kept: list[str] = []
    for line in lines:
        if line.startswith("last lines of ") and line.endswith(":"):
            kept[-1:] = [f"{kept[-1] if kept else ''} (see "
                         f"{line.removeprefix('last lines of ').removesuffix(':')})"]
            break
        kept.append(line)
    joined = "; ".join(kept)
    return joined if len(joined) <= MAX_LINE else joined[:MAX_LINE - 1] + "…"


def classify(error: BaseException) -> tuple[int, str] | None:
    """(exit status, message) for an error the command line knows; None for anything else."""
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
    from pydantic import ValidationError
    from redis.exceptions import AuthenticationError, RedisError
    from redis_spanner.infra.local.discovery import StackError
    from redis_spanner.schemas.errors import ConfigError, PermanentError, RedisSpannerError
    from redis_spanner.schemas.settings import explain, redacted_url

    if isinstance(error, ConfigError | PermanentError):
        return USAGE, str(error)
    if isinstance(error, RedisSpannerError):
        return FAILURE, str(error)
    if isinstance(error, ValidationError):
        return USAGE, explain(error)
    if isinstance(error, DefaultCredentialsError):
        return USAGE, CREDENTIALS_HINT
    if isinstance(error, GoogleAuthError):
        return USAGE, f"Google credentials refused: {error}"
    if isinstance(error, StackError):
        return USAGE, str(error)
    if isinstance(error, RedisError):
        where = redacted_url(os.environ.get("REDIS_URL", "")) or "REDIS_URL"
        status = USAGE if isinstance(error, AuthenticationError) else FAILURE
        return status, f"redis at {where}: {type(error).__name__}: {error}"
    if isinstance(error, gexc.RetryError):
        return FAILURE, f"gave up retrying a Google Cloud call: {error.cause}"
    if isinstance(error, gexc.NotFound):
        return USAGE, f"{error.message} (check the names in the settings, or run " \
                      "'redis-spanner provision')"
    if isinstance(error, gexc.PermissionDenied | gexc.Unauthenticated):
        return USAGE, f"Google Cloud refused the call: {error.code} {error.message}"
    if isinstance(error, gexc.GoogleAPICallError):
        return FAILURE, f"Google Cloud call failed: {error.code} {error.message}"
    if isinstance(error, OSError):
        return FAILURE, f"{type(error).__name__}: {error}"
    return None


@contextmanager
def reported() -> Iterator[None]:
    """Turn a failure inside into one line on stderr and ``typer.Exit`` with its status."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # stdout closed early (| head): typer stops quietly
        raise
    except Exception as e:
        if os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        fail(e)


def fail(error: BaseException) -> NoReturn:
    """Print ``error`` as one line on stderr and exit with its status."""
    status, message = classify(error) or (
        FAILURE, f"unexpected {type(error).__name__}: {error} (set {DEBUG_VARIABLE}=1 for details)")
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(status) from None


def run(app: typer.Typer, args: list[str] | None = None) -> None:
    """Run the command line (``args``, else ``sys.argv``): usage errors are one line too, and
    every failure is reported."""
    try:
        with reported():
            status = app(args=args, standalone_mode=False)
    except usage.NoArgsIsHelpError as e:
        typer.echo(e.format_message(), err=True)
        status = USAGE
    except usage.UsageError as e:
        where = f"{e.ctx.command_path}: " if e.ctx else ""
        typer.echo(f"error: {where}{one_line(e.format_message())} (see --help)", err=True)
        status = e.exit_code
    except usage.ClickException as e:
        typer.echo(f"error: {one_line(e.format_message())}", err=True)
        status = e.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        status = FAILURE
    except typer.Exit as e:
        status = e.exit_code
    sys.exit(status if isinstance(status, int) else 0)
