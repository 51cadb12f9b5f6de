"""LiteLLM Proxy configs under `falbind serve`: the key lists against the pinned LiteLLM's
source, the blocks LiteLLM accepts (router_settings, litellm_settings, environment_variables,
per-deployment rpm/tpm/max_retries/stream_timeout), the api_base rule, several deployments
under one name with LiteLLM's simple-shuffle, and the seed config served end to end."""

from __future__ import annotations

import ast
import collections
import importlib.util
import json
import os
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

import openai
import pytest

from falbind.serve import ConfigError, config as gateway_config, parse_config
from falbind.serve.config import (
    DEFAULT_QUEUE_URL,
    DEFAULT_RUN_URL,
    ModelEntry,
    choose_deployment,
    order_deployments,
)
from falbind.testing import FakeFalServer

from serve_support import ENVIRON, MASTER_KEY, ThreadedGateway

# -- the key lists, read again from the installed LiteLLM's source (ast; nothing imported) ---


def litellm_root() -> Path:
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def source_tree(relative: str) -> ast.Module:
    return ast.parse((litellm_root() / relative).read_text(encoding="utf-8"))


@cache
def class_nodes() -> dict[str, ast.ClassDef]:
    found: dict[str, ast.ClassDef] = {}
    for relative in ("types/router.py", "types/utils.py", "proxy/_types.py"):
        for node in ast.walk(source_tree(relative)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, node)
    return found


def class_fields(name: str) -> set[str]:
    """The annotated fields of a pydantic model or TypedDict, its bases' included."""
    node = class_nodes().get(name)
    if node is None:
        return set()
    names: set[str] = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names |= class_fields(base.id)
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            if ast.unparse(statement.annotation).startswith("ClassVar"):
                continue
            if statement.target.id != "model_config":
                names.add(statement.target.id)
    return names


