"""The log formatter: whatever text a record carries, it renders as exactly one safe line."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.infra.cli.logs import (
    FORMAT_VARIABLE,
    MAX_CHARS,
    SPAN_FIELD,
    TRACE_FIELD,
    clean,
    formatter,
    log_format,
)
from redis_spanner.schemas.errors import ConfigError

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = st.text(alphabet=st.characters(codec="utf-8"), max_size=3000) | st.sampled_from(
    ["a\nb", "\r\n{\"severity\":\"ERROR\"}", "\x1b[31mred\x1b[0m", "\u2028x\u2029", "\x85",
     "x" * 5000])


def render(fmt: str, message: str, project: str | None = "proj", **extra: object) -> str:
    record = logging.LogRecord("redis_spanner.test", logging.INFO, __file__, 1, "got %s",
                               (message,), None)
    record.__dict__.update(extra)
    return formatter(fmt, project).format(record)


@given(HOSTILE, HOSTILE)
def test_any_text_is_one_json_line_with_control_characters_escaped_and_cut(
    text: str, key: str
) -> None:
    """A message and a field holding any text (newlines, ANSI escapes, Unicode line
    separators, 5000 characters) give one line that parses as one JSON object with
    severity, message and time; no string in it holds a control character or passes
    MAX_CHARS."""
    line = render("json", text, key=key)
    assert len(line.splitlines()) == 1
    parsed = json.loads(line)
    assert {"severity", "message", "time"} <= set(parsed)
    assert parsed["severity"] == "INFO"
    for value in (parsed["message"], parsed["key"]):
        assert len(value) <= MAX_CHARS
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"
                       for c in value)


@given(HOSTILE)
def test_console_lines_hold_no_control_character_either(text: str) -> None:
    """On a terminal too, hostile text can't start a line or send an escape sequence."""
    line = render("console", text, key=text)
    assert len(line.splitlines()) == 1
    assert "\x1b" not in line and "\r" not in line


def test_escapes_are_readable_and_long_text_ends_with_an_ellipsis() -> None:
    """What is escaped can still be read: a newline shows as \\n, ESC as \\x1b."""
    assert clean("a\nb\x1b[1m\t") == "a\\nb\\x1b[1m\\t"
    cut = clean("y" * 10_000)
    assert len(cut) == MAX_CHARS and cut.endswith("…")


def test_trace_fields_name_the_project_only_when_it_is_known() -> None:
    """With a project, the trace id becomes Cloud Logging's trace resource name and the span
    its spanId; without one, the ids stay as plain fields."""
    line = json.loads(render("json", "x", trace_id=TRACE_ID, span_id="00f067aa0ba902b7"))
    assert line[TRACE_FIELD] == f"projects/proj/traces/{TRACE_ID}"
    assert line[SPAN_FIELD] == "00f067aa0ba902b7"
    plain = json.loads(render("json", "x", project=None, trace_id=TRACE_ID))
    assert TRACE_FIELD not in plain and plain["trace_id"] == TRACE_ID


def test_the_format_setting_is_json_or_console_and_a_bad_one_is_named() -> None:
    """REDIS_SPANNER_LOG_FORMAT picks the format; anything else is a configuration error that
    names the variable and does not echo its value."""
    assert log_format({FORMAT_VARIABLE: "JSON"}) == "json"
    assert log_format({FORMAT_VARIABLE: "console"}) == "console"
    with pytest.raises(ConfigError, match=FORMAT_VARIABLE) as refused:
        log_format({FORMAT_VARIABLE: "xml\x1b"})
    assert "xml" not in str(refused.value)


def test_without_a_setting_a_file_or_pipe_gets_json(capsys: pytest.CaptureFixture[str]) -> None:
    """stderr that is not a terminal (Cloud Run, a pipe, a file) gets JSON lines."""
    assert log_format({}) == "json"


def test_setup_installs_one_handler_and_keeps_the_others() -> None:
    """Setting up twice leaves one handler of ours (no line printed twice), and a handler
    someone else installed (a test runner's, an embedding service's) stays."""
    from redis_spanner.infra.cli.logs import setup

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    try:
        setup(logging.INFO, {FORMAT_VARIABLE: "json"})
        setup(logging.DEBUG, {FORMAT_VARIABLE: "json"})
        ours = [h for h in root.handlers if h not in before and h is not foreign]
        assert len(ours) == 1 and foreign in root.handlers
        assert root.level == logging.DEBUG
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
