"""The gateway's configuration: LiteLLM Proxy's ``config.yaml`` format, checked strictly.

::

    model_list:
      - model_name: flux-ultra                      # the name clients send as `model`
        litellm_params:
          model: fal_ai/fal-ai/flux-pro/v1.1-ultra  # fal_ai/<id>, a bare id, or an alias
          api_key: os.environ/FAL_KEY               # any os.environ/NAME (default: FAL_KEY...)
          api_base: https://fal.run                 # optional: fal's sync host for this entry
          safety_tolerance: "2"                     # any other key: a default model parameter
        model_info: {mode: image_generation, output_cost_per_image: 0.06}
      - model_name: fal/*                           # wildcard: fal/<any bound image model>
        litellm_params: {model: fal_ai/*}
    general_settings:
      master_key: os.environ/FALBIND_MASTER_KEY
      database_url: sqlite:///falbind.db            # or postgresql://user:pw@host/db
    falbind_settings: {run_url: ..., queue_url: ..., storage_url: ..., use_queue: true}

Everything is checked when the gateway starts, and every problem is reported at once in one
line (:class:`ConfigError`): keys falbind does not know (with a did-you-mean), an entry whose
model is not bound (or returns no images), a default parameter the model does not take, a
missing environment variable, a weak master key. Secrets (the master key, fal keys, the
database password) are kept out of every ``repr``.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["ConfigError", "FalTarget", "GatewayConfig", "ModelEntry", "load_config", "parse_config"]

ENV_PREFIX: Final = "os.environ/"
LITELLM_PREFIX: Final = "fal_ai/"
DEFAULT_RUN_URL: Final = "https://fal.run"
DEFAULT_QUEUE_URL: Final = "https://queue.fal.run"
DEFAULT_STORAGE_URL: Final = "https://rest.alpha.fal.ai"
DEFAULT_API_URL: Final = "https://api.fal.ai"
"""fal's platform API (``/v1/models/pricing``): where unconfigured prices are read from."""
DEFAULT_MAX_IMAGES: Final = 10
MIN_MASTER_KEY_LENGTH: Final = 16
WEAK_MASTER_KEYS: Final = frozenset(
    {
        "sk-1234",
        "sk-12345",
        "sk-123456",
        "sk-1234567890",
        "sk-master",
        "sk-master-key",
        "sk-admin",
        "sk-test",
        "sk-password",
        "sk-changeme",
        "sk-my-master-key",
        "sk-litellm",
        "changeme",
        "password",
    }
)
"""Master keys from public examples and docs (LiteLLM's ``sk-1234`` first): refused."""