def strings_in(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def assigned_value(tree: ast.AST, name: str) -> ast.AST:
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == name:
            value = node.value  # type: ignore[union-attr]
            assert value is not None
            return value
    raise LookupError(name)


def function(relative: str, name: str) -> ast.AST:
    for node in ast.walk(source_tree(relative)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    raise LookupError(name)


def get_literals(node: ast.AST, receiver: str) -> set[str]:
    """``receiver.get("x")`` literals under ``node``."""
    return {
        call.args[0].value
        for call in ast.walk(node)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "get"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == receiver
        and call.args
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    }


def reads_the_config(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``config`` is the whole config file here: a parameter, or what ``get_config`` returned."""
    if any(a.arg == "config" for a in node.args.args + node.args.kwonlyargs):
        return True
    try:
        value = assigned_value(node, "config")
    except LookupError:
        return False
    calls = [ast.unparse(c.func) for c in ast.walk(value) if isinstance(c, ast.Call)]
    return any("get_config" in c or "config_from_file" in c for c in calls)


def top_level_keys() -> set[str]:
    found: set[str] = set()
    for node in ast.walk(source_tree("proxy/proxy_server.py")):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and reads_the_config(node):
            found |= get_literals(node, "config")
    includes = source_tree("proxy/common_utils/config_includes.py")
    return found | strings_in(assigned_value(includes, "INCLUDE_KEY"))


def litellm_settings_keys() -> set[str]:
    """The ``litellm`` module's names (assigned or imported by name in its ``__init__``; not
    CamelCase classes), the keys ``load_config`` handles itself, and those the proxy reads."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for statement in body:
            if isinstance(statement, ast.Assign):
                for target in statement.targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                names.add(statement.target.id)
            elif isinstance(statement, ast.ImportFrom):
                names.update(a.asname or a.name for a in statement.names if a.name != "*")
            elif isinstance(statement, ast.If | ast.Try | ast.With):
                visit(statement.body)
                visit(getattr(statement, "orelse", []))
                for handler in getattr(statement, "handlers", []):
                    visit(handler.body)
                visit(getattr(statement, "finalbody", []))

    visit(source_tree("__init__.py").body)
    names = {n for n in names if not n.startswith("_") and (n.islower() or n.isupper())}
    for node in ast.walk(function("proxy/proxy_server.py", "load_config")):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == "key"
            and len(node.comparators) == 1
            and isinstance(node.comparators[0], ast.Constant)
            and isinstance(node.comparators[0].value, str)
        ):
            names.add(node.comparators[0].value)
    pattern = re.compile(r"""\blitellm_settings(?:\.get\(|\[)\s*["']([A-Za-z0-9_]+)["']""")
    for path in (litellm_root() / "proxy").rglob("*.py"):  # text search: parsing 800 files is slow
        names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def router_settings_keys() -> set[str]:
    init_args = strings_in(assigned_value(source_tree("router_api.py"), "ROUTER_INIT_ARGS"))
    managed = assigned_value(source_tree("constants.py"), "ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG")
    return init_args - strings_in(managed)


def blocked_environment_keys() -> set[str]:
    return strings_in(assigned_value(source_tree("proxy/proxy_server.py"), "_BLOCKED_ENV_KEYS"))


@pytest.mark.parametrize(
    ("constant", "read"),
    [
        ("LITELLM_TOP_LEVEL_KEYS", top_level_keys),
        ("LITELLM_DEPLOYMENT_KEYS", lambda: class_fields("Deployment")),
        (
            "LITELLM_PARAMS_KEYS",
            lambda: class_fields("LiteLLM_Params") | class_fields("LiteLLMParamsTypedDict"),
        ),
        (
            "LITELLM_MODEL_INFO_KEYS",
            lambda: (
                class_fields("ModelInfo")
                | class_fields("ModelInfoBase")
                | class_fields("CustomPricingLiteLLMParams")
            ),
        ),
        ("LITELLM_GENERAL_SETTINGS_KEYS", lambda: class_fields("ConfigGeneralSettings")),
        ("LITELLM_ROUTER_SETTINGS_KEYS", router_settings_keys),
        ("LITELLM_SETTINGS_KEYS", litellm_settings_keys),
        ("LITELLM_BLOCKED_ENVIRONMENT_KEYS", blocked_environment_keys),
    ],
)
def test_key_lists_match_the_pinned_litellm_source(constant: str, read: Any) -> None:
    from importlib.metadata import version

    assert version("litellm") == gateway_config.LITELLM_VERSION
    expected = read()
    assert len(expected) > 3  # the reading found the list, not an empty set
    listed = getattr(gateway_config, constant)
    assert sorted(listed - expected) == [] and sorted(expected - listed) == []


def test_the_keys_of_the_issue_come_from_litellm() -> None:
    """The item-12 keys are in the lists read from LiteLLM's source (not added by hand)."""
    assert {"rpm", "tpm", "max_retries", "stream_timeout", "weight"} <= (
        gateway_config.LITELLM_PARAMS_KEYS
    )
    assert {"router_settings", "environment_variables"} <= gateway_config.LITELLM_TOP_LEVEL_KEYS
    assert {"num_retries", "json_logs"} <= gateway_config.LITELLM_SETTINGS_KEYS
    assert {"num_retries", "routing_strategy", "timeout"} <= (
        gateway_config.LITELLM_ROUTER_SETTINGS_KEYS
    )


# -- parsing --------------------------------------------------------------------------------


def entry_data(name: str = "flux", **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": "fal_ai/fal-ai/flux/dev", **params}}


def config(*entries: dict[str, Any], **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model_list": list(entries) or [entry_data()],
        "general_settings": {"master_key": "os.environ/FALBIND_MASTER_KEY"},
    }
    data.update(sections)
    return data


def parse(data: dict[str, Any], **env: str) -> Any:
    return parse_config(data, source="config.yaml", environ={**ENVIRON, **env})


def unapplied_note(notes: tuple[str, ...]) -> str:
    found = [n for n in notes if n.startswith("accepted from LiteLLM but not applied")]
    assert len(found) == 1, notes
    return found[0]


ITEM_12_CONFIGS = {
    "router_settings": config(
        router_settings={
            "routing_strategy": "simple-shuffle",
            "num_retries": 3,
            "timeout": 90,
            "allowed_fails": 3,
            "cooldown_time": 30,
            "redis_host": "os.environ/REDIS_HOST",
        }
    ),
    "litellm_settings.num_retries": config(litellm_settings={"num_retries": 4}),
    "litellm_settings.json_logs": config(litellm_settings={"json_logs": True}),
    "environment_variables": config(
        environment_variables={"FAL_AI_API_KEY": "fal-from-block", "LANGFUSE_HOST": "x"}
    ),
    "rpm": config(entry_data(rpm=60)),
    "tpm": config(entry_data(tpm=100000)),
    "max_retries": config(entry_data(max_retries=1)),
    "stream_timeout": config(entry_data(stream_timeout=30)),
}


@pytest.mark.parametrize("block", list(ITEM_12_CONFIGS))
def test_each_config_of_item_12_starts(block: str) -> None:
    parsed = parse(ITEM_12_CONFIGS[block])
    assert parsed.entry("flux") is not None
    assert parsed.entry("flux").defaults == {}  # none of them became a model parameter


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        (config(entry_data(rpm=60)), "rpm", 60),
        (config(entry_data(rpm="60")), "rpm", 60),
        (config(entry_data(rpm="os.environ/FLUX_RPM")), "rpm", 7),
        (config(entry_data(tpm=1000)), "tpm", 1000),
        (config(entry_data(max_retries="2")), "max_retries", 2),
        (config(entry_data(stream_timeout=30)), "stream_timeout", 30.0),
        (config(entry_data(timeout=45)), "timeout", 45.0),
        (config(entry_data(), router_settings={"timeout": 90}), "timeout", 90.0),
        (config(entry_data(), litellm_settings={"request_timeout": 600}), "timeout", 600.0),
        (
            config(
                entry_data(),
                router_settings={"timeout": 90},
                litellm_settings={"request_timeout": 600},
            ),
            "timeout",
            90.0,
        ),
        (config(entry_data(weight=3)), "weight", 3.0),
        (config(entry_data()), "weight", 1.0),
        (config(entry_data()), "deployment_id", "flux#0"),
        (config({**entry_data(), "model_info": {"id": "eu-1"}}), "deployment_id", "eu-1"),
        (config({**entry_data(), "model_info": {"id": 7}}), "deployment_id", "7"),
        (config(entry_data(output_cost_per_image=0.02)), "cost_per_image", 0.02),
        (config(entry_data(rpm=1)), "defaults", {}),
        (config(entry_data(order=2)), "order", 2),
        (config(entry_data(order="1")), "order", 1),
        (config({**entry_data(), "model_info": {"order": 3}}), "order", 3),
        (config(entry_data(order="first")), "order", None),
    ],
)
def test_deployment_fields(data: dict[str, Any], field: str, expected: Any) -> None:
    entry = parse(data, FLUX_RPM="7").entry("flux")
    assert getattr(entry, field) == expected


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        (config(), "num_retries", 2),  # LiteLLM's router default
        (config(litellm_settings={"num_retries": 4}), "num_retries", 4),
        (config(router_settings={"num_retries": 0}), "num_retries", 0),
        (
            config(router_settings={"num_retries": 1}, litellm_settings={"num_retries": 4}),
            "num_retries",
            1,  # the router's own setting wins, as in LiteLLM
        ),
        (config(), "json_logs", False),
        (config(litellm_settings={"json_logs": True}), "json_logs", True),
        (config(litellm_settings={"json_logs": False}), "json_logs", False),
    ],
)
def test_gateway_fields(data: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(parse(data), field) == expected


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (config(router_settings={"allowed_fails": 3}), "router_settings.allowed_fails"),
        (
            config(router_settings={"routing_strategy": "latency-based-routing"}),
            "router_settings.routing_strategy: latency-based-routing (simple-shuffle is used)",
        ),
        (config(litellm_settings={"set_verbose": True}), "litellm_settings.set_verbose"),
        (config(litellm_settings={"callbacks": ["otel"]}), "litellm_settings.callbacks"),
        (config(general_settings={"master_key": MASTER_KEY, "alerting": ["slack"]}), "alerting"),
        (config(guardrails=[]), "guardrails"),
        (config(entry_data(tpm=10)), "litellm_params.tpm (flux)"),
        (config(entry_data(stream_timeout=10)), "litellm_params.stream_timeout (flux)"),
        (config(entry_data(tags=["eu"])), "litellm_params.tags (flux)"),
        (
            config({**entry_data(), "model_info": {"supports_vision": False}}),
            "model_info.supports_vision (flux)",
        ),
    ],
)
def test_what_falbind_does_not_apply_is_named_once(data: dict[str, Any], named: str) -> None:
    assert named in unapplied_note(parse(data).notes)


