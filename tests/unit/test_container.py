"""The container: a pinned base, one image for every role, a non-root user, and nothing local
in the build context."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis_spanner.infra.cli.app import app
from typer.main import get_command

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def ignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching: Go's filepath.Match per segment, ``**`` any depth."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out (it or a folder above it matches)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(_regex(p.strip("/")).fullmatch(prefix)
               for p in ignore_patterns() for prefix in prefixes)


def test_base_image_is_pinned_by_digest() -> None:
    """Every FROM names its image by sha256 digest, so a rebuild gets the same base."""
    froms = [args for word, args in instructions(DOCKERFILE.read_text()) if word == "FROM"]
    assert froms
    for image in froms:
        assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}( AS \w+)?", image), image


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    """The last USER comes after every RUN and is a numeric uid other than 0."""
    found = instructions(DOCKERFILE.read_text())
    users = [n for n, (word, _) in enumerate(found) if word == "USER"]
    runs = [n for n, (word, _) in enumerate(found) if word == "RUN"]
    assert users and users[-1] > max(runs)
    uid = found[users[-1]][1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_one_image_runs_relay_worker_and_serve() -> None:
    """The entry point is the CLI and the default command is one of its roles; relay, worker
    and serve are all commands of that CLI, so the image runs each of them."""
    found = dict(instructions(DOCKERFILE.read_text()))
    assert found["ENTRYPOINT"] == '["redis-spanner"]'
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"relay", "worker", "serve"} <= commands
    assert found["CMD"].strip('[]"') in commands


def test_the_build_copies_only_what_the_package_needs() -> None:
    """COPY takes only the package's folders and files, and none of them is ignored."""
    copies = [args.split()[:-1] for word, args in instructions(DOCKERFILE.read_text())
              if word == "COPY"]
    sources = [s for group in copies for s in group]
    assert set(sources) == {"pyproject.toml", "constraints.txt", "README.md", "redis_spanner",
                            "schemas", "producers", "consumers", "infra"}
    assert not [s for s in sources if ignored(s)]
    assert not [p for p in ignore_patterns() if p.startswith("!")]


@pytest.mark.parametrize("path", [
    ".git", ".git/HEAD", ".venv/bin/python", ".venv-tools/bin/checkov",
    ".redis-spanner/stack.json", "infra/.redis-spanner/x", "build/typecheck/x",
    "infra/terraform/terraform.tfstate", "infra/terraform/terraform.tfstate.backup",
    "infra/terraform/.terraform/providers/x", "infra/terraform/prod.tfvars",
    "consumers/__pycache__/push.cpython-311.pyc", "schemas/keys.pyc", ".pytest_cache/v",
    ".mypy_cache/3.11/x", ".ruff_cache/x", ".hypothesis/examples/x", ".env", "tests/x.py",
    "redis_spanner.egg-info/PKG-INFO",
])
def test_local_state_never_enters_the_image(path: str) -> None:
    """State, virtualenvs, Terraform state and variables, caches and VCS stay out."""
    assert ignored(path)


@pytest.mark.parametrize("path", ["consumers/push.py", "infra/pipeline.json",
                                  "infra/spanner/schema.sql", "infra/terraform/main.tf",
                                  "pyproject.toml"])
def test_sources_stay_in_the_context(path: str) -> None:
    """What the build needs is not ignored."""
    assert not ignored(path)
