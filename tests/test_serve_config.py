"""The gateway's config (LiteLLM Proxy's format, checked strictly) and its command line:
`falbind serve` refusing a bad config in one line, `falbind keys` and `falbind spend`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from falbind.cli.main import main
from falbind.serve import ConfigError, load_config, parse_config
from falbind.testing import FakeFalServer

from serve_support import (
    ENVIRON,
    MASTER_KEY,
    GatewayProcess,
    ThreadedGateway,
    avoid_minute_boundary,
    config_data,
    free_port,
    write_config,
)

SEED = """
model_list:
  - model_name: flux-ultra
    litellm_params:
      model: fal_ai/fal-ai/flux-pro/v1.1-ultra
      api_key: os.environ/FAL_AI_API_KEY
      safety_tolerance: "2"
    model_info:
      mode: image_generation
      output_cost_per_image: 0.06
  - model_name: flux-schnell
    litellm_params:
      model: flux-schnell
  - model_name: fal/*
    litellm_params:
      model: fal_ai/*
general_settings:
  master_key: os.environ/FALBIND_MASTER_KEY
litellm_settings:
  drop_params: true
"""


def good(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model_list": [{"model_name": "flux", "litellm_params": {"model": "fal-ai/flux/dev"}}],
        "general_settings": {"master_key": "os.environ/FALBIND_MASTER_KEY"},
    }
    data.update(changes)
    return data


def test_a_litellm_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED)
    config = load_config(path, environ={**ENVIRON, "FAL_AI_API_KEY": "fal-secret-value"})
    ultra = config.entry("flux-ultra")
    assert ultra is not None and ultra.endpoint_id == "fal-ai/flux-pro/v1.1-ultra"
    assert ultra.defaults == {"safety_tolerance": "2"} and ultra.cost_per_image == 0.06
    assert config.entry("flux-schnell").endpoint_id == "fal-ai/flux/schnell"  # type: ignore[union-attr]
    wildcard = config.entry("fal/fal-ai/flux/dev")
    assert (
        wildcard is not None
        and wildcard.target_for("fal/fal-ai/flux/dev") == "fal_ai/fal-ai/flux/dev"
    )
    assert config.public_names() == ["flux-ultra", "flux-schnell"]
    assert config.database_url == f"sqlite:///{tmp_path / 'falbind.db'}"
    assert any("drop_params" in note for note in config.notes)
    shown = repr(config)
    assert "fal-secret-value" not in shown and MASTER_KEY not in shown


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (good(general_setting={}), "unknown key general_setting (did you mean 'general_settings'?"),
        (
            good(model_list=[{"model_name": "x", "litellm_params": {"model": "fal-ai/flux/dve"}}]),
            "model_list[0] (x): model 'fal-ai/flux/dve' is not a bound fal endpoint (did you mean fal-ai/flux/dev",
        ),
        (
            good(
                model_list=[
                    {"model_name": "a", "litellm_params": {"model": "fal-ai/nope-1"}},
                    {"model_name": "b", "litellm_params": {"model": "fal-ai/nope-2"}},
                ]
            ),
            "model_list[1] (b)",
        ),
        (
            good(
                model_list=[
                    {
                        "model_name": "x",
                        "litellm_params": {"model": "fal-ai/flux/dev", "num_image": 2},
                    }
                ]
            ),
            "litellm_params.num_image: unknown parameter 'num_image' for fal-ai/flux/dev; did you mean 'num_images'?",
        ),
        (
            good(
                model_list=[
                    {
                        "model_name": "x",
                        "litellm_params": {
                            "model": "fal-ai/flux/dev",
                            "api_key": "os.environ/NOT_SET_ANYWHERE",
                        },
                    }
                ]
            ),
            "environment variable NOT_SET_ANYWHERE is not set",
        ),
        (good(general_settings={"master_key": "sk-1234"}), "publicly known example key"),
        (good(general_settings={"master_key": "sk-short"}), "shorter than 16 characters"),
        (good(general_settings={}), "general_settings.master_key is required"),
        (
            good(
                model_list=[
                    {
                        "model_name": "x",
                        "litellm_params": {"model": "fal-ai/flux/dev"},
                        "model_inf": {},
                    }
                ]
            ),
            "unknown key model_list[0].model_inf (did you mean 'model_info'?",
        ),
        (
            good(
                model_list=[
                    {
                        "model_name": "x",
                        "litellm_params": {"model": "fal-ai/bytedance/seed-speech/tts/v2"},
                    }
                ]
            ),
            "returns no images",
        ),
    ],
)
def test_bad_config_is_refused_with_every_reason(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="config.yaml", environ=ENVIRON)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and message.startswith("config.yaml: ")


def test_serve_refuses_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "c.yaml", good(general_settings={"master_key": "sk-1234"}))
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("falbind: ") and "publicly known" in err and len(err.splitlines()) == 1


def test_serve_refuses_an_unreachable_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    port = free_port()  # nothing listens there
    data = good(
        general_settings={
            "master_key": "os.environ/FALBIND_MASTER_KEY",
            "database_url": f"postgresql://falbind:db-password@127.0.0.1:{port}/falbind",
        }
    )
    path = write_config(tmp_path / "c.yaml", data)
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("falbind: ") and "cannot use the database (postgresql)" in err
    assert "db-password" not in err and len(err.splitlines()) == 1


def test_serve_needs_a_fal_key_unless_faked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_AI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FALBIND_MASTER_KEY", MASTER_KEY)
    path = write_config(tmp_path / "c.yaml", good())
    assert main(["serve", "--config", str(path)]) == 2
    assert "no fal key for flux" in capsys.readouterr().err


def test_keys_and_spend_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FALBIND_MASTER_KEY", MASTER_KEY)
    data = good(
        general_settings={
            "master_key": "os.environ/FALBIND_MASTER_KEY",
            "database_url": f"sqlite:///{tmp_path}/g.db",
        }
    )
    path = str(write_config(tmp_path / "c.yaml", data))
    assert (
        main(
            [
                "keys",
                "create",
                "--config",
                path,
                "--models",
                "flux",
                "--rpm-limit",
                "5",
                "--alias",
                "team-a",
                "--max-budget",
                "2",
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.splitlines()[0]
    assert key.startswith("sk-fb-")
    assert main(["keys", "list", "--config", path, "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["key_alias"], k["models"], k["rpm_limit"], k["max_budget"]) for k in listed] == [
        ("team-a", ["flux"], 5, 2.0)
    ]
    assert key not in json.dumps(listed)
    assert main(["keys", "revoke", "--config", path, "team-a"]) == 0
    assert "revoked 1 key" in capsys.readouterr().out
    assert main(["keys", "list", "--config", path]) == 0
    assert capsys.readouterr().out.strip() == "no keys"
    assert main(["keys", "revoke", "--config", path, "nobody"]) == 2
    assert main(["spend", "--config", path, "--since", "2020-01-01"]) == 0
    assert capsys.readouterr().out.startswith("key")
    assert main(["spend", "--config", path, "--since", "yesterday"]) == 2


def readme_config() -> str:
    """The config.yaml of the README's gateway quick start."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## OpenAI-compatible gateway", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_quick_start_with_fake_fal(tmp_path: Path) -> None:
    """The README's quick start: its config, `falbind serve --fake-fal`, the OpenAI SDK call;
    a key made over HTTP works within its model list; the spend is recorded."""
    path = tmp_path / "config.yaml"
    path.write_text(readme_config())
    with GatewayProcess(path, extra=("--fake-fal",)) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY)
        result = client.images.generate(
            model="flux-ultra", prompt="a red fox in the snow", n=1, size="1024x1024"
        )
        assert result.data[0].url
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(
                model="flux-schnell", prompt="a fox", extra_body={"num_inference_step": 4}
            )
        assert caught.value.param == "num_inference_step"
        assert "did you mean 'num_inference_steps'" in caught.value.message
        created = httpx.post(
            f"{gateway.url}/key/generate",
            json={"models": ["flux-schnell"]},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        ).json()
        keyed = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=created["key"])
        assert keyed.images.generate(model="flux-schnell", prompt="a fox").data
        with pytest.raises(openai.PermissionDeniedError):
            keyed.images.generate(model="flux-ultra", prompt="a fox")
        totals = httpx.get(
            f"{gateway.url}/spend/logs", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        ).json()["totals"]
        master = [t for t in totals if t["key_name"] == "master key"]
        keyed_rows = [t for t in totals if t["key_name"] == created["key_name"]]
        assert {(t["model"], t["requests"], t["images"]) for t in master} == {
            ("flux-ultra", 1, 1),
            ("flux-schnell", 1, 0),  # the refused request is logged, with no image
        }
        assert {(t["model"], t["requests"], t["images"]) for t in keyed_rows} == {
            ("flux-schnell", 1, 1),
            ("flux-ultra", 1, 0),
        }
    assert (tmp_path / "falbind.db").exists()


def test_fake_server_fixture_is_loopback() -> None:
    with FakeFalServer() as server:
        assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_workers_share_an_rpm_limit_on_sqlite(tmp_path: Path) -> None:
    """`--workers 2` on one SQLite file: the limit holds across the worker processes."""
    with FakeFalServer() as fal:
        data = config_data(
            fal, {"flux": "fal-ai/flux/dev"}, database_url=f"sqlite:///{tmp_path}/w.db"
        )
        path = write_config(tmp_path / "config.yaml", data)
        with GatewayProcess(path, extra=("--workers", "2")) as gateway:
            master = {"Authorization": f"Bearer {MASTER_KEY}", "Connection": "close"}
            for _ in range(4):  # warm both workers up (imports, fal client) with the master key
                httpx.post(
                    f"{gateway.url}/v1/images/generations",
                    json={"model": "flux", "prompt": "warm-up"},
                    headers=master,
                    timeout=60,
                )
            fal.clear_requests()
            avoid_minute_boundary(20)
            key = httpx.post(
                f"{gateway.url}/key/generate",
                json={"rpm_limit": 4},
                headers={"Authorization": f"Bearer {MASTER_KEY}"},
            ).json()["key"]

            def attempt(_: int) -> int:
                # a new connection each time, so both workers take requests
                response = httpx.post(
                    f"{gateway.url}/v1/images/generations",
                    json={"model": "flux", "prompt": "a fox"},
                    headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                    timeout=60,
                )
                return response.status_code

            with ThreadPoolExecutor(6) as pool:
                statuses = list(pool.map(attempt, range(10)))
        assert sorted(statuses) == [200] * 4 + [429] * 6
        assert fal.count(route="submit") == 4


@pytest.mark.slow
def test_the_fal_key_never_reaches_clients(tmp_path: Path) -> None:
    secret = "fal-secret-" + "x" * 20
    with FakeFalServer(key="the-right-key") as fal:
        data = config_data(
            fal,
            {"flux": {"model": "fal-ai/flux/dev", "api_key": "os.environ/WRONG_FAL_KEY"}},
            database_url=f"sqlite:///{tmp_path}/k.db",
        )
        config = parse_config(data, environ={**ENVIRON, "WRONG_FAL_KEY": secret})
        assert secret not in repr(config)
        with ThreadedGateway(config) as gateway:
            response = httpx.post(
                f"{gateway.url}/v1/images/generations",
                json={"model": "flux", "prompt": "a fox"},
                headers={"Authorization": f"Bearer {MASTER_KEY}"},
            )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth"
    assert secret not in response.text and secret not in str(response.headers)


def test_access_log_lines_do_not_carry_keys() -> None:
    import logging

    from falbind.serve.logs import RedactSecrets

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/key/info?key=sk-fb-secret&x=1", "1.1", 200), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert "sk-fb-secret" not in record.getMessage()
    assert "/key/info?key=<redacted>&x=1" in record.getMessage()


def test_the_documented_config_loads(tmp_path: Path) -> None:
    """docs/serve.md's configuration example is a config that starts (LiteLLM's blocks, two
    deployments of one name, api_base), its unapplied keys named in one note."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text()
    section = docs.split("## Configuration", 1)[1]
    path = tmp_path / "config.yaml"
    path.write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    environ = {**ENVIRON, "MY_FAL_KEY": "fal-a", "FAL_KEY_TEAM_B": "fal-b"}
    config = load_config(path, environ=environ)
    first, egress = config.deployments("flux-ultra")
    assert (first.fal.key, first.rpm, first.weight, first.use_queue) == ("fal-a", 60, 3.0, True)
    assert (egress.fal.run_url, egress.use_queue, egress.fal.inline_files) == (
        "http://fal-egress.internal:8080",
        False,
        True,
    )
    assert egress.deployment_id == "ultra-egress" and egress.fal.key == "fal-b"
    assert (config.num_retries, config.json_logs) == (2, True)
    assert config.public_names() == ["flux-ultra", "flux-schnell"]