def test_one_note_names_every_unapplied_key() -> None:
    data = config(
        entry_data("a", tpm=1, stream_timeout=2),
        entry_data("b", tpm=3),
        router_settings={"allowed_fails": 1, "cooldown_time": 2},
        litellm_settings={"set_verbose": False},
    )
    note = unapplied_note(parse(data).notes)
    assert "litellm_params.tpm (a, b)" in note and note.count("litellm_params.tpm") == 1
    for key in ("stream_timeout (a)", "allowed_fails", "cooldown_time", "set_verbose"):
        assert key in note


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            config(router_settings={"num_retires": 3}),
            "unknown key router_settings.num_retires (did you mean 'num_retries'?",
        ),
        (
            config(litellm_settings={"json_log": True}),
            "unknown key litellm_settings.json_log (did you mean 'json_logs'?",
        ),
        (config(enviroment_variables={}), "did you mean 'environment_variables'?"),
        (
            config({**entry_data(), "model_info": {"output_cost_per_img": 1}}),
            "model_info.output_cost_per_img (did you mean 'output_cost_per_image'?",
        ),
        (config(entry_data(rpm=-1)), "litellm_params.rpm must be a whole number >= 0"),
        (config(entry_data(rpm="many")), "litellm_params.rpm must be a whole number >= 0"),
        (config(entry_data(weight="x")), "litellm_params.weight must be a number >= 0"),
        (config(entry_data(timeout=0)), "litellm_params.timeout must be a number of seconds > 0"),
        (config(router_settings={"num_retries": -1}), "num_retries must be a whole number >= 0"),
        (config(entry_data(api_base="http://proxy", use_queue=True)), "use_queue needs"),
        (config(environment_variables=["A=1"]), "environment_variables must be a mapping"),
        # a key neither LiteLLM nor the model knows is still a model parameter, and refused
        (config(entry_data(num_image=2)), "did you mean 'num_images'?"),
        (config(entry_data(max_retry=2)), "did you mean the gateway's litellm_params.max_retries?"),
    ],
)
def test_keys_litellm_would_not_know_are_refused(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_blocked_deployment_is_not_served() -> None:
    data = config(entry_data("flux"), {**entry_data("flux", rpm=5), "blocked": True})
    parsed = parse(data)
    assert [e.rpm for e in parsed.deployments("flux")] == [None]
    assert any("blocked" in n for n in parsed.notes)


# -- environment_variables ------------------------------------------------------------------


def test_environment_variables_resolve_references_without_writing_the_environment() -> None:
    before = dict(os.environ)
    data = config(
        entry_data(api_key="os.environ/FAL_AI_API_KEY", api_base="os.environ/MY_BASE"),
        environment_variables={
            "FAL_AI_API_KEY": "fal-from-block",
            "MY_BASE": "http://egress.internal/fal",
            "FROM_REAL": "os.environ/REAL_ONE",
            "PATH": "/evil",  # LiteLLM refuses to set it; falbind does not read it
        },
        general_settings={"master_key": "os.environ/FROM_REAL"},
    )
    parsed = parse_config(data, environ={"REAL_ONE": MASTER_KEY, "FAL_AI_API_KEY": "real-key"})
    entry = parsed.entry("flux")
    assert entry.fal.key == "fal-from-block"  # the block wins, as LiteLLM writes it over
    assert entry.fal.run_url == "http://egress.internal/fal"
    assert parsed.master_key == MASTER_KEY
    assert any("PATH" in n for n in parsed.notes)
    assert dict(os.environ) == before
    assert "fal-from-block" not in repr(parsed)


def test_a_fal_key_named_only_in_environment_variables_is_used() -> None:
    data = config(environment_variables={"FAL_KEY": "fal-only-in-block"})
    parsed = parse_config(data, environ={"FALBIND_MASTER_KEY": MASTER_KEY})
    assert parsed.entry("flux").fal.key == "fal-only-in-block"
    assert "FAL_KEY" not in os.environ or os.environ["FAL_KEY"] != "fal-only-in-block"


# -- the api_base rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "env", "expected"),
    [
        # no api_base: fal's hosts, the queue by default
        ({}, {}, (DEFAULT_RUN_URL, DEFAULT_QUEUE_URL, True, False)),
        # api_base: sync on it, files inline, every URL on it
        (
            {"api_base": "http://egress:8080/fal/"},
            {},
            ("http://egress:8080/fal", "http://egress:8080/fal", False, True),
        ),
        # api_base with queue_url: the queue there
        (
            {"api_base": "http://egress/fal", "queue_url": "http://egress/queue"},
            {},
            ("http://egress/fal", "http://egress/queue", True, True),
        ),
        # ... unless the entry turns the queue off
        (
            {"api_base": "http://e/fal", "queue_url": "http://e/q", "use_queue": False},
            {},
            ("http://e/fal", "http://e/q", False, True),
        ),
        # LiteLLM's FAL_AI_API_BASE: the api_base of every entry that names none
        (
            {},
            {"FAL_AI_API_BASE": "http://env-base"},
            ("http://env-base", "http://env-base", False, True),
        ),
        # ... the entry's own api_base wins
        (
            {"api_base": "http://own"},
            {"FAL_AI_API_BASE": "http://env-base"},
            ("http://own", "http://own", False, True),
        ),
        # an empty api_base is none, as in LiteLLM (`api_base or FAL_AI_API_BASE or ...`)
        (
            {"api_base": ""},
            {"FAL_AI_API_BASE": "http://env-base"},
            ("http://env-base", "http://env-base", False, True),
        ),
        # FAL_AI_QUEUE_API_BASE beside it: the queue there
        (
            {},
            {"FAL_AI_API_BASE": "http://env-base", "FAL_AI_QUEUE_API_BASE": "http://env-q"},
            ("http://env-base", "http://env-q", True, True),
        ),
        # FAL_AI_QUEUE_API_BASE alone: fal's queue host replaced
        (
            {},
            {"FAL_AI_QUEUE_API_BASE": "http://env-q"},
            (DEFAULT_RUN_URL, "http://env-q", True, False),
        ),
    ],
)
def test_api_base_carries_all_of_its_entrys_traffic(
    params: dict[str, Any], env: dict[str, str], expected: tuple[str, str, bool, bool]
) -> None:
    entry = parse(config(entry_data(**params)), **env).entry("flux")
    run_url, queue_url, use_queue, inline = expected
    assert (entry.fal.run_url, entry.fal.queue_url, entry.use_queue, entry.fal.inline_files) == (
        run_url,
        queue_url,
        use_queue,
        inline,
    )
    if inline:  # no other host of the entry: storage and pricing too
        assert {entry.fal.storage_url, entry.fal.api_url} == {run_url}


