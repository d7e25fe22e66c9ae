"""The built package, checked as a service would meet it (``make package-check``).

The wheel and sdist are built (``python -m build``, the wheel from the sdist) and pass
``twine check``; the wheel holds one top-level package, its data and its console script. It is
installed into a fresh virtualenv (``--no-deps`` over the pinned dependencies of the project's
own virtualenv, which ``pip check`` then confirms satisfy the wheel's requirements), and used
from a directory that also holds a service's own ``schemas.py``, ``producers.py`` and
``consumers.py``: the public API imports, a commit recorded through ``record`` and
``run_transaction`` reaches Redis through a relay and a worker run from the installed package,
and ``CacheClient.from_env()`` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.schemas.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
SERVICE_MODULES = ("schemas", "producers", "consumers")


def run(*command: str | Path, cwd: Path | None = None, timeout: float = 180) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env())
    assert done.returncode == 0, \
        f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, timeout=300)
    print(f"built the sdist and the wheel in {time.monotonic() - started:.1f}s")
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    [found] = dist.glob("redis_spanner-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """A fresh virtualenv with the wheel installed; the pinned dependencies are those of the
    running interpreter's environment, reached through a path file, not installed again."""
    home = tmp_path_factory.mktemp("venv") / "fresh"
    started = time.monotonic()
    run(sys.executable, "-m", "venv", "--without-pip", home)
    [site] = (home / "lib").glob("python3*/site-packages")
    (site / "pinned-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", home / "bin" / "python", "install",
        "--no-deps", "--no-index", wheel)
    print(f"installed the wheel into a fresh virtualenv in {time.monotonic() - started:.1f}s")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def provisioned(settings: Settings) -> Iterator[Settings]:
    """This test's topics, subscriptions and database (the demo's tables: the service writes
    Accounts) on the session's stack."""
    provision(settings, ddl=[DEMO_SCHEMA_PATH])
    yield settings
    teardown(settings)


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    """A service's directory whose own modules bear the names of the repository's folders."""
    for name in SERVICE_MODULES:
        (tmp_path / f"{name}.py").write_text(
            f'"""The service\'s own {name}."""\n'
            f'raise ImportError("redis_spanner imported the service\'s own {name}.py")\n')
    shutil.copy(Path(__file__).with_name("service.py"), tmp_path / "service.py")
    return tmp_path


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    """Both distributions are well-formed and their long description renders."""
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"]
    out = run(sys.executable, "-m", "twine", "check", "--strict", *files)
    assert out.count("PASSED") == 2


def test_wheel_holds_one_package_its_data_and_its_command(wheel: Path) -> None:
    """Nothing but redis_spanner and its dist-info at the top of site-packages; the DDL, the
    declaration, the published contract, py.typed and the console script ship."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        [info] = [t for t in top if t.endswith(".dist-info")]
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert top == {"redis_spanner", info}
    for data in ("redis_spanner/py.typed", "redis_spanner/infra/spanner/schema.sql",
                 "redis_spanner/infra/spanner/demo.sql", "redis_spanner/schemas/guard.lua",
                 "redis_spanner/schemas/envelope.schema.json", "redis_spanner/schemas/CONTRACT.md",
                 "redis_spanner/infra/pipeline.json", "redis_spanner/schemas/envelope.py",
                 "redis_spanner/infra/grafana/redis-spanner.json",
                 "redis_spanner/consumers/readthrough_async.py"):
        assert data in names
    assert "redis-spanner = redis_spanner.infra.cli.app:main" in entry_points


def test_installed_wheel_serves_a_service_beside_its_own_schemas_module(
    venv: Path, service_dir: Path, provisioned: Settings,
) -> None:
    """From the service's directory: the public API imports from the installed wheel (not the
    service's own modules, not the repository); ``redis-spanner --help`` runs; a commit made
    with ``record``/``run_transaction`` reaches Redis through the installed relay and worker,
    and ``CacheClient.from_env()`` reads the committed value."""
    python, command = venv / "bin" / "python", venv / "bin" / "redis-spanner"
    run(sys.executable, "-m", "pip", "--python", python, "check")
    imported = run(python, "-c", "import redis_spanner as r; from redis_spanner import *; "
                   "print(r.__file__, CacheClient.__module__)", cwd=service_dir)
    assert imported.startswith(str(venv)), imported
    assert "Usage" in run(command, "--help", cwd=service_dir)

    loops = []
    for name in ("relay", "worker"):
        with (service_dir / f"{name}.log").open("wb") as log:
            loops.append(subprocess.Popen([str(command), name], cwd=service_dir, env=_env(),
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    try:
        seen = json.loads(run(python, "service.py", "60", cwd=service_dir, timeout=120))
    finally:
        for loop in loops:
            os.killpg(loop.pid, signal.SIGTERM)
        for loop in loops:
            try:
                loop.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(loop.pid, signal.SIGKILL)
                loop.wait(5)
    assert seen["package"].startswith(str(venv))
    assert seen["first"] == [{"Owner": "pkg", "Balance": 1}, True]
    version = f"{seen['commit_version']:020d}"
    logs = "".join((service_dir / f"{n}.log").read_text()[-2000:] for n in ("relay", "worker"))
    assert seen["entry"].get("v", "") >= version, f"the commit never reached Redis:\n{logs}"
    assert seen["after"] == {"Owner": "pkg", "Balance": 2}
