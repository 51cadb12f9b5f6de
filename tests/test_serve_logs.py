"""Secrets stay out of the gateway's logs, in every worker process; JSON logs are one object per
line (falbind/serve/logs.py, and ``falbind serve`` wiring it into uvicorn)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.logging import AccessFormatter

from falbind.serve.logs import JsonFormatter, RedactSecrets, log_config, redact_url
from falbind.testing import FakeFalServer

from serve_support import (
    ENVIRON,
    MASTER_KEY,
    GatewayProcess,
    config_data,
    database_rows,
    free_port,
    wait_until,
    write_config,
)

R = "<redacted>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/key/info?key=abc123", f"/key/info?key={R}"),
        ("/key/info?%6Bey=abc123&x=1", f"/key/info?%6Bey={R}&x=1"),
        ("/key/info?%6b%65%79=abc123", f"/key/info?%6b%65%79={R}"),
        ("/x?KEY=abc", f"/x?KEY={R}"),
        ("/x?a=1&api_key=s1&api-key=s2&apikey=s3", f"/x?a=1&api_key={R}&api-key={R}&apikey={R}"),
        ("/x?access_token=t&token=t&Master_Key=m", f"/x?access_token={R}&token={R}&Master_Key={R}"),
        (
            "/x?password=p&secret=s&authorization=Bearer+x",
            f"/x?password={R}&secret={R}&authorization={R}",
        ),
        ("/x?fal_key=f&refresh_token=r&idtoken=i", f"/x?fal_key={R}&refresh_token={R}&idtoken={R}"),
        ("/x?api%5Fkey=s", f"/x?api%5Fkey={R}"),
        ("key=abc&model=m", f"key={R}&model=m"),
        ('"GET /spend/logs?key=abc HTTP/1.1" 200', f'"GET /spend/logs?key={R} HTTP/1.1" 200'),
        ("/x?key=abc#frag", f"/x?key={R}#frag"),
        ("a message with sk-fb-Abc_123-xyz inside", f"a message with {R} inside"),
        ("Bearer sk-1234", f"Bearer {R}"),
        ("/x?note=sk-abcdefgh", f"/x?note={R}"),
        ("/x?note=%73%6B%2Dabcdefgh", f"/x?note={R}"),
        ("/x?note=%73%6b-abc%2Ddefgh&y=2", f"/x?note={R}&y=2"),
        ("/p%2Fsk-abcdefgh", f"/p%2F{R}"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/v1/models?limit=5&model=flux&keyboard=1&monkey=2&keys=3",
        "/spend/logs?since=2026-01-01",
        "scikit-learn and task-queue",
        "/x?key=",
        "no query at all",
    ],
)
def test_redact_url_leaves_other_text_alone(text: str) -> None:
    assert redact_url(text) == text


def access_record(path: str) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 200),
        None,
    )


def test_redact_secrets_keeps_uvicorn_access_arguments_in_place() -> None:
    record = access_record("/key/info?%6Bey=sk-fb-secretvalue")
    assert RedactSecrets().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert line == f'127.0.0.1:5000 - "GET /key/info?%6Bey={R} HTTP/1.1" 200 OK'


def test_redact_secrets_flattens_an_object_argument_that_renders_a_secret() -> None:
    url = httpx.URL("https://example.invalid/v1?api_key=hunter2")
    record = logging.LogRecord("falbind", logging.INFO, __file__, 1, "calling %s", (url,), None)
    RedactSecrets().filter(record)
    assert record.getMessage() == f"calling https://example.invalid/v1?api_key={R}"


def test_redact_secrets_covers_tracebacks_and_mapping_arguments() -> None:
    try:
        raise ValueError("refused sk-fb-in-an-exception")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "falbind", logging.ERROR, __file__, 1, "%(url)s", ({"url": "/x?token=abc"},), exc_info
    )
    RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert "sk-fb-in-an-exception" not in text and "token=abc" not in text
    assert f"/x?token={R}" in text and f"refused {R}" in text


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord(
        "falbind.serve", logging.WARNING, __file__, 1, "two\nlines %s", ("here",), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines here"
    assert entry["level"] == "WARNING" and entry["logger"] == "falbind.serve"
    assert entry["time"].endswith("+00:00")
    access = json.loads(JsonFormatter().format(access_record("/v1/models")))
    assert access["path"] == "/v1/models" and access["status"] == 200
    assert access["method"] == "GET" and access["client"] == "127.0.0.1:5000"


@pytest.mark.parametrize("json_logs", [True, False])
def test_log_config_is_plain_data_with_the_filter_everywhere(json_logs: bool) -> None:
    config = log_config(json_logs=json_logs, level="debug")
    assert json.loads(json.dumps(config)) == config  # plain data: it reaches every worker
    for name in ("uvicorn.access", "uvicorn.error", "falbind"):
        assert config["loggers"][name]["filters"] == ["redact"]
        assert config["loggers"][name]["level"] == "DEBUG"
    assert all(handler["filters"] == ["redact"] for handler in config["handlers"].values())


CHILD_LOGGING = textwrap.dedent(
    """
    import logging, logging.config, sys
    from falbind.serve.logs import log_config
    logging.config.dictConfig(log_config(json_logs=sys.argv[1] == "json"))
    logging.getLogger("falbind.serve.sub").info("child logger got ?key=plain-secret-1")
    logging.getLogger("falbind").warning("parent logger got sk-fb-secret-2")
    logging.getLogger("uvicorn.error").info("error logger got api_key=plain-secret-3")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/key/info?%6Bey=plain-secret-4", "1.1", 404
    )
    logging.getLogger("somelibrary").warning("library saw /x?token=plain-secret-5")
    logging.getLogger("somelibrary").info("not shown: below WARNING")
    try:
        raise RuntimeError("multi\\nline sk-fb-secret-6")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("failed")
    """
)


@pytest.mark.parametrize("mode", ["json", "text"])
@pytest.mark.slow
def test_log_config_redacts_every_logger_in_a_fresh_process(mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD_LOGGING, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = done.stdout + done.stderr
    assert "secret-" not in output, output
    assert output.count(R) == (7 if mode == "json" else 6), output  # JSON: the access path too
    assert "not shown" not in output
    if mode == "json":
        lines = output.splitlines()
        entries = [json.loads(line) for line in lines]  # every line is one JSON object
        assert len(entries) == 6
        assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
        assert {e["logger"] for e in entries} >= {"falbind.serve.sub", "uvicorn.access"}
        assert "Traceback" in entries[-1]["exc_info"]


# -- ``falbind serve`` in child processes ----------------------------------------------------


@pytest.fixture
def config_path(tmp_path: Path) -> Iterator[Path]:
    with FakeFalServer() as fal:
        data = config_data(
            fal, {"flux": "fal-ai/flux/dev"}, database_url=f"sqlite:///{tmp_path}/l.db"
        )
        yield write_config(tmp_path / "config.yaml", data)


def leaky_requests(url: str) -> list[str]:
    """Requests that put credentials in the query string (each on a new connection, so
    both workers take some); the secrets they sent."""
    sent = []
    master = {"Authorization": f"Bearer {MASTER_KEY}", "Connection": "close"}
    for _ in range(4):
        key = "sk-fb-" + secrets.token_urlsafe(16)
        plain = "plain" + secrets.token_hex(8)
        for query in (f"key={key}", f"%6Bey={key}", f"api_key={plain}"):
            httpx.get(f"{url}/key/info?{query}", headers=master, timeout=30)
        httpx.get(f"{url}/spend/logs?key={key}", headers=master, timeout=30)
        sent += [key, plain]
    return sent


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


@pytest.mark.slow
def test_access_logs_of_two_workers_hold_no_key(config_path: Path) -> None:
    database = f"sqlite:///{config_path.parent}/l.db"
    with GatewayProcess(config_path, extra=("--workers", "2")) as gateway:
        assert gateway.process is not None
        # /health answers once one worker is up: wait for both (each registers itself).
        wait_until(
            lambda: len(database_rows(database, "SELECT id FROM falbind_instances")) >= 2,
            timeout=30,
            what="both workers started",
        )
        sent = leaky_requests(gateway.url)
        output = stop(gateway.process)
    for secret in sent:
        assert secret not in output
    assert output.count(f"/key/info?key={R}") == 4, output
    assert output.count(f"/key/info?%6Bey={R}") == 4
    assert output.count(f"/key/info?api_key={R}") == 4
    assert output.count(f"/spend/logs?key={R}") == 4
    assert output.count("Started server process") >= 2  # the two workers logged


SERVE_WITH_JSON_LOGS = textwrap.dedent(
    """
    import dataclasses, sys
    import falbind.serve.cli as cli
    from falbind.cli.main import main

    # GatewayConfig.json_logs is read from litellm_settings by the config work; set it here.
    load = cli._load
    cli._load = lambda path: dataclasses.replace(load(path), json_logs=True)
    sys.exit(main(["serve", "--config", sys.argv[1], "--port", sys.argv[2], "--workers", "2"]))
    """
)


@contextlib.contextmanager
def json_logging_gateway(config_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_WITH_JSON_LOGS, str(config_path), str(port)],
        env={**os.environ, **ENVIRON},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "falbind serve did not become healthy"
            time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout:
            process.stdout.close()


@pytest.mark.slow
def test_json_logs_of_falbind_serve_are_one_object_per_line(config_path: Path) -> None:
    with json_logging_gateway(config_path) as (url, process):
        sent = leaky_requests(url)
        output = stop(process)
    entries: list[dict[str, Any]] = [json.loads(line) for line in output.splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    messages = [entry["message"] for entry in entries]
    assert any(m.startswith("falbind serve: models flux") for m in messages)  # start-up lines
    access = [entry for entry in entries if entry["logger"] == "uvicorn.access"]
    assert sum(entry["path"] != "/health" for entry in access) == 16  # the leaky requests
    assert sum(entry["path"] == f"/key/info?key={R}" for entry in access) == 4
    for secret in sent:
        assert secret not in output