def test_fal_ai_api_base_from_environment_variables_is_honoured() -> None:
    data = config(environment_variables={"FAL_AI_API_BASE": "http://from-block"})
    entry = parse(data).entry("flux")
    assert (entry.fal.run_url, entry.use_queue, entry.fal.inline_files) == (
        "http://from-block",
        False,
        True,
    )


def test_falbind_settings_hosts_win_over_the_environment_and_say_so() -> None:
    data = config(falbind_settings={"run_url": "http://r", "queue_url": "http://q"})
    parsed = parse(data, FAL_AI_API_BASE="http://env-base")
    entry = parsed.entry("flux")
    assert (entry.fal.run_url, entry.fal.queue_url, entry.fal.inline_files) == (
        "http://r",
        "http://q",
        False,
    )
    assert any("FAL_AI_API_BASE" in n for n in parsed.notes)


def test_fake_fal_keeps_an_api_base_entry_inline_and_sync() -> None:
    parsed = parse(config(entry_data(api_base="http://egress")))
    faked = parsed.with_fal_urls("http://f/run", "http://f/queue", "http://f", "http://f")
    entry = faked.entry("flux")
    assert (entry.fal.run_url, entry.use_queue, entry.fal.inline_files) == (
        "http://f/run",
        False,
        True,
    )


