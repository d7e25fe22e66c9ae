"""``make mutation``: mutmut over the modules that decide coherence, with a redis-server of the
run's own.

mutmut names a mutant after its file's path and imports the mutated copy from ``mutants/``,
so it must see the package laid out as it installs: ``make mutation`` copies the folders into
``build/mutation/redis_spanner/`` (the mapping of pyproject.toml) with the tests beside them and
runs this module there. It starts one redis-server for every mutant's test run (the ``redis``
tests need it; no emulator is started), runs ``mutmut run``, prints the survivors and stops the
server. Exit status: 0 when no mutant survived, 1 otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from redis_spanner.infra import faults
from redis_spanner.infra.discovery import StackError


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
    results = subprocess.run([mutmut, "results"], capture_output=True, text=True, check=False)
    survivors = [line for line in results.stdout.splitlines() if line.strip()]
    print("\n".join(survivors) or "no mutant survived")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
