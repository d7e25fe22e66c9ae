"""The command line as a user meets it, in process: through the entry point's error boundary
(``redis_spanner.infra.cli.app.main``), so failures are one line on stderr and an exit status."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result
from redis_spanner.infra.cli import errors as cli_errors
from redis_spanner.infra.cli.app import app


class _EntryPoint:
    """What ``CliRunner.invoke`` calls: ``main(args=...)``, as the console script does."""

    name = "redis-spanner"

    def main(self, args: list[str], prog_name: str | None = None, **_: Any) -> None:
        cli_errors.run(app, list(args))


def invoke(*args: str) -> Result:
    """``redis-spanner ARGS...``; stdout and stderr kept apart."""
    return CliRunner().invoke(_EntryPoint(), list(args))  # type: ignore[arg-type]