TOP_LEVEL_KEYS: Final = ("model_list", "general_settings", "falbind_settings", "litellm_settings")
ENTRY_KEYS: Final = ("model_name", "litellm_params", "model_info")
LITELLM_PARAM_KEYS: Final = ("model", "api_key", "api_base", "timeout", "strict_size", "use_queue")
MODEL_INFO_KEYS: Final = ("mode", "output_cost_per_image", "id", "base_model", "description")
GENERAL_KEYS: Final = ("master_key", "database_url")
FALBIND_KEYS: Final = (
    "run_url",
    "queue_url",
    "storage_url",
    "fal_key",
    "use_queue",
    "strict_size",
    "request_timeout",
    "max_body_mb",
    "api_url",
    "max_images_per_request",
)
LITELLM_SETTINGS_KEYS: Final = ("drop_params", "request_timeout", "set_verbose")
"""Accepted so a LiteLLM config loads unchanged; ``drop_params`` has no effect (falbind
validates every parameter instead of dropping any)."""
_KEY_GENERATION_HINT: Final = (
    "set a long random one from the environment: master_key: os.environ/FALBIND_MASTER_KEY, "
    "with FALBIND_MASTER_KEY=sk-$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
)


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one line naming every problem."""


@dataclass(frozen=True, slots=True)
class FalTarget:
    """Where and as whom one model entry calls fal; entries with equal targets share a client."""

    run_url: str
    queue_url: str
    storage_url: str
    key: str | None = field(default=None, repr=False)
    """The fal key (``None``: the client reads FAL_KEY... itself). Never shown."""
    api_url: str = DEFAULT_API_URL
    """fal's platform API (pricing) for this target."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One ``model_list`` entry."""

    model_name: str
    target_model: str
    """``litellm_params.model`` as written (``fal_ai/fal-ai/flux/dev``, ``fal_ai/*``)."""
    endpoint_id: str | None
    """The bound endpoint (``None`` for a wildcard entry: resolved per request)."""
    fal: FalTarget
    defaults: Mapping[str, Any]
    """Default model parameters (the request's own win)."""
    strict_size: bool
    use_queue: bool
    timeout: float | None
    cost_per_image: float | None
    mode: str | None

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.model_name

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.model_name) if self.is_wildcard else False

    def target_for(self, name: str) -> str:
        """The fal model a request for ``name`` runs: the wildcard's match put into the target."""
        if not self.is_wildcard or "*" not in self.target_model:
            return self.target_model
        prefix, _, suffix = self.model_name.partition("*")
        matched = name[len(prefix) : len(name) - len(suffix) if suffix else None]
        return self.target_model.replace("*", matched, 1)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """A checked configuration. Build it with :func:`load_config` or :func:`parse_config`."""

    models: tuple[ModelEntry, ...]
    master_key: str = field(repr=False)
    database_url: str = field(repr=False)
    """A SQLAlchemy URL (``sqlite:///...`` or ``postgresql+asyncpg://...``)."""
    source: str = "<config>"
    max_body_bytes: int = 25 * 1024 * 1024
    notes: tuple[str, ...] = ()
    """Things worth telling the operator at start (e.g. ignored LiteLLM settings)."""
    json_logs: bool = False
    """Log lines as JSON objects (LiteLLM's ``litellm_settings.json_logs``)."""
    max_images: int = DEFAULT_MAX_IMAGES
    """The most images one request may produce (OpenAI's ``n`` or the model's own count
    field, its default included): ``falbind_settings.max_images_per_request``."""

    def entry(self, name: str) -> ModelEntry | None:
        """The entry serving model ``name``: an exact ``model_name`` first, then wildcards."""
        for entry in self.models:
            if not entry.is_wildcard and entry.model_name == name:
                return entry
        return next((entry for entry in self.models if entry.matches(name)), None)

    def public_names(self) -> list[str]:
        """The configured model names without wildcards (what ``/v1/models`` lists)."""
        return list(dict.fromkeys(e.model_name for e in self.models if not e.is_wildcard))

    def with_fal_urls(
        self, run_url: str, queue_url: str, storage_url: str, api_url: str | None = None
    ) -> GatewayConfig:
        """The same config with every entry pointed at other fal hosts (``--fake-fal``)."""
        from dataclasses import replace

        models = tuple(
            replace(
                entry,
                fal=FalTarget(
                    run_url, queue_url, storage_url, entry.fal.key, api_url or entry.fal.api_url
                ),
            )
            for entry in self.models
        )
        return replace(self, models=models)


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read and check the YAML file at ``path``; raises :class:`ConfigError`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    return parse_config(data, source=source, base_dir=Path(path).parent, environ=environ)


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Check an already-parsed config mapping; raises :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the config must be a mapping with a model_list")
    _unknown_keys(data, TOP_LEVEL_KEYS, "", problems)
    general = _section(data, "general_settings", problems)
    settings = _section(data, "falbind_settings", problems)
    litellm_settings = _section(data, "litellm_settings", problems)
    _unknown_keys(general, GENERAL_KEYS, "general_settings.", problems)
    _unknown_keys(settings, FALBIND_KEYS, "falbind_settings.", problems)
    _unknown_keys(litellm_settings, LITELLM_SETTINGS_KEYS, "litellm_settings.", problems)
    notes: list[str] = []
    if litellm_settings.get("drop_params"):
        notes.append(
            "litellm_settings.drop_params has no effect: falbind refuses unknown parameters "
            "with a 400 instead of dropping them"
        )

    master_key = _master_key(general, env, problems)
    database_url = _database_url(general.get("database_url"), env, base_dir, problems)
    fal_key = _env_value(settings.get("fal_key"), "falbind_settings.fal_key", env, problems)
    base = FalTarget(
        run_url=str(settings.get("run_url") or DEFAULT_RUN_URL),
        queue_url=str(settings.get("queue_url") or DEFAULT_QUEUE_URL),
        storage_url=str(settings.get("storage_url") or DEFAULT_STORAGE_URL),
        key=fal_key,
        api_url=str(settings.get("api_url") or DEFAULT_API_URL),
    )
    timeout = settings.get("request_timeout", litellm_settings.get("request_timeout"))
    defaults = {
        "use_queue": bool(settings.get("use_queue", True)),
        "strict_size": bool(settings.get("strict_size", False)),
        "timeout": float(timeout) if isinstance(timeout, int | float) else None,
    }
    raw_models = data.get("model_list")
    if not isinstance(raw_models, list) or not raw_models:
        problems.append("model_list must be a non-empty list of {model_name, litellm_params}")
        raw_models = []
    models = [
        entry
        for index, raw in enumerate(raw_models)
        if (entry := _model_entry(index, raw, base, defaults, env, problems)) is not None
    ]
    names = [m.model_name for m in models]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"model_name {name!r} is configured more than once")
    max_body_mb = settings.get("max_body_mb", 25)
    max_images = settings.get("max_images_per_request", DEFAULT_MAX_IMAGES)
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        problems.append("falbind_settings.max_images_per_request must be an integer >= 1")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    assert master_key is not None and database_url is not None
    return GatewayConfig(
        models=tuple(models),
        master_key=master_key,
        database_url=database_url,
        source=source,
        max_body_bytes=int(float(max_body_mb) * 1024 * 1024),
        notes=tuple(notes),
        max_images=max_images,
    )