# -- several deployments under one name -----------------------------------------------------


def test_deployments_of_one_name() -> None:
    data = config(
        entry_data("flux", api_base="http://a"),
        {"model_name": "fal/*", "litellm_params": {"model": "fal_ai/*", "api_base": "http://w1"}},
        entry_data("flux", api_base="http://b", rpm=10),
        {"model_name": "fal/*", "litellm_params": {"model": "fal_ai/*", "api_base": "http://w2"}},
        {"model_name": "f*", "litellm_params": {"model": "fal_ai/*"}},
        {**entry_data("flux", api_base="http://c"), "model_info": {"id": "flux-c"}},
    )
    parsed = parse(data)
    assert [e.fal.run_url for e in parsed.deployments("flux")] == [
        "http://a",
        "http://b",
        "http://c",
    ]
    assert [e.deployment_id for e in parsed.deployments("flux")] == ["flux#0", "flux#1", "flux-c"]
    assert parsed.entry("flux").fal.run_url == "http://a"
    wildcard = parsed.deployments("fal/fal-ai/flux/dev")
    assert [e.fal.run_url for e in wildcard] == ["http://w1", "http://w2"]
    assert [e.deployment_id for e in wildcard] == ["fal/*#0", "fal/*#1"]
    assert parsed.deployments("nothing") == ()
    assert parsed.public_names() == ["flux"]


