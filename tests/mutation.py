"""``make mutation``: mutmut over the modules that decide coherence, with a redis-server of the
run's own.

mutmut names a mutant after its file's path and imports the mutated copy from ``mutants/``,
so it must see the package laid out as it installs: ``make mutation`` copies the folders into
``build/mutation/redis_spanner/`` (the mapping of pyproject.toml) with the tests beside them and
runs this module there. It starts one redis-server for every mutant's test run (the ``redis``
tests need it; no emulator is started), runs ``mutmut run``, stops the server, and prints the
score. Survivors listed in tests/equivalent_mutants.txt (each with the reason it changes no
behaviour) are accepted; any other survivor fails the run (exit status 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from redis_spanner.infra.local import faults
from redis_spanner.infra.local.discovery import StackError

EQUIVALENT = Path(__file__).with_name("equivalent_mutants.txt")
DETECTED = {"killed", "timeout"}
"""A mutant whose tests fail, or hang until mutmut's timeout, is caught."""


def main() -> int:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    with tempfile.TemporaryDirectory(prefix="mutation-redis-") as state:
        server = faults.redis_server(Path(state))
        try:
            server.start()
        except StackError as e:
            server.stop()
            print(f"redis-server did not start: {e}", file=sys.stderr)
            return 2
        with server:
            env = {**os.environ, "REDIS_URL": server.address}
            run = subprocess.run([mutmut, "run"], env=env, check=False)
            if run.returncode != 0:
                return run.returncode
    results = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True,
                             text=True, check=True)
    status = dict(line.strip().rsplit(": ", 1) for line in results.stdout.splitlines()
                  if ": " in line)
    counts = Counter(status.values())
    accepted = equivalent_mutants()
    survivors = sorted(m for m, s in status.items() if s not in DETECTED)
    unexplained = [m for m in survivors if m not in accepted]
    caught = sum(counts[s] for s in DETECTED)
    print(f"mutants: {len(status)}, caught: {caught} ({counts['killed']} killed, "
          f"{counts['timeout']} timed out), survived: {len(survivors)} "
          f"({len(survivors) - len(unexplained)} listed as equivalent)")
    print(f"score: {caught / max(len(status), 1):.1%} caught, "
          f"{(caught + len(survivors) - len(unexplained)) / max(len(status), 1):.1%} "
          "caught or equivalent")
    for name in unexplained:
        print(f"survived, not known to be equivalent: {name} ({status[name]})")
    return 1 if unexplained else 0


def equivalent_mutants() -> set[str]:
    """Mutant names from tests/equivalent_mutants.txt (text after ``#`` is the reason)."""
    names = (line.split("#", 1)[0].strip() for line in EQUIVALENT.read_text().splitlines())
    return {name for name in names if name}


if __name__ == "__main__":
    sys.exit(main())
