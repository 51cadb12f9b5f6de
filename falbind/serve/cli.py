"""``falbind serve``, ``falbind keys create|list|revoke`` and ``falbind spend``.

Every failure prints one line starting with ``falbind:`` and returns a non-zero status. The
``keys`` and ``spend`` commands work on the gateway's database directly (found through the same
config file), so they need no running gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from .config import ConfigError, GatewayConfig, load_config
from .logs import log_config
from .store import Store, StoreError

__all__ = ["app_from_environment", "keys_command", "serve_command", "spend_command"]

Echo = Callable[[str], None]
CONFIG_ENV: Final = "FALBIND_SERVE_CONFIG"
FAL_URLS_ENV: Final = "FALBIND_SERVE_FAL_URLS"
"""How ``--workers N`` hands the config path (and ``--fake-fal``'s URLs) to uvicorn's worker
processes, which import :func:`app_from_environment`. Neither is a secret."""
FAL_KEY_VARIABLES: Final = ("FAL_KEY", "FAL_KEY_ID", "FAL_AI_API_KEY")


def _fail(message: str) -> int:
    print(f"falbind: {message}", file=sys.stderr, flush=True)
    return 2


def _load(path: str) -> GatewayConfig:
    return load_config(path)


def _missing_fal_key(config: GatewayConfig) -> list[str]:
    """Entries that have no fal key: neither ``api_key`` nor FAL_KEY... in the environment."""
    if any(os.environ.get(name) for name in FAL_KEY_VARIABLES):
        return []
    return [entry.model_name for entry in config.models if entry.fal.key is None]


async def _check_database(config: GatewayConfig) -> None:
    store = Store(config.database_url)
    try:
        await store.setup()
    finally:
        await store.close()


def app_from_environment() -> Any:
    """The app for a uvicorn worker process (``--workers N``)."""
    from .app import create_app

    config = _load(os.environ[CONFIG_ENV])
    urls = os.environ.get(FAL_URLS_ENV)
    if urls:
        run_url, queue_url, storage_url, api_url = json.loads(urls)
        config = config.with_fal_urls(run_url, queue_url, storage_url, api_url)
    return create_app(config)


def serve_command(
    config_path: str,
    *,
    host: str,
    port: int,
    workers: int,
    fake_fal: bool,
    echo: Echo,
) -> int:
    """``falbind serve``: check everything, then serve until interrupted."""
    import uvicorn

    from .app import create_app
    from .metrics import prepare_multiprocess

    try:
        config = _load(config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    if not fake_fal and (missing := _missing_fal_key(config)):
        return _fail(
            f"{config.source}: no fal key for {', '.join(missing)}: set FAL_KEY in the "
            "environment or litellm_params.api_key: os.environ/NAME (or use --fake-fal)"
        )
    try:
        asyncio.run(_check_database(config))
    except StoreError as exc:
        return _fail(f"{config.source}: {exc}")
    logging_config = log_config(json_logs=config.json_logs)
    if config.json_logs:
        # Every line JSON, the start-up lines too: they go through the same configuration
        # uvicorn applies below (and in each worker).
        logging.config.dictConfig(logging_config)
        echo = logging.getLogger("falbind.serve").info
    for note in config.notes:
        echo(f"note: {note}")
    fake = None
    if fake_fal:
        from falbind.testing import FakeFalServer

        fake = FakeFalServer().start()
        config = config.with_fal_urls(fake.run_url, fake.queue_url, fake.storage_url, fake.api_url)
        echo(f"fake fal server on {fake.url} (no fal key needed, nothing is billed)")
    names = ", ".join(config.public_names()) or "(wildcards only)"
    echo(f"falbind serve: models {names}")
    echo(f"listening on http://{host}:{port} (database: {config.database_url.split(':', 1)[0]})")
    try:
        if workers > 1:
            os.environ[CONFIG_ENV] = os.path.abspath(config_path)
            if fake is not None:
                os.environ[FAL_URLS_ENV] = json.dumps(
                    [fake.run_url, fake.queue_url, fake.storage_url, fake.api_url]
                )
            # Before uvicorn spawns the workers: they inherit the metrics folder (metrics.py).
            cleanup_metrics = prepare_multiprocess(workers)
            try:
                uvicorn.run(
                    "falbind.serve.cli:app_from_environment",
                    factory=True,
                    host=host,
                    port=port,
                    workers=workers,
                    log_config=logging_config,
                )
            finally:
                if cleanup_metrics is not None:
                    cleanup_metrics()
        else:
            uvicorn.run(create_app(config), host=host, port=port, log_config=logging_config)
    finally:
        if fake is not None:
            fake.stop()
    return 0


def _run(config_path: str, work: Callable[[Store], Any]) -> Any:
    config = _load(config_path)

    async def main() -> Any:
        store = Store(config.database_url)
        try:
            await store.setup()
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def keys_command(
    action: str,
    config_path: str,
    *,
    models: Sequence[str] = (),
    max_budget: float | str | None = None,
    rpm_limit: int | None = None,
    duration: str | None = None,
    alias: str | None = None,
    metadata: str | None = None,
    user_id: str | None = None,
    team_id: str | None = None,
    budget_duration: str | None = None,
    max_parallel_requests: int | None = None,
    tpm_limit: int | None = None,
    spend: float | str | None = None,
    clear: Sequence[str] = (),
    references: Sequence[str] = (),
    include_revoked: bool = False,
    output_format: str = "text",
    echo: Echo,
) -> int:
    """``falbind keys create|update|list|revoke``.

    ``create`` and ``update`` build the body of ``/key/generate`` or ``/key/update`` from the
    options and check it with the same functions as the HTTP routes (:mod:`.keys`), so the
    command line takes and refuses exactly what the API does. ``update`` changes only the
    options given; ``clear`` names fields to reset (no budget, no limit, no expiry, ...).
    """
    from .keys import (
        KeyFieldError,
        live_keys,
        parse_key_spec,
        parse_key_update,
        unknown_models,
    )

    try:
        if action in ("create", "update"):
            fields: dict[str, Any] = {
                "max_budget": max_budget,
                "rpm_limit": rpm_limit,
                "duration": duration,
                "key_alias": alias,
                "metadata": json.loads(metadata) if metadata else None,
                "user_id": user_id,
                "team_id": team_id,
                "budget_duration": budget_duration,
                "max_parallel_requests": max_parallel_requests,
                "tpm_limit": tpm_limit,
                "spend": spend,
            }
            body = {name: value for name, value in fields.items() if value is not None}
            if models:
                body["models"] = list(models)
            for name in clear:
                if name in body:
                    return _fail(f"--clear {name} and a value for {name}: choose one")
                body[name] = None
            config = _load(config_path)
            if unknown := unknown_models(config, body.get("models") or ()):
                return _fail(
                    f"models not served by this gateway: {', '.join(unknown)} "
                    f"(served: {', '.join(config.public_names())})"
                )
            if action == "create":
                spec = parse_key_spec(body)

                async def create(store: Store) -> Any:
                    return await store.create_key(**spec)

                key, record = _run(config_path, create)
                if output_format == "json":
                    echo(json.dumps({"key": key, **record.info()}))
                else:
                    echo(key)
                    echo(f"  {record.key_name} (shown once: store it now; only its digest is kept)")
                return 0
            if len(references) != 1:
                return _fail("keys update takes one key (the key, its token or its alias)")
            change = parse_key_update({"key": references[0], **body})

            async def update(store: Store) -> Any:
                found = await live_keys(store, change.reference)
                if len(found) != 1:
                    return len(found)
                return await store.update_key(found[0].token, change.values)

            updated = _run(config_path, update)
            if isinstance(updated, int):
                return _fail(
                    "no such key" if updated == 0 else f"{updated} keys match; use a token"
                )
            if output_format == "json":
                echo(json.dumps(updated.info()))
            else:
                echo(f"updated {updated.display_name}")
            return 0
        if action == "list":

            async def listing(store: Store) -> Any:
                return await store.list_keys(include_revoked=include_revoked)

            records = _run(config_path, listing)
            if output_format == "json":
                echo(json.dumps([r.info() for r in records]))
                return 0
            if not records:
                echo("no keys")
            for r in records:
                limits = [
                    f"models={','.join(r.models) or '*'}",
                    f"spend={r.spend:.4f}"
                    + (f"/{r.max_budget}" if r.max_budget is not None else "")
                    + (f" per {r.budget_duration}" if r.budget_duration else ""),
                    f"rpm={r.rpm_limit or '-'}",
                    f"parallel={r.max_parallel_requests or '-'}",
                ]
                owners = "".join(
                    f" {label}={value}"
                    for label, value in (("user", r.user_id), ("team", r.team_id))
                    if value
                )
                state = " revoked" if r.revoked_at is not None else ""
                alias_text = f" alias={r.key_alias}" if r.key_alias else ""
                echo(f"{r.key_name}{alias_text}{owners} {' '.join(limits)}{state}")
            return 0
        # revoke

        async def revoke(store: Store) -> tuple[int, list[str]]:
            tokens, missing = await store.tokens_for(references)
            if missing:
                return -1, missing
            return await store.revoke(tokens), []

        count, missing = _run(config_path, revoke)
        if count < 0:
            return _fail(f"no such key: {', '.join(missing)}")
        echo(f"revoked {count} key(s)")
        return 0
    except KeyFieldError as exc:
        return _fail(f"{exc.field}: {exc}")
    except (ConfigError, StoreError, ValueError) as exc:
        return _fail(str(exc))


def spend_command(
    config_path: str,
    *,
    key: str | None,
    since: str | None,
    output_format: str,
    echo: Echo,
    user_id: str | None = None,
    team_id: str | None = None,
) -> int:
    """``falbind spend``: per-key and per-model totals from the request log, optionally for
    one key, one user (``user_id``) and/or one team (``team_id``)."""
    from .app import parse_since
    from .errors import GatewayError
    from .keys import owner_filters

    try:
        since_stamp = parse_since(since)
        owners = owner_filters(
            {name: value for name, value in (("user_id", user_id), ("team_id", team_id)) if value}
        )
    except GatewayError as exc:
        return _fail(exc.message)

    async def totals(store: Store) -> Any:
        token = None
        if key is not None:
            tokens = await store.find_tokens(key)
            if not tokens:
                return None
            token = tokens[0]
        return await store.spend_totals(token=token, since=since_stamp, **owners)

    try:
        rows = _run(config_path, totals)
    except (ConfigError, StoreError) as exc:
        return _fail(str(exc))
    if rows is None:
        return _fail("no such key")
    if output_format == "json":
        echo(
            json.dumps(
                [
                    {
                        "key_name": r.key_name,
                        "model": r.model_name,
                        "requests": r.requests,
                        "images": r.images,
                        "spend": r.cost,
                    }
                    for r in rows
                ]
            )
        )
        return 0
    echo(f"{'key':<22} {'model':<28} {'requests':>8} {'images':>7} {'spend':>10}")
    per_key: dict[str, float] = {}
    for r in rows:
        echo(f"{r.key_name:<22} {r.model_name:<28} {r.requests:>8} {r.images:>7} {r.cost:>10.4f}")
        per_key[r.key_name] = per_key.get(r.key_name, 0.0) + r.cost
    for name, cost in per_key.items():
        echo(f"total {name:<44} {'':>8} {'':>7} {cost:>10.4f}")
    return 0
