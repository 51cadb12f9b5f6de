"""The key routes with LiteLLM's fields (`/key/generate`, `/key/update`, `/key/list`) over a
real socket, the limits those fields set (through `Store.admit`, as the image routes call it),
and `falbind keys` / `falbind spend` through the real command-line entry point."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from falbind.cli.main import main
from falbind.serve.errors import GatewayError
from falbind.serve.keys import GENERATE_FIELDS, UPDATE_FIELDS, owner_filters
from falbind.serve.store import Admission, LogEntry, Settlement, Store, Ticket
from falbind.testing import FakeFalServer

from serve_support import (
    MASTER_KEY,
    PostgresCluster,
    ThreadedGateway,
    build_config,
    config_data,
    write_config,
)

pytestmark = pytest.mark.slow  # see [tool.pytest.ini_options] markers

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFalServer]:
    with FakeFalServer() as server:
        yield server


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('keys') / 'gateway.db'}"


@pytest.fixture(scope="module")
def gateway(fal: FakeFalServer, database: str) -> Iterator[ThreadedGateway]:
    data = config_data(fal, {"flux": "fal-ai/flux/dev"}, database_url=database, cost=0.01)
    data["model_list"].append({"model_name": "fal/*", "litellm_params": {"model": "fal_ai/*"}})
    with ThreadedGateway(build_config(data)) as running:
        yield running


def admin(gateway: ThreadedGateway, method: str, path: str, **options: Any) -> httpx.Response:
    headers = {**ADMIN, **options.pop("headers", {})}
    return httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=10, **options)


def generate(gateway: ThreadedGateway, **fields: Any) -> dict[str, Any]:
    response = admin(gateway, "POST", "/key/generate", json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def info(gateway: ThreadedGateway, reference: str) -> dict[str, Any]:
    response = admin(gateway, "GET", "/key/info", params={"key": reference})
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()["info"]
    return record


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_refused(response: httpx.Response, param: str | None, fragment: str) -> None:
    """A 400 in OpenAI's error shape naming ``param``, its message containing ``fragment``."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    assert fragment in error["message"], error


def run(work: Any) -> Any:
    return asyncio.run(work)


async def with_store(database: str, work: Any) -> Any:
    """``work(store)`` on a second Store over the gateway's database (as another replica)."""
    store = Store(database)
    try:
        await store.setup()
        return await work(store)
    finally:
        await store.close()


def ticket(estimate_micros: int | None = 0, model: str = "flux") -> Ticket:
    return Ticket(
        id=str(uuid.uuid4()),
        instance="test-instance",
        route="/v1/images/generations",
        model_name=model,
        estimate_micros=estimate_micros,
    )


# -- LiteLLM's fields ----------------------------------------------------------------------------