def test_a_repeated_model_info_id_stays_apart() -> None:
    data = config(
        {**entry_data("a"), "model_info": {"id": "same"}},
        {**entry_data("a"), "model_info": {"id": "same"}},
    )
    parsed = parse(data)
    assert [e.deployment_id for e in parsed.deployments("a")] == ["same", "same#1"]
    assert any("repeated" in n for n in parsed.notes)


def deployment(name: str, **fields: Any) -> ModelEntry:
    entry = parse(config(entry_data())).entry("flux")
    assert entry is not None
    from dataclasses import replace

    return replace(entry, deployment_id=name, **fields)


def shares(deployments: list[ModelEntry], draws: int = 20000) -> dict[str, float]:
    rng = random.Random(1234)
    counts = collections.Counter(
        choose_deployment(deployments, rng).deployment_id for _ in range(draws)
    )
    return {name: counts[name] / draws for name in (d.deployment_id for d in deployments)}


@pytest.mark.parametrize(
    ("deployments", "expected"),
    [
        # weights, as written
        (
            [
                deployment("a", weight=3.0, weight_configured=True),
                deployment("b", weight=1.0, weight_configured=True),
            ],
            {"a": 0.75, "b": 0.25},
        ),
        # one weight set: the others weigh 0 (LiteLLM reads a missing weight as 0)
        (
            [deployment("a", weight=2.0, weight_configured=True), deployment("b")],
            {"a": 1.0, "b": 0.0},
        ),
        # no weight: rpm
        ([deployment("a", rpm=100), deployment("b", rpm=300)], {"a": 0.25, "b": 0.75}),
        # no weight, no rpm: tpm
        ([deployment("a", tpm=1), deployment("b", tpm=4)], {"a": 0.2, "b": 0.8}),
        # weight wins over rpm
        (
            [
                deployment("a", weight=1.0, weight_configured=True, rpm=1),
                deployment("b", weight=1.0, weight_configured=True, rpm=99),
            ],
            {"a": 0.5, "b": 0.5},
        ),
        # nothing: uniform
        ([deployment("a"), deployment("b"), deployment("c")], {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
    ],
)
def test_simple_shuffle_weights(deployments: list[ModelEntry], expected: dict[str, float]) -> None:
    for name, share in shares(deployments).items():
        assert share == pytest.approx(expected[name], abs=0.015), name


def test_order_deployments_tries_each_once_weighted_first() -> None:
    group = [
        deployment("a", weight=8.0, weight_configured=True),
        deployment("b", weight=2.0, weight_configured=True),
        deployment("c"),  # weight 0: last, after the weighted ones
    ]
    rng = random.Random(99)
    orders = [tuple(d.deployment_id for d in order_deployments(group, rng)) for _ in range(5000)]
    assert {sorted(o) == ["a", "b", "c"] for o in orders} == {True}
    counts = collections.Counter(orders)
    assert set(counts) == {("a", "b", "c"), ("b", "a", "c")}
    assert counts[("a", "b", "c")] / 5000 == pytest.approx(0.8, abs=0.02)
    assert order_deployments([], rng) == []
    with pytest.raises(ValueError):
        choose_deployment([], rng)


def test_the_lowest_order_is_chosen_while_it_is_left() -> None:
    """LiteLLM's ``order``: the lowest-order deployments first (weighted among themselves),
    the next order only once they are all tried, deployments without an order last."""
    group = [
        deployment("backup", order=2),
        deployment("none"),
        deployment("a", order=1, rpm=30),
        deployment("b", order=1, rpm=10),
    ]
    assert shares(group) == pytest.approx({"backup": 0, "none": 0, "a": 0.75, "b": 0.25}, abs=0.015)
    rng = random.Random(5)
    tails = {tuple(d.deployment_id for d in order_deployments(group, rng))[2:] for _ in range(200)}
    assert tails == {("backup", "none")}


def test_weights_read_from_the_config_drive_the_choice() -> None:
    data = config(entry_data("flux", weight=9), entry_data("flux", weight=1))
    group = list(parse(data).deployments("flux"))
    assert shares(group) == pytest.approx({"flux#0": 0.9, "flux#1": 0.1}, abs=0.015)


# -- the seed config, end to end ------------------------------------------------------------

SEED = """
model_list:
  - model_name: flux-ultra
    litellm_params:
      model: fal_ai/fal-ai/flux-pro/v1.1-ultra
      api_key: os.environ/FAL_AI_API_KEY
      api_base: {run_url}
      rpm: 60
      tpm: 100000
      max_retries: 1
      stream_timeout: 60
    model_info:
      mode: image_generation
      output_cost_per_image: 0.06
  - model_name: flux-schnell
    litellm_params:
      model: fal_ai/fal-ai/flux/schnell
      api_key: os.environ/FAL_AI_API_KEY
      api_base: {run_url}
      rpm: 100
  - model_name: flux-schnell
    litellm_params:
      model: fal_ai/fal-ai/flux/schnell
      api_key: os.environ/FAL_AI_API_KEY
      api_base: {run_url}
      rpm: 300
  - model_name: flux-dev
    litellm_params:
      model: fal_ai/fal-ai/flux/dev
      api_key: os.environ/FAL_AI_API_KEY
      api_base: {run_url}
      timeout: 120
general_settings:
  master_key: os.environ/FALBIND_MASTER_KEY
  database_url: sqlite:///{database}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  timeout: 300
  allowed_fails: 3
  cooldown_time: 30
litellm_settings:
  drop_params: true
  num_retries: 3
  json_logs: true
  request_timeout: 600
environment_variables:
  FAL_AI_API_KEY: {fal_key}
"""


@pytest.mark.slow
def test_seed_config_with_the_litellm_blocks_serves_through_api_base_only(tmp_path: Path) -> None:
    from falbind.serve import load_config

    fal_key = "fal-key-from-the-block"
    with FakeFalServer(key=fal_key) as fal:
        path = tmp_path / "config.yaml"
        path.write_text(
            SEED.format(run_url=fal.run_url, database=tmp_path / "g.db", fal_key=fal_key)
        )
        before = dict(os.environ)
        parsed = load_config(path, environ={"FALBIND_MASTER_KEY": MASTER_KEY})
        assert dict(os.environ) == before
        assert (parsed.num_retries, parsed.json_logs) == (2, True)
        assert {(e.use_queue, e.fal.inline_files, e.fal.key) for e in parsed.models} == {
            (False, True, fal_key)
        }
        assert [e.rpm for e in parsed.deployments("flux-schnell")] == [100, 300]
        with ThreadedGateway(parsed) as gateway:
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
            for model in ("flux-ultra", "flux-schnell", "flux-dev"):
                result = client.images.generate(model=model, prompt="a red fox in the snow")
                assert result.data and result.data[0].url
        routes = [(r.method, r.route, r.path.split("/")[1]) for r in fal.requests]
        # every request went to api_base: its sync route (nothing to the queue, storage or
        # elsewhere), and the price look-up of the two models without output_cost_per_image
        # under api_base too (a 404 here: keys with a budget are refused on them)
        assert [r for r in routes if r[0] == "POST"] == [("POST", "run", "run")] * 3
        assert [r for r in routes if r[0] != "POST"] == [("GET", None, "run")]
        assert fal.requests[0].path == "/run/v1/models/pricing"
        assert {r.headers["authorization"] for r in fal.requests} == {f"Key {fal_key}"}


@pytest.mark.slow
def test_falbind_serve_starts_with_the_seed_config_and_names_what_it_ignores(
    tmp_path: Path,
) -> None:
    """The same config through the real `falbind serve` process: it starts, prints the one
    note, and serves over api_base only."""
    from serve_support import GatewayProcess

    with FakeFalServer() as fal:
        path = tmp_path / "config.yaml"
        text = SEED.format(run_url=fal.run_url, database=tmp_path / "p.db", fal_key="fal-block")
        path.write_text(text)
        with GatewayProcess(path) as gateway:
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER_KEY, max_retries=0)
            assert client.images.generate(model="flux-schnell", prompt="a fox").data
            assert gateway.process is not None and gateway.process.stdout is not None
            gateway.process.terminate()
            gateway.process.wait(15)
            output = gateway.process.stdout.read()
        assert [r.route for r in fal.requests if r.method == "POST"] == ["run"]
        assert all(r.path.startswith("/run/") for r in fal.requests)  # api_base only
    # json_logs is on in the seed config: every line is a JSON object, start-up lines included
    messages = [json.loads(line)["message"] for line in output.splitlines() if line.startswith("{")]
    notes = [m for m in messages if m.startswith("note: accepted from LiteLLM")]
    assert len(notes) == 1
    for key in ("router_settings.allowed_fails", "litellm_params.tpm (flux-ultra)"):
        assert key in notes[0]
    assert "fal-block" not in output


def test_a_broken_fal_key_in_environment_variables_is_refused_without_showing_it() -> None:
    data = config(environment_variables={"FAL_KEY": "fal-secret-part\n"})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={"FALBIND_MASTER_KEY": MASTER_KEY})
    assert "FAL_KEY" in str(caught.value) and "fal-secret-part" not in str(caught.value)