def _section(data: Mapping[str, Any], name: str, problems: list[str]) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{name} must be a mapping")
        return {}
    return value


def _unknown_keys(
    mapping: Mapping[str, Any], known: tuple[str, ...], prefix: str, problems: list[str]
) -> None:
    for key in mapping:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(f"unknown key {prefix}{key} ({hint}known: {', '.join(known)})")


def _env_value(value: Any, where: str, env: Mapping[str, str], problems: list[str]) -> str | None:
    """``value``, or the environment variable it names as ``os.environ/NAME``."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where} must be a string")
        return None
    if not value.startswith(ENV_PREFIX):
        return value
    name = value.removeprefix(ENV_PREFIX)
    found = env.get(name)
    if not found:
        problems.append(f"{where}: environment variable {name} is not set")
        return None
    return found


def _master_key(
    general: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> str | None:
    raw = general.get("master_key")
    if raw is None:
        problems.append(f"general_settings.master_key is required; {_KEY_GENERATION_HINT}")
        return None
    key = _env_value(raw, "general_settings.master_key", env, problems)
    if key is None:
        return None
    if key.strip().lower() in WEAK_MASTER_KEYS:
        problems.append(
            f"general_settings.master_key is a publicly known example key; {_KEY_GENERATION_HINT}"
        )
        return None
    if len(key) < MIN_MASTER_KEY_LENGTH:
        problems.append(
            f"general_settings.master_key is shorter than {MIN_MASTER_KEY_LENGTH} characters; "
            f"{_KEY_GENERATION_HINT}"
        )
        return None
    return key


def _database_url(
    raw: Any, env: Mapping[str, str], base_dir: Path | None, problems: list[str]
) -> str | None:
    """The SQLAlchemy URL: SQLite by default, PostgreSQL through asyncpg."""
    if raw is None:
        path = (base_dir or Path.cwd()) / "falbind.db"
        return f"sqlite:///{path}"
    url = _env_value(raw, "general_settings.database_url", env, problems)
    if url is None:
        return None
    for prefix, driver in (
        ("postgresql+asyncpg://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite+aiosqlite://", "sqlite://"),  # LiteLLM-era URLs: same file, same driver
        ("sqlite+pysqlite://", "sqlite://"),
        ("sqlite://", "sqlite://"),
    ):
        if url.startswith(prefix):
            rest = url.removeprefix(prefix)
            if driver.startswith("sqlite") and base_dir is not None and rest.startswith("/"):
                relative = rest[1:]
                if relative and not relative.startswith("/") and relative != ":memory:":
                    rest = "/" + str((base_dir / relative).resolve())
            return driver + rest
    problems.append(
        "general_settings.database_url must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB"
    )
    return None


def _model_entry(
    index: int,
    raw: Any,
    base: FalTarget,
    defaults: Mapping[str, Any],
    env: Mapping[str, str],
    problems: list[str],
) -> ModelEntry | None:
    where = f"model_list[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be a mapping with model_name and litellm_params")
        return None
    _unknown_keys(raw, ENTRY_KEYS, f"{where}.", problems)
    name = raw.get("model_name")
    params = raw.get("litellm_params")
    info = raw.get("model_info") or {}
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.model_name must be a non-empty string")
        return None
    where = f"{where} ({name})"
    if not isinstance(params, Mapping) or not isinstance(params.get("model"), str):
        problems.append(f"{where}: litellm_params.model is required (e.g. fal_ai/fal-ai/flux/dev)")
        return None
    if not isinstance(info, Mapping):
        problems.append(f"{where}: model_info must be a mapping")
        info = {}
    _unknown_keys(info, MODEL_INFO_KEYS, f"{where}: model_info.", problems)
    target = str(params["model"])
    model_defaults = {k: v for k, v in params.items() if k not in LITELLM_PARAM_KEYS}
    key = _env_value(params.get("api_key"), f"{where}: litellm_params.api_key", env, problems)
    api_base = params.get("api_base")
    fal = FalTarget(
        run_url=str(api_base) if api_base else base.run_url,
        queue_url=base.queue_url,
        storage_url=base.storage_url,
        key=key if key is not None else base.key,
        api_url=base.api_url,
    )
    cost = info.get("output_cost_per_image")
    if cost is not None and (not isinstance(cost, int | float) or cost < 0):
        problems.append(f"{where}: model_info.output_cost_per_image must be a number >= 0")
        cost = None
    timeout = params.get("timeout", defaults["timeout"])
    entry = ModelEntry(
        model_name=name,
        target_model=target,
        endpoint_id=None,
        fal=fal,
        defaults=model_defaults,
        strict_size=bool(params.get("strict_size", defaults["strict_size"])),
        use_queue=bool(params.get("use_queue", defaults["use_queue"])),
        timeout=float(timeout) if isinstance(timeout, int | float) else None,
        cost_per_image=float(cost) if cost is not None else None,
        mode=str(info["mode"]) if info.get("mode") is not None else None,
    )
    if entry.is_wildcard:
        if model_defaults:
            problems.append(
                f"{where}: a wildcard entry cannot set model parameters "
                f"({', '.join(model_defaults)}): they differ per model"
            )
        return entry
    endpoint_id = _check_endpoint(target, model_defaults, where, problems)
    if endpoint_id is None:
        return None
    from dataclasses import replace

    return replace(entry, endpoint_id=endpoint_id)


def _check_endpoint(
    target: str, model_defaults: Mapping[str, Any], where: str, problems: list[str]
) -> str | None:
    """The bound endpoint behind ``target``; its default parameters validated."""
    from pydantic import ValidationError

    from falbind import ENDPOINTS, UnknownEndpointError
    from falbind.images.generate import resolve_model

    try:
        endpoint_id = resolve_model(target)
    except UnknownEndpointError as exc:
        suggestions = f" (did you mean {', '.join(exc.suggestions)}?)" if exc.suggestions else ""
        problems.append(f"{where}: model {target!r} is not a bound fal endpoint{suggestions}")
        return None
    except ValidationError as exc:  # falbind's InvalidArgumentsError: pydantic's multi-line text
        problems.append(f"{where}: {'; '.join(str(e['msg']) for e in exc.errors())}")
        return None
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if model_defaults:
        model = ENDPOINTS[endpoint_id].input_model
        try:
            model.model_validate(dict(model_defaults))
        except ValidationError as exc:
            bad = [e for e in exc.errors() if e["loc"] and e["loc"][0] in model_defaults]
            for error in bad:
                field_name = ".".join(str(p) for p in error["loc"])
                message = str(error["msg"]).split(" (pass it through")[0]
                problems.append(f"{where}: litellm_params.{field_name}: {message}")
            if bad:
                return None
    return endpoint_id