def _litellm_fields(class_name: str) -> set[str]:
    """The fields of a LiteLLM request model, read from LiteLLM's installed source (importing
    LiteLLM takes seconds): its annotated names, with those of its bases in the same files."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    classes: dict[str, ast.ClassDef] = {}
    for name in ("request_base.py", "key_requests.py"):
        tree = ast.parse((folder / "types/proxy/management_endpoints" / name).read_text())
        classes.update({n.name: n for n in tree.body if isinstance(n, ast.ClassDef)})

    def fields(name: str) -> set[str]:
        node = classes[name]
        found = {
            s.target.id
            for s in node.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
        }
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                found |= fields(base.id)
        return found

    return fields(class_name)


def test_every_field_of_litellms_requests_is_known() -> None:
    assert set(GENERATE_FIELDS) == _litellm_fields("GenerateKeyRequest")
    assert set(UPDATE_FIELDS) == _litellm_fields("UpdateKeyRequest")


def test_generate_applies_litellms_key_fields(gateway: ThreadedGateway) -> None:
    alias, user, team = unique("fields"), unique("user"), unique("team")
    before = time.time()
    created = generate(
        gateway,
        key_alias=alias,
        models=["flux"],
        max_budget=2.5,
        rpm_limit=30,
        duration="7d",
        metadata={"purpose": "test"},
        budget_duration="30d",
        max_parallel_requests=2,
        user_id=user,
        team_id=team,
        tpm_limit=1000,
    )
    assert created["key"].startswith("sk-fb-") and created["token_id"] == created["token"]
    record = info(gateway, alias)
    expected = {
        "key_alias": alias,
        "models": ["flux"],
        "max_budget": 2.5,
        "rpm_limit": 30,
        "budget_duration": "30d",
        "max_parallel_requests": 2,
        "user_id": user,
        "team_id": team,
        "tpm_limit": 1000,
        "metadata": {"purpose": "test"},
    }
    assert {name: record[name] for name in expected} == expected
    from datetime import datetime

    reset_at = datetime.fromisoformat(record["budget_reset_at"]).timestamp()
    assert before + 30 * 86400 <= reset_at <= time.time() + 30 * 86400


def test_litellms_whole_default_request_is_accepted(gateway: ThreadedGateway) -> None:
    """What LiteLLM's SDK sends for a key with defaults (every field present, unset), plus the
    fields ignored whatever their value."""
    body: dict[str, Any] = {name: None for name in GENERATE_FIELDS}
    body.update(
        models=[],
        spend=0,
        metadata={},
        allowed_cache_controls=["no-cache"],
        config={},
        permissions={},
        model_max_budget={},
        aliases={},
        allowed_routes=[],
        key_type="default",
        auto_rotate=False,
        blocked=False,
        soft_budget=5.0,
        tpd_limit=100,
        model_tpm_limit={"flux": 10},
        rpm_limit_type="best_effort_throughput",
        send_invite_email=True,
    )
    response = admin(gateway, "POST", "/key/generate", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["max_budget"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_max_budget", {"flux": 1.0}),
        ("budget_limits", [{"budget_limit": 1.0, "time_period": "1d"}]),
        ("blocked", True),
        ("key_type", "management"),
        ("allowed_routes", ["/key/generate"]),
        ("auto_rotate", True),
        ("key", "sk-my-own-key-value"),
    ],
)
def test_a_field_not_applied_is_refused_unless_unset(
    gateway: ThreadedGateway, field: str, value: Any
) -> None:
    response = admin(gateway, "POST", "/key/generate", json={field: value})
    assert_refused(response, field, "not supported")
    assert "sk-my-own-key-value" not in response.text


def test_unknown_field_has_a_did_you_mean(gateway: ThreadedGateway) -> None:
    response = admin(gateway, "POST", "/key/generate", json={"max_budjet": 1})
    assert_refused(response, "max_budjet", "did you mean 'max_budget'")


# -- edge values ---------------------------------------------------------------------------------

EDGE_VALUES = [
    ({"max_budget": math.nan}, "max_budget", "finite"),
    ({"max_budget": math.inf}, "max_budget", "finite"),
    ({"max_budget": 1e300}, "max_budget", "finite"),
    ({"max_budget": -1}, "max_budget", "finite"),
    ({"max_budget": True}, "max_budget", "must be a number"),
    ({"duration": "99999999999999d"}, "duration", "at most 100 years"),
    ({"duration": 1e300}, "duration", "at most 100 years"),
    ({"duration": math.inf}, "duration", "at most 100 years"),
    ({"rpm_limit": 2**31}, "rpm_limit", "2147483647"),
    ({"rpm_limit": 2**64}, "rpm_limit", "2147483647"),
    ({"max_parallel_requests": 2**40}, "max_parallel_requests", "2147483647"),
    ({"max_parallel_requests": 0}, "max_parallel_requests", "from 1"),
    ({"tpm_limit": -1}, "tpm_limit", "from 0"),
    ({"models": [1]}, "models", "(strings)"),
    ({"models": [None]}, "models", "(strings)"),
    ({"models": ["fal/" + "x" * 300 + "*"]}, "models", "longer than 300"),
    ({"models": ["fal/*"] * 257}, "models", "up to 256"),
    ({"metadata": {"a": math.nan}}, "metadata", "plain JSON"),
    ({"metadata": {"a": "\ud800"}}, "metadata", "plain JSON"),
    ({"metadata": {"a": "x" * 20_000}}, "metadata", "larger than 16384"),
    ({"metadata": ["a"]}, "metadata", "must be an object"),
    ({"key_alias": "\ud800"}, "key_alias", "lone surrogate"),
    ({"key_alias": "a\x00b"}, "key_alias", "NUL"),
    ({"key_alias": "x" * 201}, "key_alias", "longer than 200"),
    ({"user_id": 12}, "user_id", "must be a string"),
    ({"team_id": "t" * 201}, "team_id", "longer than 200"),
    ({"budget_duration": "0s"}, "budget_duration", "budget_duration"),
    ({"budget_duration": "forever"}, "budget_duration", "budget_duration"),
    ({"budget_duration": 30}, "budget_duration", "text such as"),
    ({"spend": 5}, "spend", "starts with spend 0"),
]


@pytest.mark.parametrize(("body", "param", "fragment"), EDGE_VALUES)
def test_edge_values_are_refused_and_the_list_still_answers(
    gateway: ThreadedGateway, body: dict[str, Any], param: str, fragment: str
) -> None:
    # json.dumps writes NaN/Infinity (which Python's json.loads reads) and escapes surrogates.
    raw = json.dumps(body)
    response = admin(
        gateway,
        "POST",
        "/key/generate",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert_refused(response, param, fragment)
    listed = admin(gateway, "GET", "/key/list")
    assert listed.status_code == 200, listed.text


def test_unreadable_and_oversized_bodies(gateway: ThreadedGateway) -> None:
    headers = {"content-type": "application/json"}
    huge_number = '{"max_budget": ' + "9" * 5000 + "}"  # over Python's 4300-digit int limit
    response = admin(gateway, "POST", "/key/generate", content=huge_number, headers=headers)
    assert_refused(response, None, "not valid JSON")
    deep = "[" * 10_000 + "]" * 10_000
    response = admin(gateway, "POST", "/key/generate", content=deep, headers=headers)
    assert_refused(response, None, "not valid JSON")
    big = json.dumps({"metadata": {"a": "x" * 300_000}})
    response = admin(gateway, "POST", "/key/generate", content=big, headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert admin(gateway, "GET", "/key/list").status_code == 200


def test_the_largest_accepted_values_are_stored_and_listed(gateway: ThreadedGateway) -> None:
    biggest = 2**31 - 1
    alias = unique("ä" * 180)
    body = {
        "key_alias": alias,
        "max_budget": 1e9,
        "rpm_limit": biggest,
        "max_parallel_requests": biggest,
        "tpm_limit": biggest,
        "duration": "100y",
        "budget_duration": "100y",
        "models": ["flux", *[f"fal/{i}-" + "x" * 280 + "*" for i in range(255)]],
        "metadata": {"note": "é" * 8000},
        "user_id": "u" * 200,
        "team_id": "t" * 200,
    }
    created = generate(gateway, **body)
    listed = admin(gateway, "GET", "/key/list", params={"key_alias": alias})
    assert listed.status_code == 200, listed.text
    [record] = listed.json()["keys"]
    assert record["token"] == created["token"]
    assert (record["max_budget"], record["rpm_limit"], record["user_id"]) == (
        1e9,
        biggest,
        "u" * 200,
    )
    assert len(record["models"]) == 256 and record["expires"].startswith("21")


# -- duplicate aliases, /key/update ---------------------------------------------------------------


def test_a_duplicate_alias_is_refused(gateway: ThreadedGateway) -> None:
    alias = unique("dup")
    first = generate(gateway, key_alias=alias)
    again = admin(gateway, "POST", "/key/generate", json={"key_alias": alias})
    assert_refused(again, "key_alias", alias)
    assert again.json()["error"]["code"] == "duplicate_key_alias"
    other = generate(gateway)
    renamed = admin(
        gateway, "POST", "/key/update", json={"key": other["token"], "key_alias": alias}
    )
    assert_refused(renamed, "key_alias", alias)
    deleted = admin(gateway, "POST", "/key/delete", json={"keys": [first["token"]]})
    assert deleted.status_code == 200
    assert generate(gateway, key_alias=alias)["key_alias"] == alias  # free once revoked


def test_update_changes_a_budget_and_an_rpm_limit(gateway: ThreadedGateway, database: str) -> None:
    alias = unique("upd")
    created = generate(gateway, key_alias=alias, max_budget=1.0, rpm_limit=5)
    response = admin(
        gateway,
        "POST",
        "/key/update",
        json={"key": created["key"], "max_budget": 2.5, "rpm_limit": 2, "user_id": "u-upd"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["key"] == created["token"] and created["key"] not in response.text
    assert (answer["max_budget"], answer["rpm_limit"], answer["user_id"]) == (2.5, 2, "u-upd")
    record = info(gateway, alias)
    assert (record["max_budget"], record["rpm_limit"]) == (2.5, 2)

    async def admissions(store: Store) -> list[str]:
        return [(await store.admit(created["token"], ticket())).verdict for _ in range(3)]

    assert run(with_store(database, admissions)) == ["ok", "ok", "rate_limited"]

    # Without "key", key_alias names the key; null clears a field (merge patch).
    cleared = admin(
        gateway, "POST", "/key/update", json={"key_alias": alias, "max_budget": None}
    ).json()
    assert cleared["max_budget"] is None and cleared["rpm_limit"] == 2
    assert_refused(
        admin(gateway, "POST", "/key/update", json={"key": alias, "rpm_limit": 2**31}),
        "rpm_limit",
        "2147483647",
    )
    assert_refused(
        admin(gateway, "POST", "/key/update", json={"key": alias, "models": ["nope"]}),
        "models",
        "not served",
    )
    missing = admin(gateway, "POST", "/key/update", json={"key": "sk-fb-nothing", "rpm_limit": 1})
    assert missing.status_code == 404 and "sk-fb-nothing" not in missing.text
    assert_refused(admin(gateway, "POST", "/key/update", json={"rpm_limit": 1}), "key", "key")


def test_update_needs_the_master_key(gateway: ThreadedGateway) -> None:
    created = generate(gateway)
    response = httpx.post(
        f"{gateway.url}/key/update",
        json={"key": created["key"], "max_budget": 100},
        headers={"Authorization": f"Bearer {created['key']}"},
    )
    assert response.status_code == 403
    assert info(gateway, created["token"])["max_budget"] is None


# -- the limits the fields set ------------------------------------------------------------------


def test_max_parallel_requests_is_enforced(gateway: ThreadedGateway, database: str) -> None:
    token = generate(gateway, max_parallel_requests=1)["token"]

    async def scenario(store: Store) -> list[Admission]:
        first_ticket = ticket()
        first = await store.admit(token, first_ticket)
        second = await store.admit(token, ticket())
        await store.settle([Settlement(first_ticket.id, token, 0, 0, None)])
        third = await store.admit(token, ticket())
        return [first, second, third]

    verdicts = [a.verdict for a in run(with_store(database, scenario))]
    assert verdicts == ["ok", "parallel_limited", "ok"]


def test_budget_duration_renews_the_budget(gateway: ThreadedGateway, database: str) -> None:
    alias = unique("period")
    token = generate(gateway, key_alias=alias, max_budget=0.02, budget_duration="1h")["token"]
    first_reset = info(gateway, alias)["budget_reset_at"]

    async def scenario(store: Store) -> list[str]:
        spent = ticket(20_000)
        verdicts: list[str] = [(await store.admit(token, spent)).verdict]
        await store.settle([Settlement(spent.id, token, 20_000, 20_000, None)])
        verdicts.append((await store.admit(token, ticket(20_000))).verdict)
        later = time.time() + 3600 + 5
        verdicts.append((await store.admit(token, ticket(20_000), now=later)).verdict)
        return verdicts

    assert run(with_store(database, scenario)) == ["ok", "over_budget", "ok"]
    record = info(gateway, alias)
    assert record["budget_reset_at"] > first_reset and record["spend"] == pytest.approx(0.02)


# -- /key/list ----------------------------------------------------------------------------------


def test_key_list_pages_and_filters(gateway: ThreadedGateway) -> None:
    user, team = unique("lister"), unique("listers")
    tokens = [
        generate(gateway, user_id=user, team_id=team, max_budget=budget)["token"]
        for budget in (3, 1, 2)
    ]
    generate(gateway, user_id=unique("other"), team_id=team)

    def listing(**params: Any) -> dict[str, Any]:
        response = admin(gateway, "GET", "/key/list", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = listing()
    assert set(everything) == {"keys", "total_count", "current_page", "total_pages"}
    assert everything["total_count"] == len(everything["keys"]) and everything["total_pages"] == 1
    mine = listing(user_id=user)
    assert [k["token"] for k in mine["keys"]] == tokens  # oldest first, as before
    assert listing(team_id=team)["total_count"] == 4
    page = listing(user_id=user, page=2, size=2)
    assert (page["total_count"], page["current_page"], page["total_pages"]) == (3, 2, 2)
    assert [k["token"] for k in page["keys"]] == tokens[2:]
    by_budget = listing(user_id=user, sort_by="max_budget", sort_order="asc")
    assert [k["max_budget"] for k in by_budget["keys"]] == [1, 2, 3]
    assert listing(key_hash=tokens[0])["keys"][0]["token"] == tokens[0]
    assert listing(user_id=user, page=9, size=10)["keys"] == []
    for params, param in (
        ({"size": 0}, "size"),
        ({"size": 101}, "size"),
        ({"page": "x"}, "page"),
        ({"sort_by": "password"}, "sort_by"),
        ({"status": "sleeping"}, "status"),
    ):
        response = admin(gateway, "GET", "/key/list", params=params)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    typo = admin(gateway, "GET", "/key/list", params={"user": user})
    assert_refused(typo, "user", "did you mean 'user_id'")


def test_owner_filters_for_spend_logs() -> None:
    assert owner_filters({"user_id": "u1", "team_id": "", "key": "x"}) == {"user_id": "u1"}
    with pytest.raises(GatewayError) as caught:
        owner_filters({"team_id": "a\x00b"})
    assert caught.value.status == 400 and caught.value.param == "team_id"


# -- the command line ---------------------------------------------------------------------------


def test_cli_keys_create_update_and_spend_per_user_and_team(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FALBIND_MASTER_KEY", MASTER_KEY)
    database = f"sqlite:///{tmp_path}/g.db"
    data = {
        "model_list": [{"model_name": "flux", "litellm_params": {"model": "fal-ai/flux/dev"}}],
        "general_settings": {
            "master_key": "os.environ/FALBIND_MASTER_KEY",
            "database_url": database,
        },
    }
    path = str(write_config(tmp_path / "c.yaml", data))
    create = ["keys", "create", "--config", path, "--format", "json"]
    assert (
        main(
            [
                *create,
                "--alias",
                "team-a",
                "--max-budget",
                "0.1",
                "--budget-duration",
                "30d",
                "--max-parallel-requests",
                "3",
                "--tpm-limit",
                "100",
                "--user-id",
                "u1",
                "--team-id",
                "t1",
            ]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert (created["max_budget"], created["budget_duration"], created["user_id"]) == (
        0.1,
        "30d",
        "u1",
    )
    assert (created["max_parallel_requests"], created["tpm_limit"], created["team_id"]) == (
        3,
        100,
        "t1",
    )
    assert main([*create, "--max-budget", "nan"]) == 2
    assert "max_budget" in capsys.readouterr().err
    assert main([*create, "--models", "nope"]) == 2
    assert "not served" in capsys.readouterr().err
    assert main([*create, "--alias", "team-a"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main([*create, "--alias", "team-b", "--user-id", "u2", "--team-id", "t2"]) == 0
    second = json.loads(capsys.readouterr().out)

    update = ["keys", "update", "team-a", "--config", path, "--format", "json"]
    assert main([*update, "--rpm-limit", "9", "--clear", "max_budget"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert (updated["rpm_limit"], updated["max_budget"], updated["user_id"]) == (9, None, "u1")
    assert main([*update, "--rpm-limit", "0"]) == 2
    assert "rpm_limit" in capsys.readouterr().err
    assert main(["keys", "update", "nobody", "--config", path, "--rpm-limit", "1"]) == 2
    assert "no such key" in capsys.readouterr().err
    assert main(["keys", "list", "--config", path]) == 0
    listed = capsys.readouterr().out
    assert "alias=team-a user=u1 team=t1" in listed and "parallel=3" in listed

    async def log(store: Store) -> None:
        for record, cost in ((created, 10_000), (second, 20_000)):
            await store.log(
                LogEntry(
                    route="/v1/images/generations",
                    status=200,
                    latency_ms=1.0,
                    token=record["token"],
                    key_name=record["key_name"],
                    model_name="flux",
                    images=1,
                    cost_micros=cost,
                    user_id=record["user_id"],
                    team_id=record["team_id"],
                )
            )

    run(with_store(database, log))
    spend = ["spend", "--config", path, "--format", "json"]
    assert main([*spend, "--user", "u1"]) == 0
    assert [(r["key_name"], r["spend"]) for r in json.loads(capsys.readouterr().out)] == [
        (created["key_name"], 0.01)
    ]
    assert main([*spend, "--team", "t2"]) == 0
    assert [r["spend"] for r in json.loads(capsys.readouterr().out)] == [0.02]
    assert main([*spend, "--user", "u1", "--team", "t2"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main([*spend, "--user", "a\x00b"]) == 2


# -- PostgreSQL: the bounds fit its columns -------------------------------------------------------


def test_the_largest_values_fit_postgresql(fal: FakeFalServer) -> None:
    """The bounds above are PostgreSQL's (32-bit limits, 200-character texts, no NUL): the
    largest accepted key is stored, listed, updated and admitted there."""
    with PostgresCluster() as postgres:
        data = config_data(fal, {"flux": "fal-ai/flux/dev"}, database_url=postgres.url())
        with ThreadedGateway(build_config(data)) as gateway:
            biggest = 2**31 - 1
            body = {
                "key_alias": "ä" * 200,
                "max_budget": 1e9,
                "rpm_limit": biggest,
                "max_parallel_requests": biggest,
                "tpm_limit": biggest,
                "duration": "100y",
                "budget_duration": "100y",
                "models": ["flux", "fal/" + "x" * 295 + "*"],
                "metadata": {"note": "é\x00" * 2000},
                "user_id": "ü" * 200,
                "team_id": "t" * 200,
            }
            created = generate(gateway, **body)
            listed = admin(gateway, "GET", "/key/list")
            assert listed.status_code == 200, listed.text
            assert [k["key_alias"] for k in listed.json()["keys"]] == ["ä" * 200]
            again = admin(gateway, "POST", "/key/generate", json={"key_alias": "ä" * 200})
            assert_refused(again, "key_alias", "exists already")
            updated = admin(
                gateway,
                "POST",
                "/key/update",
                json={"key": created["token"], "rpm_limit": 1, "spend": 1e9, "team_id": None},
            )
            assert updated.status_code == 200, updated.text
            assert (updated.json()["spend"], updated.json()["team_id"]) == (1e9, None)

            async def admit(store: Store) -> str:
                return (await store.admit(created["token"], ticket(0))).verdict

            assert run(with_store(gateway.config.database_url, admit)) == "ok"


def test_a_key_pasted_into_a_wrong_field_is_not_echoed(gateway: ThreadedGateway) -> None:
    created = generate(gateway)
    for body in ({"max_budget": created["key"]}, {"duration": created["key"]}):
        response = admin(gateway, "POST", "/key/generate", json=body)
        assert response.status_code == 400 and created["key"] not in response.text
