"""Building redis-py clients from the settings: what each setting turns into, the settings
that can't work together, and credentials read from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis.exceptions import AuthenticationError
from redis_spanner.infra.cli.app import main
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.schemas.errors import ConfigError
from redis_spanner.schemas.redis_connection import PasswordFile, client_options
from redis_spanner.schemas.settings import Settings, get_settings, redacted_url

from tests.secret_files import SECRET


def _settings(url: str, **fields: Any) -> Settings:
    return Settings(REDIS_URL=url, **fields)




def test_tls_and_credential_settings_become_client_options(files: dict[str, Path]) -> None:
    """CA, client certificate and key go to redis-py's TLS options; the password file becomes
    a credential provider carrying the ACL username."""
    options = client_options(_settings(
        "rediss://10.0.0.3:6378/0", redis_ca_file=files["ca"], redis_cert_file=files["cert"],
        redis_key_file=files["key"], redis_username="worker",
        redis_password_file=files["password"]), "rediss://10.0.0.3:6378/0")
    assert (options["ssl_ca_certs"], options["ssl_certfile"], options["ssl_keyfile"]) == (
        str(files["ca"]), str(files["cert"]), str(files["key"]))
    provider = options["credential_provider"]
    assert isinstance(provider, PasswordFile)
    assert provider.get_credentials() == ("worker", SECRET)
    assert "username" not in options and "password" not in options


@pytest.mark.parametrize(("url", "fields", "names"), [
    ("redis://h:1/0", {"redis_ca_file": "ca"}, "REDIS_SPANNER_REDIS_CA_FILE"),
    ("redis://h:1/0", {"redis_cert_file": "cert", "redis_key_file": "key"},
     "REDIS_SPANNER_REDIS_CERT_FILE"),
    ("rediss://h:1/0", {"redis_cert_file": "cert"}, "REDIS_SPANNER_REDIS_KEY_FILE"),
    ("rediss://h:1/0", {"redis_key_file": "key"}, "REDIS_SPANNER_REDIS_CERT_FILE"),
    ("rediss://h:1/0", {"redis_ca_file": "missing"}, "REDIS_SPANNER_REDIS_CA_FILE"),
    ("rediss://h:1/0", {"redis_password_file": "missing"}, "REDIS_SPANNER_REDIS_PASSWORD_FILE"),
    (f"redis://:{SECRET}@h:1/0", {"redis_password_file": "password"},
     "REDIS_SPANNER_REDIS_PASSWORD_FILE"),
    (f"redis://user:{SECRET}@h:1/0", {"redis_username": "worker"},
     "REDIS_SPANNER_REDIS_USERNAME"),
    (f"http://:{SECRET}@h:1/0", {}, "REDIS_URL"),
    (f"redis://:{SECRET}@h:notaport/0", {}, "REDIS_URL"),
    (f"redis:///{SECRET}", {}, "REDIS_URL"),
])
def test_settings_that_cannot_work_are_refused_naming_the_setting(
    files: dict[str, Path], tmp_path: Path, url: str, fields: dict[str, str], names: str,
) -> None:
    """Each combination that can't work is refused (by the settings themselves, or as a
    ConfigError when the client is built) naming the setting at fault, and the message never
    carries the password."""
    paths = {k: files.get(v, tmp_path / v) for k, v in fields.items()
             if k != "redis_username"}
    with pytest.raises((ConfigError, ValidationError)) as refused:
        client_options(_settings(url, **{**fields, **paths}), url)
    assert names in str(refused.value)
    assert SECRET not in str(refused.value)


def test_username_without_a_file_goes_with_the_url_password() -> None:
    """An ACL username alone is passed to redis-py beside the URL's password."""
    url = f"rediss://:{SECRET}@h:1/0"
    assert client_options(_settings(url, redis_username="worker"), url)["username"] == "worker"


def test_password_file_is_read_afresh_for_each_connection(files: dict[str, Path]) -> None:
    """A switched file is used by the next connection; a missing or empty file fails as an
    authentication error that names the setting and path, never the old password; the
    provider's repr names only the path and username."""
    provider = PasswordFile(files["password"], "worker")
    assert provider.get_credentials() == ("worker", SECRET)
    files["password"].write_text("rotated\n")
    assert provider.get_credentials() == ("worker", "rotated")
    assert PasswordFile(files["password"]).get_credentials() == ("rotated",)
    files["password"].write_text("\n")
    with pytest.raises(AuthenticationError, match="is empty"):
        provider.get_credentials()
    files["password"].unlink()
    with pytest.raises(AuthenticationError, match="REDIS_SPANNER_REDIS_PASSWORD_FILE") as e:
        provider.get_credentials()
    assert "rotated" not in str(e.value) and SECRET not in repr(provider)


@pytest.mark.parametrize(("command", "variable", "status"), [
    (["verify"], "REDIS_SPANNER_REDIS_CA_FILE", 2),
    (["rewarm", "--table", "Accounts"], "REDIS_SPANNER_REDIS_PASSWORD_FILE", 2),
    (["worker"], "REDIS_SPANNER_REDIS_CERT_FILE", 2),
    (["verify"], "REDIS_URL", 2),
    (["serve"], "REDIS_SPANNER_REDIS_CLUSTER", 1),
])
def test_consumer_commands_refuse_unusable_redis_settings_in_one_line(
    command: list[str], variable: str, status: int, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The consumer's commands, given a Redis setting that can't work (a missing file: exit 2,
    naming the setting) or a cluster nobody answers for (exit 1, naming REDIS_URL's address),
    print one line without a traceback, before reaching any other service."""
    (port,) = free_ports(1)
    monkeypatch.setenv("REDIS_URL", f"rediss://127.0.0.1:{port}/0")
    monkeypatch.setenv("REDIS_SPANNER_REDIS_TIMEOUT_SECONDS", "0.5")
    # serve checks its push authentication settings first: make those valid.
    monkeypatch.setenv("REDIS_SPANNER_PUSH_AUDIENCE", "https://push.example/push")
    monkeypatch.setenv("REDIS_SPANNER_PUSH_SERVICE_ACCOUNT", "push@p.iam.gserviceaccount.com")
    if variable == "REDIS_URL":
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, "true" if variable.endswith("CLUSTER") else
                           str(tmp_path / "missing"))
    monkeypatch.setattr("sys.argv", ["redis-spanner", *command])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert exited.value.code == status, out
    lines = out.err.strip().splitlines()
    named = "REDIS_URL" if variable.endswith("CLUSTER") else variable
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in out.err, out.err


def test_settings_mask_the_url_password_and_hold_no_file_content(
    files: dict[str, Path],
) -> None:
    """The settings' repr, str and dump show neither a password inside REDIS_URL nor the
    password file's content (only its path); the redacted URL keeps host and port."""
    url = f"rediss://worker:{SECRET}@10.1.2.3:6378/0"
    settings = _settings(url, redis_password_file=files["password"])
    shown = "\n".join([repr(settings), str(settings), str(settings.model_dump())])
    assert SECRET not in shown and str(files["password"]) in shown
    assert redacted_url(url) == "rediss://worker:***@10.1.2.3:6378/0"
