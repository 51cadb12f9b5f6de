"""The gateway's configuration: LiteLLM Proxy's ``config.yaml`` format, checked strictly.

::

    model_list:
      - model_name: flux-ultra                      # the name clients send as `model`
        litellm_params:
          model: fal_ai/fal-ai/flux-pro/v1.1-ultra  # fal_ai/<id>, a bare id, or an alias
          api_key: os.environ/FAL_KEY               # any os.environ/NAME (default: FAL_KEY...)
          api_base: https://fal.run                 # optional: ALL of this entry's traffic goes here
          rpm: 60                                   # optional: this deployment's requests/minute
          safety_tolerance: "2"                     # any other key: a default model parameter
        model_info: {mode: image_generation, output_cost_per_image: 0.06}
      - model_name: flux-ultra                      # the same name again: another deployment
        litellm_params: {model: fal_ai/fal-ai/flux-pro/v1.1-ultra, api_key: os.environ/FAL_KEY_2}
      - model_name: fal/*                           # wildcard: fal/<any bound image model>
        litellm_params: {model: fal_ai/*}
    general_settings:
      master_key: os.environ/FALBIND_MASTER_KEY
      database_url: sqlite:///falbind.db            # or postgresql://user:pw@host/db
    router_settings: {num_retries: 2}
    litellm_settings: {json_logs: true}
    environment_variables: {FAL_AI_API_KEY: os.environ/MY_FAL_KEY}
    falbind_settings: {run_url: ..., queue_url: ..., storage_url: ..., use_queue: true}

Everything is checked when the gateway starts, and every problem is reported at once in one
line (:class:`ConfigError`). A config LiteLLM Proxy accepts starts here too: every key LiteLLM
knows (the lists below are read from its source) is accepted, and the ones falbind does not
apply are named once, in one note (:attr:`GatewayConfig.notes`). Refused, with a did-you-mean:
a key LiteLLM would not know either, an entry whose model is not bound (or returns no images), a
default parameter the model does not take, a missing environment variable, a weak master key.
Secrets (the master key, fal keys, the database password) are kept out of every ``repr``, and
``os.environ`` is never written (``environment_variables`` are resolved, not exported).

**``api_base`` carries all of its entry's traffic.** In LiteLLM an entry's ``api_base`` is fal's
sync host (LiteLLM POSTs ``{api_base}/{model}`` and reads the result there), so such an entry
runs in sync mode against it, its edit images travel inline (``data:`` URIs, never to fal
storage) and no other host of that entry is used; unless the entry also names ``queue_url``
(a falbind key in ``litellm_params``), when it runs through the queue at that URL. LiteLLM's
environment names are honoured the same way: ``FAL_AI_API_BASE`` (its fal provider's base URL,
for every entry without ``api_base``) and ``FAL_AI_QUEUE_API_BASE`` (its fal queue base).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "ConfigError",
    "FalTarget",
    "GatewayConfig",
    "ModelEntry",
    "choose_deployment",
    "load_config",
    "order_deployments",
    "parse_config",
]

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

LITELLM_VERSION: Final = "1.110.2"
"""The LiteLLM whose source the ``LITELLM_*`` key lists at the end of this module were read
from (``tests/test_serve_litellm_config.py`` reads them again from the installed one)."""
FAL_AI_API_BASE_ENV: Final = "FAL_AI_API_BASE"
"""LiteLLM's fal base URL (llms/fal_ai/image_generation/transformation.py, image_edit/...:
``api_base or get_secret_str("FAL_AI_API_BASE") or "https://fal.run"``)."""
FAL_AI_QUEUE_API_BASE_ENV: Final = "FAL_AI_QUEUE_API_BASE"
"""LiteLLM's fal queue base URL (llms/fal_ai/cost_calculator.py ``fal_ai_queue_base``)."""
FAL_KEY_ENVS: Final = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY")
DEFAULT_NUM_RETRIES: Final = 2
"""LiteLLM's router: ``router_settings.num_retries``, else ``litellm.num_retries``
(``litellm_settings.num_retries``), else 2 (router_rust/core.py, 1.110.2)."""
SIMPLE_SHUFFLE: Final = "simple-shuffle"
"""LiteLLM's default ``routing_strategy`` (types/router.py RouterConfig), the one falbind runs."""

# What falbind reads and applies, per section; every other key LiteLLM knows (LITELLM_* below)
# is accepted and named in the start-up note; any other key is refused with a did-you-mean.
TOP_LEVEL_KEYS: Final = (
    "model_list",
    "general_settings",
    "litellm_settings",
    "router_settings",
    "environment_variables",
    "falbind_settings",
)
ENTRY_KEYS: Final = ("model_name", "litellm_params", "model_info", "blocked")
LITELLM_PARAM_KEYS: Final = (
    "model",
    "api_key",
    "api_base",
    "timeout",
    "rpm",
    "tpm",
    "max_retries",
    "stream_timeout",
    "weight",
    "order",
    "output_cost_per_image",
)
"""``litellm_params`` keys falbind reads (``tpm`` and ``stream_timeout`` are kept on the entry
but not applied to images; they are named in the note)."""
FALBIND_PARAM_KEYS: Final = ("strict_size", "use_queue", "queue_url")
"""falbind's own ``litellm_params`` keys (LiteLLM passes unknown keys to the model; so does
falbind, for every key that is neither LiteLLM's nor these)."""
MODEL_INFO_KEYS: Final = (
    "mode",
    "output_cost_per_image",
    "id",
    "order",
    "base_model",
    "description",
)
"""``model_info`` keys falbind reads (``order``: LiteLLM reads it there too, utils.py
``get_deployment_order``, though ModelInfo does not declare it)."""
GENERAL_KEYS: Final = ("master_key", "database_url")
ROUTER_KEYS: Final = ("num_retries", "timeout", "routing_strategy")
LITELLM_SETTINGS_APPLIED: Final = ("drop_params", "request_timeout", "num_retries", "json_logs")
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
_NOT_APPLIED_TO_IMAGES: Final = frozenset({"litellm_params.tpm", "litellm_params.stream_timeout"})
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
    inline_files: bool = False
    """Edit images go in the request as ``data:`` URIs instead of to fal storage: True for an
    entry whose traffic must stay on its ``api_base`` (fal storage is another host)."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One ``model_list`` entry: one deployment of ``model_name``."""

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
    rpm: int | None = None
    """This deployment's requests per minute (``litellm_params.rpm``)."""
    tpm: int | None = None
    """Tokens per minute: accepted, not applied (images have no tokens)."""
    max_retries: int | None = None
    """``litellm_params.max_retries``: LiteLLM's per-deployment client retries."""
    stream_timeout: float | None = None
    """Accepted, not applied (images are not streamed)."""
    weight: float = 1.0
    """LiteLLM's simple-shuffle ``weight`` (1 when not configured)."""
    weight_configured: bool = False
    """Whether ``weight`` was written: LiteLLM weighs by ``weight`` only when some deployment
    of the group sets it (the others then weigh 0), else by ``rpm``, else ``tpm``."""
    deployment_id: str = ""
    """``model_info.id`` when given, else ``"<model_name>#<index among its name>"``."""
    order: int | None = None
    """LiteLLM's deployment priority (``litellm_params.order``, else ``model_info.order``):
    only the deployments of the lowest order are chosen while any of them is left."""

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


def choose_deployment(deployments: Sequence[ModelEntry], rng: random.Random) -> ModelEntry:
    """One of ``deployments``, as LiteLLM's default routing picks: among those of the lowest
    ``order`` (utils.py ``get_order_filtered_deployments``: all when none has one), a random
    draw as its ``simple-shuffle`` strategy makes (router_strategy/simple_shuffle.py): weighted
    by ``weight`` when some deployment sets one (the others weigh 0), else by ``rpm``, else by
    ``tpm``, else uniform. Raises :class:`ValueError` for an empty sequence."""
    return deployments[_shuffle_index(deployments, rng)]


def order_deployments(deployments: Sequence[ModelEntry], rng: random.Random) -> list[ModelEntry]:
    """Every deployment, in the order to try them: :func:`choose_deployment` drawn again over
    those left, so a fallback (a request refused before fal accepted it) follows the same
    weights LiteLLM would use over the deployments still healthy."""
    left = list(deployments)
    ordered: list[ModelEntry] = []
    while left:
        ordered.append(left.pop(_shuffle_index(left, rng)))
    return ordered


def _shuffle_index(deployments: Sequence[ModelEntry], rng: random.Random) -> int:
    if not deployments:
        raise ValueError("no deployment to choose from")
    orders = [d.order for d in deployments if d.order is not None]
    lowest = min(orders) if orders else None
    indices = [i for i, d in enumerate(deployments) if lowest is None or d.order == lowest]
    group = [deployments[i] for i in indices]
    weight_sets = (
        [d.weight if d.weight_configured else 0.0 for d in group],
        [float(d.rpm or 0) for d in group],
        [float(d.tpm or 0) for d in group],
    )
    for weights in weight_sets:
        if max(weights) > 0:
            return rng.choices(indices, weights=weights)[0]
    return rng.choice(indices)


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
    """Things worth telling the operator at start (e.g. the LiteLLM keys falbind does not apply)."""
    json_logs: bool = False
    """Log lines as JSON objects (LiteLLM's ``litellm_settings.json_logs``)."""
    max_images: int = DEFAULT_MAX_IMAGES
    """The most images one request may produce (OpenAI's ``n`` or the model's own count
    field, its default included): ``falbind_settings.max_images_per_request``."""
    num_retries: int = DEFAULT_NUM_RETRIES
    """How often a failed request may be tried again (``router_settings.num_retries``, else
    ``litellm_settings.num_retries``, else LiteLLM's default 2); only where provably safe."""

    def entry(self, name: str) -> ModelEntry | None:
        """The entry serving model ``name``: an exact ``model_name`` first, then wildcards
        (the first deployment when several share the name)."""
        found = self.deployments(name)
        return found[0] if found else None

    def deployments(self, name: str) -> tuple[ModelEntry, ...]:
        """Every deployment serving ``name``: the entries named exactly ``name`` in config
        order, or, when there are none, the entries of the first wildcard pattern matching it."""
        exact = tuple(e for e in self.models if not e.is_wildcard and e.model_name == name)
        if exact:
            return exact
        pattern = next((e.model_name for e in self.models if e.matches(name)), None)
        return tuple(e for e in self.models if e.model_name == pattern) if pattern else ()

    def public_names(self) -> list[str]:
        """The configured model names without wildcards, each once (what ``/v1/models`` lists)."""
        return list(dict.fromkeys(e.model_name for e in self.models if not e.is_wildcard))

    def with_fal_urls(
        self, run_url: str, queue_url: str, storage_url: str, api_url: str | None = None
    ) -> GatewayConfig:
        """The same config with every entry pointed at other fal hosts (``--fake-fal``)."""
        models = tuple(
            replace(
                entry,
                fal=replace(
                    entry.fal,
                    run_url=run_url,
                    queue_url=queue_url,
                    storage_url=storage_url,
                    api_url=api_url or entry.fal.api_url,
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


class _Report:
    """What parsing found: problems (refused), notes, and the LiteLLM keys accepted but not
    applied (``where -> model names``), named together in one note at the end."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.unapplied: dict[str, list[str]] = {}

    def not_applied(self, where: str, owner: str | None = None) -> None:
        owners = self.unapplied.setdefault(where, [])
        if owner is not None and owner not in owners:
            owners.append(owner)

    def check_keys(
        self,
        mapping: Mapping[Any, Any],
        applied: Collection[str],
        litellm_known: Collection[str],
        prefix: str,
        owner: str | None = None,
        where: str = "",
    ) -> None:
        """Accept ``applied`` keys, note LiteLLM's other keys, refuse the rest."""
        for key in mapping:
            name = str(key)
            if name in applied:
                continue
            if name in litellm_known:
                self.not_applied(f"{prefix}{name}", owner)
                continue
            self.problems.append(
                f"unknown key {where}{prefix}{name} ({_hint(name, applied, litellm_known)})"
            )

    def unapplied_note(self) -> str | None:
        if not self.unapplied:
            return None
        parts = [
            f"{where} ({', '.join(owners)})" if owners else where
            for where, owners in self.unapplied.items()
        ]
        return f"accepted from LiteLLM but not applied by falbind: {', '.join(parts)}"


def _hint(key: str, applied: Collection[str], litellm_known: Collection[str]) -> str:
    """A did-you-mean (falbind's own keys first, then LiteLLM's) and what falbind reads."""
    close = difflib.get_close_matches(key, list(applied), n=1, cutoff=0.6) or (
        difflib.get_close_matches(key, sorted(litellm_known), n=1, cutoff=0.75)
    )
    hint = f"did you mean {close[0]!r}? " if close else ""
    known = f"known: {', '.join(applied)}"
    if litellm_known:
        known += f", or any key LiteLLM {LITELLM_VERSION} knows there"
    return hint + known


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Check an already-parsed config mapping; raises :class:`ConfigError`.

    ``environ`` (default ``os.environ``) is only read: ``environment_variables`` resolve
    ``os.environ/NAME`` references first, then ``environ``, and nothing is written to it.
    """
    real_env = os.environ if environ is None else environ
    report = _Report()
    problems = report.problems
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the config must be a mapping with a model_list")
    report.check_keys(data, TOP_LEVEL_KEYS, LITELLM_TOP_LEVEL_KEYS, "")
    general = _section(data, "general_settings", problems)
    settings = _section(data, "falbind_settings", problems)
    litellm_settings = _section(data, "litellm_settings", problems)
    router_settings = _section(data, "router_settings", problems)
    report.check_keys(general, GENERAL_KEYS, LITELLM_GENERAL_SETTINGS_KEYS, "general_settings.")
    report.check_keys(settings, FALBIND_KEYS, (), "falbind_settings.")
    report.check_keys(
        litellm_settings, LITELLM_SETTINGS_APPLIED, LITELLM_SETTINGS_KEYS, "litellm_settings."
    )
    report.check_keys(
        router_settings, ROUTER_KEYS, LITELLM_ROUTER_SETTINGS_KEYS, "router_settings."
    )
    if litellm_settings.get("drop_params"):
        report.notes.append(
            "litellm_settings.drop_params has no effect: falbind refuses unknown parameters "
            "with a 400 instead of dropping them"
        )
    strategy = router_settings.get("routing_strategy")
    if strategy is not None and strategy != SIMPLE_SHUFFLE:
        report.not_applied(
            f"router_settings.routing_strategy: {strategy} ({SIMPLE_SHUFFLE} is used)"
        )
    env = _environment(data.get("environment_variables"), real_env, report)

    master_key = _master_key(general, env, problems)
    database_url = _database_url(general.get("database_url"), env, base_dir, problems)
    base, env_base, env_queue = _base_target(data, settings, env, report)
    timeout = _seconds(
        *_first_set(
            (settings, "falbind_settings.request_timeout"),
            (router_settings, "router_settings.timeout"),
            (litellm_settings, "litellm_settings.request_timeout"),
        ),
        env,
        problems,
    )
    context = _EntryContext(
        base=base,
        use_queue=bool(settings.get("use_queue", True)),
        strict_size=bool(settings.get("strict_size", False)),
        timeout=timeout,
        env=env,
        env_base=env_base,
        env_queue=env_queue,
        report=report,
    )
    raw_models = data.get("model_list")
    if not isinstance(raw_models, list) or not raw_models:
        problems.append("model_list must be a non-empty list of {model_name, litellm_params}")
        raw_models = []
    models = _deployments(
        [
            entry
            for index, raw in enumerate(raw_models)
            if (entry := _model_entry(index, raw, context)) is not None
        ],
        report,
    )
    num_retries = _count(
        *_first_set(
            (router_settings, "router_settings.num_retries"),
            (litellm_settings, "litellm_settings.num_retries"),
        ),
        env,
        problems,
    )
    max_body_mb = settings.get("max_body_mb", 25)
    max_images = settings.get("max_images_per_request", DEFAULT_MAX_IMAGES)
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        problems.append("falbind_settings.max_images_per_request must be an integer >= 1")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    assert master_key is not None and database_url is not None
    unapplied = report.unapplied_note()
    return GatewayConfig(
        models=tuple(models),
        master_key=master_key,
        database_url=database_url,
        source=source,
        max_body_bytes=int(float(max_body_mb) * 1024 * 1024),
        notes=(*report.notes, *([unapplied] if unapplied else [])),
        json_logs=litellm_settings.get("json_logs") is True,
        max_images=max_images,
        num_retries=DEFAULT_NUM_RETRIES if num_retries is None else num_retries,
    )


def _base_target(
    data: Mapping[str, Any], settings: Mapping[str, Any], env: Mapping[str, str], report: _Report
) -> tuple[FalTarget, str | None, str | None]:
    """The fal target of entries without ``api_base``, and LiteLLM's FAL_AI_API_BASE and
    FAL_AI_QUEUE_API_BASE (``None`` when unset or when ``falbind_settings`` names the hosts)."""
    problems = report.problems
    fal_key = _env_value(settings.get("fal_key"), "falbind_settings.fal_key", env, problems)
    block = data.get("environment_variables")
    if fal_key is None and isinstance(block, Mapping) and any(n in block for n in FAL_KEY_ENVS):
        fal_key = _key_from_block(env, problems)
    env_base = _env_url(env, FAL_AI_API_BASE_ENV)
    env_queue = _env_url(env, FAL_AI_QUEUE_API_BASE_ENV)
    if ("run_url" in settings or "queue_url" in settings) and (env_base or env_queue):
        report.notes.append(
            f"falbind_settings names the fal hosts, so {FAL_AI_API_BASE_ENV} and "
            f"{FAL_AI_QUEUE_API_BASE_ENV} from the environment are not used"
        )
        env_base = env_queue = None
    base = FalTarget(
        run_url=str(settings.get("run_url") or DEFAULT_RUN_URL),
        queue_url=str(settings.get("queue_url") or env_queue or DEFAULT_QUEUE_URL),
        storage_url=str(settings.get("storage_url") or DEFAULT_STORAGE_URL),
        key=fal_key,
        api_url=str(settings.get("api_url") or DEFAULT_API_URL),
    )
    return base, env_base, env_queue


def _first_set(*candidates: tuple[Mapping[str, Any], str]) -> tuple[Any, str]:
    """The first of several settings that is set (``section.key`` names the key) and its name."""
    for section, where in candidates:
        value = section.get(where.rpartition(".")[2])
        if value is not None:
            return value, where
    return None, candidates[0][1]


def _section(data: Mapping[str, Any], name: str, problems: list[str]) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{name} must be a mapping")
        return {}
    return value


def _environment(raw: Any, real_env: Mapping[str, str], report: _Report) -> Mapping[str, str]:
    """The environment the config reads: ``environment_variables`` over ``real_env``.

    LiteLLM writes the block into ``os.environ`` at start (proxy_server.py
    ``_load_environment_variables``: values as ``str``, ``os.environ/NAME`` values read from the
    environment, names in ``_BLOCKED_ENV_KEYS`` skipped); falbind resolves references from it
    the same way without writing anything, so secrets stay out of the process environment.
    """
    if raw is None:
        return real_env
    if not isinstance(raw, Mapping):
        report.problems.append("environment_variables must be a mapping of NAME: value")
        return real_env
    block: dict[str, str] = {}
    skipped: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str) or key in LITELLM_BLOCKED_ENVIRONMENT_KEYS:
            skipped.append(str(key))
            continue
        if value is None:
            continue
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            found = real_env.get(value.removeprefix(ENV_PREFIX))
            if found is not None:
                block[key] = found
            continue
        block[key] = str(value)
    if skipped:
        report.notes.append(
            f"environment_variables {', '.join(skipped)} not used (LiteLLM refuses to set them too)"
        )
    return {**real_env, **block}


def _key_from_block(env: Mapping[str, str], problems: list[str]) -> str | None:
    """The fal key when ``environment_variables`` names one (FAL_KEY, ...), found in the
    client's order: the fal client reads only the real environment, which falbind does not
    write."""
    from falbind.client.auth import resolve_key
    from falbind.client.errors import InvalidKeyError

    try:
        secret = resolve_key(None, env)
    except InvalidKeyError as exc:
        problems.append(str(exc))
        return None
    return secret.reveal() if secret is not None else None


def _env_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.rstrip("/") if value else None


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


def _scalar(value: Any, where: str, env: Mapping[str, str], problems: list[str]) -> Any:
    """``value`` with an ``os.environ/NAME`` reference resolved (LiteLLM resolves them in every
    config value), then a numeric string read as a number."""
    if isinstance(value, str):
        text = _env_value(value, where, env, problems)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text
    return value


def _count(value: Any, where: str, env: Mapping[str, str], problems: list[str]) -> int | None:
    """A whole number >= 0 (``rpm``, ``max_retries``, ``num_retries``), or ``None``."""
    number = _scalar(value, where, env, problems)
    if number is None:
        return None
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        problems.append(f"{where} must be a whole number >= 0")
        return None
    return number


def _seconds(value: Any, where: str, env: Mapping[str, str], problems: list[str]) -> float | None:
    """A number of seconds > 0 (``timeout``, ``stream_timeout``), or ``None``."""
    number = _scalar(value, where, env, problems)
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
        problems.append(f"{where} must be a number of seconds > 0")
        return None
    return float(number)


def _order(value: Any) -> int | None:
    """A deployment's ``order`` read as LiteLLM reads it (utils.py ``get_deployment_order``):
    ``1``, ``1.0``, ``"1"`` and ``True`` are 1; anything else is no order."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
        return int(value)
    return None


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


@dataclass(frozen=True, slots=True)
class _EntryContext:
    """What every entry inherits: the base fal target, the section defaults, the environment."""

    base: FalTarget
    use_queue: bool
    strict_size: bool
    timeout: float | None
    env: Mapping[str, str]
    env_base: str | None
    """``FAL_AI_API_BASE``: the ``api_base`` of every entry that names none."""
    env_queue: str | None
    report: _Report


def _model_entry(index: int, raw: Any, context: _EntryContext) -> ModelEntry | None:
    report, env = context.report, context.env
    problems = report.problems
    where = f"model_list[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be a mapping with model_name and litellm_params")
        return None
    name = raw.get("model_name")
    report.check_keys(
        raw, ENTRY_KEYS, LITELLM_DEPLOYMENT_KEYS, "", str(name) if name else None, f"{where}."
    )
    params = raw.get("litellm_params")
    info = raw.get("model_info") or {}
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.model_name must be a non-empty string")
        return None
    where = f"{where} ({name})"
    if raw.get("blocked") is True:
        report.notes.append(f"{where} is blocked: not served (LiteLLM pauses it too)")
        return None
    if not isinstance(params, Mapping) or not isinstance(params.get("model"), str):
        problems.append(f"{where}: litellm_params.model is required (e.g. fal_ai/fal-ai/flux/dev)")
        return None
    if not isinstance(info, Mapping):
        problems.append(f"{where}: model_info must be a mapping")
        info = {}
    report.check_keys(
        info, MODEL_INFO_KEYS, LITELLM_MODEL_INFO_KEYS, "model_info.", name, f"{where}: "
    )
    target = str(params["model"])
    model_defaults = _model_defaults(params, name, report)
    fal, use_queue = _fal_target(params, where, context)
    cost = _scalar(
        info.get("output_cost_per_image", params.get("output_cost_per_image")),
        f"{where}: output_cost_per_image",
        env,
        problems,
    )
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0
    ):
        problems.append(f"{where}: model_info.output_cost_per_image must be a number >= 0")
        cost = None
    timeout = _seconds(params.get("timeout"), f"{where}: litellm_params.timeout", env, problems)
    model_id = info.get("id")
    entry = ModelEntry(
        model_name=name,
        target_model=target,
        endpoint_id=None,
        fal=fal,
        defaults=model_defaults,
        strict_size=bool(params.get("strict_size", context.strict_size)),
        use_queue=use_queue,
        timeout=timeout if timeout is not None else context.timeout,
        cost_per_image=float(cost) if cost is not None else None,
        mode=str(info["mode"]) if info.get("mode") is not None else None,
        deployment_id=str(model_id) if model_id is not None else "",
        **_routing_fields(params, info, f"{where}: litellm_params.", env, problems),
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
    return replace(entry, endpoint_id=endpoint_id)


def _model_defaults(params: Mapping[str, Any], name: str, report: _Report) -> dict[str, Any]:
    """The entry's default model parameters: every ``litellm_params`` key that is neither
    falbind's nor LiteLLM's (LiteLLM passes those to the model too); LiteLLM's keys that
    falbind does not apply are noted."""
    defaults: dict[str, Any] = {}
    for key, value in params.items():
        where = f"litellm_params.{key}"
        if key in LITELLM_PARAM_KEYS or key in FALBIND_PARAM_KEYS:
            if where in _NOT_APPLIED_TO_IMAGES:
                report.not_applied(where, name)
        elif key in LITELLM_PARAMS_KEYS:
            report.not_applied(where, name)
        else:
            defaults[key] = value
    return defaults


def _routing_fields(
    params: Mapping[str, Any],
    info: Mapping[str, Any],
    where: str,
    env: Mapping[str, str],
    problems: list[str],
) -> dict[str, Any]:
    """A deployment's limits and routing weights (``rpm``, ``tpm``, ``max_retries``,
    ``stream_timeout``, ``weight``, ``order``), as :class:`ModelEntry` fields."""
    weight = _scalar(params.get("weight"), f"{where}weight", env, problems)
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0
    ):
        problems.append(f"{where}weight must be a number >= 0")
        weight = None
    order = params["order"] if params.get("order") is not None else info.get("order")
    return {
        "rpm": _count(params.get("rpm"), f"{where}rpm", env, problems),
        "tpm": _count(params.get("tpm"), f"{where}tpm", env, problems),
        "max_retries": _count(params.get("max_retries"), f"{where}max_retries", env, problems),
        "stream_timeout": _seconds(
            params.get("stream_timeout"), f"{where}stream_timeout", env, problems
        ),
        "weight": float(weight) if weight is not None else 1.0,
        "weight_configured": weight is not None,
        "order": _order(order),
    }


def _fal_target(
    params: Mapping[str, Any], where: str, context: _EntryContext
) -> tuple[FalTarget, bool]:
    """The entry's fal target and whether it uses fal's queue (the ``api_base`` rule)."""
    env, problems, base = context.env, context.report.problems, context.base
    key = _env_value(params.get("api_key"), f"{where}: litellm_params.api_key", env, problems)
    key = key if key is not None else base.key
    queue_url = _env_value(
        params.get("queue_url"), f"{where}: litellm_params.queue_url", env, problems
    )
    use_queue = params.get("use_queue")
    api_base: str | None
    if params.get("api_base"):  # an empty api_base is none, as in LiteLLM (`api_base or ...`)
        api_base = _env_value(
            params["api_base"], f"{where}: litellm_params.api_base", env, problems
        )
    else:
        api_base = context.env_base
        queue_url = queue_url or (context.env_queue if api_base else None)
    if not api_base:
        target = replace(
            base, key=key, queue_url=queue_url.rstrip("/") if queue_url else base.queue_url
        )
        return target, bool(context.use_queue if use_queue is None else use_queue)
    api_base = api_base.rstrip("/")
    if queue_url:
        queue_url = queue_url.rstrip("/")
        queued = True if use_queue is None else bool(use_queue)
    else:
        if use_queue is True:
            problems.append(
                f"{where}: use_queue needs litellm_params.queue_url beside api_base (all of this "
                "entry's traffic goes to api_base, fal's sync host in LiteLLM)"
            )
        queued = False
    # Every URL of this entry is on hosts the config named: nothing of it goes to public fal.
    target = FalTarget(
        run_url=api_base,
        queue_url=queue_url or api_base,
        storage_url=api_base,
        key=key,
        api_url=api_base,
        inline_files=True,
    )
    return target, queued


def _deployments(entries: list[ModelEntry], report: _Report) -> list[ModelEntry]:
    """Each entry's ``deployment_id``: its ``model_info.id``, else ``<model_name>#<index>``
    (its place among the entries of that name); a repeated id gets its place appended, since
    per-deployment limits are counted by id."""
    seen: dict[str, int] = {}
    per_name: dict[str, int] = {}
    result: list[ModelEntry] = []
    for entry in entries:
        position = per_name.get(entry.model_name, 0)
        per_name[entry.model_name] = position + 1
        deployment_id = entry.deployment_id or f"{entry.model_name}#{position}"
        if deployment_id in seen:
            report.notes.append(
                f"model_info.id {deployment_id!r} is repeated; the later deployment of "
                f"{entry.model_name} is counted as {deployment_id}#{position}"
            )
            deployment_id = f"{deployment_id}#{position}"
        seen[deployment_id] = 1
        result.append(replace(entry, deployment_id=deployment_id))
    return result


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
                gateway_key = difflib.get_close_matches(
                    field_name, (*LITELLM_PARAM_KEYS, *FALBIND_PARAM_KEYS), n=1, cutoff=0.8
                )
                if gateway_key and "did you mean" not in message:
                    message += f"; did you mean the gateway's litellm_params.{gateway_key[0]}?"
                problems.append(f"{where}: litellm_params.{field_name}: {message}")
            if bad:
                return None
    return endpoint_id


# -- LiteLLM's key lists ----------------------------------------------------------------------
# Read from LiteLLM 1.110.2's source (site-packages/litellm/, paths below), not from memory;
# tests/test_serve_litellm_config.py reads them again from the installed LiteLLM and compares.


def _words(text: str) -> frozenset[str]:
    """A key list written as whitespace-separated words (hundreds of names read better so)."""
    return frozenset(text.split())


# types/router.py: the fields of Deployment (one model_list entry).
LITELLM_DEPLOYMENT_KEYS: Final = _words(
    """
    blocked litellm_params model_info model_name
    """
)

# proxy/proxy_server.py: the sections ProxyConfig.load_config reads (config.get(...)), and
# proxy/common_utils/config_includes.py: INCLUDE_KEY.
LITELLM_TOP_LEVEL_KEYS: Final = _words(
    """
    agent_list agents assistant_settings callback_settings credential_list default_vertex_config
    environment_variables files_settings finetune_settings general_settings guardrails include
    litellm_settings mcp_servers mcp_tools model_list policies policy_attachments prompts
    router_settings sandbox_tools search_tools vector_store_registry worker_registry
    """
)

# types/router.py: the fields of LiteLLM_Params (GenericLiteLLMParams, CredentialLiteLLMParams,
# types/utils.py CustomPricingLiteLLMParams) and the keys of LiteLLMParamsTypedDict (weight, order, ...).
LITELLM_PARAMS_KEYS: Final = _words(
    """
    adaptive_router_config adaptive_router_default_model allow_client_keepalive_override
    allow_legacy_cloud_file_ids annotation_cost_per_page annotation_cost_per_page_batches
    anthropic_disable_workload_identity_federation anthropic_federation_rule_id
    anthropic_federation_workspace_id anthropic_identity_source anthropic_identity_token
    anthropic_identity_token_file anthropic_issuer_audience anthropic_issuer_signing_key_ref
    anthropic_issuer_subject anthropic_issuer_ttl_seconds anthropic_issuer_url
    anthropic_keycloak_auth_method anthropic_keycloak_client_id
    anthropic_keycloak_client_secret_ref anthropic_keycloak_scope anthropic_keycloak_token_url
    anthropic_organization_id anthropic_service_account_id api_base api_key api_version
    auto_router_config auto_router_config_path auto_router_default_model
    auto_router_embedding_model auto_router_max_input_chars auto_router_model_compression
    auto_router_routing_compression aws_access_key_id aws_batch_role_arn
    aws_bedrock_control_plane_endpoint aws_bedrock_project_id aws_bedrock_runtime_endpoint
    aws_external_id aws_profile_name aws_region_name aws_role_name aws_secret_access_key
    aws_session_name aws_session_tags aws_session_token aws_sts_endpoint aws_web_identity_token
    azure_ad_token azure_password azure_scope azure_username bedrock_tags bucket_name
    budget_duration cache_creation_input_audio_token_cost cache_creation_input_token_cost
    cache_creation_input_token_cost_above_100k_tokens
    cache_creation_input_token_cost_above_100k_tokens_batches
    cache_creation_input_token_cost_above_12hr
    cache_creation_input_token_cost_above_12hr_above_272k_tokens
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_batches
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_flex
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_priority
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_ultrafast
    cache_creation_input_token_cost_above_12hr_batches
    cache_creation_input_token_cost_above_12hr_flex
    cache_creation_input_token_cost_above_12hr_priority
    cache_creation_input_token_cost_above_12hr_ultrafast
    cache_creation_input_token_cost_above_1hr
    cache_creation_input_token_cost_above_1hr_above_100k_tokens
    cache_creation_input_token_cost_above_200k_tokens
    cache_creation_input_token_cost_above_200k_tokens_batches
    cache_creation_input_token_cost_above_272k_tokens
    cache_creation_input_token_cost_above_272k_tokens_batches
    cache_creation_input_token_cost_above_272k_tokens_flex
    cache_creation_input_token_cost_above_272k_tokens_priority
    cache_creation_input_token_cost_above_272k_tokens_ultrafast
    cache_creation_input_token_cost_batches cache_creation_input_token_cost_flex
    cache_creation_input_token_cost_priority cache_creation_input_token_cost_ultrafast
    cache_read_input_audio_token_cost cache_read_input_audio_token_cost_batches
    cache_read_input_audio_token_cost_flex cache_read_input_audio_token_cost_priority
    cache_read_input_image_token_cost cache_read_input_token_cost
    cache_read_input_token_cost_above_100k_tokens
    cache_read_input_token_cost_above_100k_tokens_batches
    cache_read_input_token_cost_above_200k_tokens
    cache_read_input_token_cost_above_200k_tokens_batches
    cache_read_input_token_cost_above_200k_tokens_priority
    cache_read_input_token_cost_above_272k_tokens
    cache_read_input_token_cost_above_272k_tokens_batches
    cache_read_input_token_cost_above_272k_tokens_flex
    cache_read_input_token_cost_above_272k_tokens_priority
    cache_read_input_token_cost_above_272k_tokens_ultrafast
    cache_read_input_token_cost_above_512k_tokens cache_read_input_token_cost_balanced
    cache_read_input_token_cost_batches cache_read_input_token_cost_flex
    cache_read_input_token_cost_priority cache_read_input_token_cost_ultrafast chatgpt_auth_file
    citation_cost_per_token client_id client_secret complexity_router_config
    complexity_router_default_model configurable_clientside_auth_params cooldown_time
    cost_per_second custom_llm_provider daily_reset_time default_api_key_rpm_limit
    default_api_key_tpm_limit drop_params embedding_model explicit_cache_read_input_token_cost
    fedramp_uplift_multiplier fireworks_forward_user_id gcs_bucket_name
    google_maps_grounding_cost_per_query index_name input_cost_per_audio_per_second
    input_cost_per_audio_per_second_above_128k_tokens input_cost_per_audio_token
    input_cost_per_audio_token_above_200k_tokens
    input_cost_per_audio_token_above_200k_tokens_batches
    input_cost_per_audio_token_above_200k_tokens_flex
    input_cost_per_audio_token_above_200k_tokens_priority input_cost_per_audio_token_batches
    input_cost_per_audio_token_flex input_cost_per_audio_token_priority input_cost_per_character
    input_cost_per_character_above_128k_tokens input_cost_per_image
    input_cost_per_image_above_128k_tokens input_cost_per_image_token
    input_cost_per_image_token_batches input_cost_per_pixel input_cost_per_query
    input_cost_per_second input_cost_per_text_message input_cost_per_token
    input_cost_per_token_above_100k_tokens input_cost_per_token_above_100k_tokens_batches
    input_cost_per_token_above_128k_tokens input_cost_per_token_above_200k_tokens
    input_cost_per_token_above_200k_tokens_batches input_cost_per_token_above_200k_tokens_flex
    input_cost_per_token_above_200k_tokens_priority input_cost_per_token_above_272k_tokens
    input_cost_per_token_above_272k_tokens_batches input_cost_per_token_above_272k_tokens_flex
    input_cost_per_token_above_272k_tokens_priority
    input_cost_per_token_above_272k_tokens_ultrafast input_cost_per_token_above_512k_tokens
    input_cost_per_token_balanced input_cost_per_token_batches input_cost_per_token_cache_hit
    input_cost_per_token_flex input_cost_per_token_priority input_cost_per_token_ultrafast
    input_cost_per_video_per_second input_cost_per_video_per_second_above_128k_tokens
    input_cost_per_video_per_second_above_15s_interval
    input_cost_per_video_per_second_above_8s_interval input_cost_per_video_token
    input_cost_per_video_token_batches itpm keepalive_seconds kubernetes_pod_discovery
    litellm_credential_name litellm_trace_id max_budget max_file_size_mb max_parallel_requests
    max_retries merge_reasoning_content_in_choices milvus_db_name milvus_partition_names
    milvus_text_field mock_response model model_info num_retries ocr_cost_per_credit
    ocr_cost_per_page ocr_cost_per_page_batches openai_identity_provider_id
    openai_identity_token_file openai_service_account_id order organization otpm
    output_cost_per_audio_per_second output_cost_per_audio_token output_cost_per_character
    output_cost_per_character_above_128k_tokens output_cost_per_image output_cost_per_image_1024
    output_cost_per_image_1536 output_cost_per_image_1K output_cost_per_image_2K
    output_cost_per_image_512 output_cost_per_image_token output_cost_per_image_token_batches
    output_cost_per_image_token_priority output_cost_per_pixel output_cost_per_reasoning_token
    output_cost_per_reasoning_token_flex output_cost_per_reasoning_token_priority
    output_cost_per_second output_cost_per_second_1080p output_cost_per_second_2k
    output_cost_per_second_480p output_cost_per_second_4k output_cost_per_second_720p
    output_cost_per_second_768p output_cost_per_token output_cost_per_token_above_100k_tokens
    output_cost_per_token_above_100k_tokens_batches output_cost_per_token_above_128k_tokens
    output_cost_per_token_above_200k_tokens output_cost_per_token_above_200k_tokens_batches
    output_cost_per_token_above_200k_tokens_flex
    output_cost_per_token_above_200k_tokens_priority output_cost_per_token_above_272k_tokens
    output_cost_per_token_above_272k_tokens_batches output_cost_per_token_above_272k_tokens_flex
    output_cost_per_token_above_272k_tokens_priority
    output_cost_per_token_above_272k_tokens_ultrafast output_cost_per_token_above_512k_tokens
    output_cost_per_token_balanced output_cost_per_token_batches output_cost_per_token_flex
    output_cost_per_token_priority output_cost_per_token_ultrafast
    output_cost_per_video_per_second output_cost_per_video_token output_vector_size
    provider_affinity_header quality_router_config quality_router_default_model region_name
    regional_endpoint_uplift_multiplier regional_processing_uplift_multiplier_eu
    regional_processing_uplift_multiplier_us responses_api_version rpd rpm s3_access_key_id
    s3_bucket_name s3_bucket_owner s3_encryption_key_id s3_endpoint_url s3_output_bucket_name
    s3_region_name s3_secret_access_key search_context_cost_per_query
    search_queries_cost_per_query stream_timeout stream_timeout_by_service_tier
    switchyard_router_config tag_regex tags tenant_id thought_signature_in_tool_call_id
    tiered_pricing timeout timeout_by_service_tier token_exchange_audience
    token_exchange_endpoint token_exchange_profile token_exchange_scope tpd tpm
    use_chat_completions_api use_in_pass_through use_litellm_proxy use_xai_oauth
    valkey_embedding_field valkey_host valkey_password valkey_port valkey_ssl valkey_text_field
    vector_bucket_name vector_store_id vertex_credentials vertex_location vertex_project
    watsonx_region_name weight
    """
)

# types/router.py: the fields of ModelInfo; types/utils.py: ModelInfoBase (the cost map's keys:
# mode, output_cost_per_image, ...) and CustomPricingLiteLLMParams.
LITELLM_MODEL_INFO_KEYS: Final = _words(
    """
    access_windows allow_fail_open annotation_cost_per_page annotation_cost_per_page_batches
    base_model bedrock_converse_supports_strict_tools bedrock_output_config_effort_ceiling
    blocked cache_creation_input_audio_token_cost cache_creation_input_token_cost
    cache_creation_input_token_cost_above_100k_tokens
    cache_creation_input_token_cost_above_100k_tokens_batches
    cache_creation_input_token_cost_above_12hr
    cache_creation_input_token_cost_above_12hr_above_272k_tokens
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_batches
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_flex
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_priority
    cache_creation_input_token_cost_above_12hr_above_272k_tokens_ultrafast
    cache_creation_input_token_cost_above_12hr_batches
    cache_creation_input_token_cost_above_12hr_flex
    cache_creation_input_token_cost_above_12hr_priority
    cache_creation_input_token_cost_above_12hr_ultrafast
    cache_creation_input_token_cost_above_1hr
    cache_creation_input_token_cost_above_1hr_above_100k_tokens
    cache_creation_input_token_cost_above_200k_tokens
    cache_creation_input_token_cost_above_200k_tokens_batches
    cache_creation_input_token_cost_above_272k_tokens
    cache_creation_input_token_cost_above_272k_tokens_batches
    cache_creation_input_token_cost_above_272k_tokens_flex
    cache_creation_input_token_cost_above_272k_tokens_priority
    cache_creation_input_token_cost_above_272k_tokens_ultrafast
    cache_creation_input_token_cost_batches cache_creation_input_token_cost_flex
    cache_creation_input_token_cost_priority cache_creation_input_token_cost_ultrafast
    cache_read_input_audio_token_cost cache_read_input_audio_token_cost_batches
    cache_read_input_audio_token_cost_flex cache_read_input_audio_token_cost_priority
    cache_read_input_image_token_cost cache_read_input_token_cost
    cache_read_input_token_cost_above_100k_tokens
    cache_read_input_token_cost_above_100k_tokens_batches
    cache_read_input_token_cost_above_200k_tokens
    cache_read_input_token_cost_above_200k_tokens_batches
    cache_read_input_token_cost_above_200k_tokens_priority
    cache_read_input_token_cost_above_272k_tokens
    cache_read_input_token_cost_above_272k_tokens_batches
    cache_read_input_token_cost_above_272k_tokens_flex
    cache_read_input_token_cost_above_272k_tokens_priority
    cache_read_input_token_cost_above_272k_tokens_ultrafast
    cache_read_input_token_cost_above_512k_tokens cache_read_input_token_cost_balanced
    cache_read_input_token_cost_batches cache_read_input_token_cost_flex
    cache_read_input_token_cost_priority cache_read_input_token_cost_ultrafast
    citation_cost_per_token cost_per_ptu_per_hour cost_per_second created_at created_by db_model
    default_reasoning_effort discoverable enable_tag_filtering enforce_supported_endpoints
    explicit_cache_read_input_token_cost fedramp_uplift_multiplier
    google_maps_grounding_cost_per_query id input_cost_per_audio_per_second
    input_cost_per_audio_per_second_above_128k_tokens input_cost_per_audio_token
    input_cost_per_audio_token_above_200k_tokens
    input_cost_per_audio_token_above_200k_tokens_batches
    input_cost_per_audio_token_above_200k_tokens_flex
    input_cost_per_audio_token_above_200k_tokens_priority input_cost_per_audio_token_batches
    input_cost_per_audio_token_flex input_cost_per_audio_token_priority input_cost_per_character
    input_cost_per_character_above_128k_tokens input_cost_per_image
    input_cost_per_image_above_128k_tokens input_cost_per_image_token
    input_cost_per_image_token_batches input_cost_per_pixel input_cost_per_query
    input_cost_per_second input_cost_per_text_message input_cost_per_token
    input_cost_per_token_above_100k_tokens input_cost_per_token_above_100k_tokens_batches
    input_cost_per_token_above_128k_tokens input_cost_per_token_above_200k_tokens
    input_cost_per_token_above_200k_tokens_batches input_cost_per_token_above_200k_tokens_flex
    input_cost_per_token_above_200k_tokens_priority input_cost_per_token_above_272k_tokens
    input_cost_per_token_above_272k_tokens_batches input_cost_per_token_above_272k_tokens_flex
    input_cost_per_token_above_272k_tokens_priority
    input_cost_per_token_above_272k_tokens_ultrafast input_cost_per_token_above_512k_tokens
    input_cost_per_token_balanced input_cost_per_token_batches input_cost_per_token_cache_hit
    input_cost_per_token_flex input_cost_per_token_priority input_cost_per_token_ultrafast
    input_cost_per_video_per_second input_cost_per_video_per_second_above_128k_tokens
    input_cost_per_video_per_second_above_15s_interval
    input_cost_per_video_per_second_above_8s_interval input_cost_per_video_token
    input_cost_per_video_token_batches internal_router_model key litellm_provider
    max_embedding_batch_size max_input_tokens max_output_tokens max_tokens member_auto_router
    mode ocr_cost_per_credit ocr_cost_per_page ocr_cost_per_page_batches off_peak_pricing
    output_cost_per_audio_per_second output_cost_per_audio_token output_cost_per_character
    output_cost_per_character_above_128k_tokens output_cost_per_image output_cost_per_image_1024
    output_cost_per_image_1536 output_cost_per_image_1K output_cost_per_image_2K
    output_cost_per_image_512 output_cost_per_image_token output_cost_per_image_token_batches
    output_cost_per_image_token_priority output_cost_per_pixel output_cost_per_reasoning_token
    output_cost_per_reasoning_token_flex output_cost_per_reasoning_token_priority
    output_cost_per_second output_cost_per_second_1080p output_cost_per_second_2k
    output_cost_per_second_480p output_cost_per_second_4k output_cost_per_second_720p
    output_cost_per_second_768p output_cost_per_token output_cost_per_token_above_100k_tokens
    output_cost_per_token_above_100k_tokens_batches output_cost_per_token_above_128k_tokens
    output_cost_per_token_above_200k_tokens output_cost_per_token_above_200k_tokens_batches
    output_cost_per_token_above_200k_tokens_flex
    output_cost_per_token_above_200k_tokens_priority output_cost_per_token_above_272k_tokens
    output_cost_per_token_above_272k_tokens_batches output_cost_per_token_above_272k_tokens_flex
    output_cost_per_token_above_272k_tokens_priority
    output_cost_per_token_above_272k_tokens_ultrafast output_cost_per_token_above_512k_tokens
    output_cost_per_token_balanced output_cost_per_token_batches output_cost_per_token_flex
    output_cost_per_token_priority output_cost_per_token_ultrafast
    output_cost_per_video_per_second output_cost_per_video_token output_vector_size
    pricing_provider prompt_cache_min_tokens provider_specific_entry ptu_count
    ptu_effective_from ptu_effective_to ptu_shares reasoning_contexts reasoning_effort_levels
    reasoning_modes regional_endpoint_uplift_multiplier regional_processing_uplift_multiplier_eu
    regional_processing_uplift_multiplier_us rpm search_context_cost_per_query
    search_free_requests search_queries_cost_per_query supported_audio_formats
    supported_endpoints supports_adaptive_thinking supports_anthropic_compaction
    supports_anthropic_thinking_payload supports_assistant_prefill supports_audio_input
    supports_audio_output supports_bedrock_native_structured_output
    supports_bedrock_native_structured_output_by_default supports_box_questions
    supports_computer_use supports_continuation supports_embedding_image_input
    supports_function_calling supports_image_size supports_legacy_thinking
    supports_low_reasoning_effort supports_max_reasoning_effort supports_mid_conversation_system
    supports_minimal_reasoning_effort supports_native_streaming
    supports_native_structured_output supports_none_reasoning_effort supports_output_config
    supports_parallel_function_calling supports_pdf_input supports_per_turn_control
    supports_prompt_cache_breakpoint supports_prompt_caching supports_reasoning
    supports_regex_lookaround supports_response_schema supports_sampling_params
    supports_system_messages supports_thinking_cache_preservation supports_tool_choice
    supports_tool_search supports_url_context supports_video_input supports_vision
    supports_web_search supports_xhigh_reasoning_effort team_id team_public_model_name
    thinking_always_on thinking_on_by_default tier tiered_pricing token_count_framing
    token_count_model token_count_responses_framing token_count_responses_tool_framing
    token_count_tokenizer token_count_tool_framing tpm updated_at updated_by
    use_openai_responses_path uses_embed_content vertex_ai_audio_api web_search_billing_unit
    """
)

# proxy/_types.py: the fields of ConfigGeneralSettings.
LITELLM_GENERAL_SETTINGS_KEYS: Final = _words(
    """
    admission_queue_timeout_seconds agent_access_default_deny alert_to_webhook_url alert_types
    alerting alerting_args alerting_threshold allow_cli_sso_verification_uri_complete
    allow_unmanaged_response_ids allowed_client_side_s3_buckets
    allowed_client_side_s3_endpoint_urls allowed_file_extensions allowed_routes
    apply_user_budget_to_team_keys background_health_check_model_groups background_health_checks
    blocked_file_extensions cancel_on_disconnect claude_code_gateway_managed_settings
    claude_code_marketplace_auth_required completion_model control_plane_url coordination_redis
    custom_auth dangerously_permit_weak_or_unset_master_key database_args
    database_connect_timeout database_connection_pool_limit database_connection_timeout
    database_disable_prepared_statements database_extra_connection_params
    database_max_idle_connection_lifetime database_socket_timeout database_type database_url
    disable_auto_add_proxy_admin_to_teams disable_budget_reservation
    disable_env_credential_login disable_fallbacks_on_per_model_rate_limits
    disable_password_login_when_sso_enabled disable_requester_ip_address_logging
    disable_responses_id_security enable_claude_code_gateway enable_openai_websocket_passthrough
    enable_public_model_hub enforce_fallback_model_access fail_closed_rate_limit_enforcement
    failed_login_block_seconds failed_login_window_seconds forward_client_headers_to_llm_api
    global_max_parallel_requests health_check_concurrency health_check_interval
    health_check_skip_disabled_background_models include_call_id_in_error_body
    infer_model_from_keys key_management_system master_key max_batch_file_records
    max_batch_file_size_mb max_batch_file_uploads_per_day max_failed_login_attempts_per_source
    max_failed_login_attempts_per_source_overrides max_file_downloads_per_minute
    max_file_size_mb max_in_flight_requests_per_worker max_parallel_requests
    max_queued_requests_per_worker max_request_size_mb max_response_size_mb
    maximum_autorouter_session_retention_period maximum_daily_tag_spend_retention_period
    maximum_health_check_retention_period maximum_spend_logs_cleanup_batch_size
    maximum_spend_logs_cleanup_batch_timeout maximum_spend_logs_cleanup_max_batches
    maximum_spend_logs_cleanup_run_budget maximum_spend_logs_cleanup_target_size
    maximum_spend_logs_retention_period maximum_spend_logs_size
    maximum_spend_logs_size_check_interval mcp_advertised_versions mcp_allowed_clients
    mcp_client_id_header mcp_disabled_capabilities mcp_internal_ip_ranges
    mcp_prefer_client_id_metadata_document mcp_require_explicit_server_scope mcp_required_fields
    mcp_trusted_proxy_ranges mcp_xff_num_trusted_hops missing_session_id model_list_healthy_only
    otel pass_through_endpoints pass_through_request_timeout password_policy_min_length
    password_policy_require_lowercase password_policy_require_numbers
    password_policy_require_special_characters password_policy_require_uppercase plugins
    provider_url_destination_allowed_hosts proxy_config_reload_interval_seconds
    reject_clientside_metadata_tags request_tag_mappings
    responses_websocket_session_limit_seconds return_wildcard_routes scheduled_job_stagger
    search_tool_deny_by_default self_serve_budget_policy skill_scanner spend_capture_rate_check
    spend_logs_metadata_fields spend_logs_prompt_storage store_model_in_db
    store_prompts_in_spend_logs supported_db_objects transcribe_media_buckets
    trusted_proxy_ranges ui_access_mode use_azure_key_vault use_google_kms use_spend_logs_ledger
    use_spend_logs_partitioning user_api_key_cache_max_size user_header_mappings
    user_header_name user_mcp_management_mode user_url_allowed_hosts user_url_validation
    vector_store_deny_by_default vertex_ai_pass_through_drop_anthropic_betas
    """
)

# router_api.py: ROUTER_INIT_ARGS (Router.__init__'s arguments), less constants.py:
# ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG (what load_config sets itself).
LITELLM_ROUTER_SETTINGS_KEYS: Final = _words(
    """
    alerting_config allowed_fails allowed_fails_policy background_health_check_model_groups
    cache_kwargs cache_responses caching_groups client_ttl content_policy_fallbacks
    context_window_fallbacks cooldown_time debug_level default_fallbacks default_litellm_params
    default_max_parallel_requests default_priority deployment_affinity_ttl_seconds
    disable_cooldowns enable_health_check_routing enable_mid_stream_fallback_continuation
    enable_pre_call_checks enable_tag_filtering enable_weighted_failover
    fallback_on_unsupported_params fallbacks guardrail_list health_check_ignore_transient_errors
    health_check_staleness_threshold max_fallbacks model_group_affinity_config model_group_alias
    model_group_retry_policy num_retries optional_pre_call_checks plugins polling_interval
    provider_budget_config redis_db redis_host redis_password redis_port redis_url retry_after
    retry_policy routing_groups routing_strategy routing_strategy_args
    session_affinity_repin_on_failover set_verbose stream_timeout tag_filtering_match_any
    tag_routing_prefix timeout
    """
)

# proxy/proxy_server.py: ProxyConfig._BLOCKED_ENV_KEYS (environment_variables may not set them).
LITELLM_BLOCKED_ENVIRONMENT_KEYS: Final = _words(
    """
    DYLD_INSERT_LIBRARIES DYLD_LIBRARY_PATH HOME LD_LIBRARY_PATH LD_PRELOAD LOGNAME NO_PROXY
    PATH PYTHONHOME PYTHONPATH PYTHONSTARTUP SHELL USER no_proxy
    """
)

# __init__.py: the litellm module's own names (load_config does setattr(litellm, key, value) for
# any key), and proxy/proxy_server.py + proxy/**: the keys load_config and the proxy read themselves.
LITELLM_SETTINGS_KEYS: Final = _words(
    """
    AZURE_DEFAULT_API_VERSION BEDROCK_CONVERSE_MODELS BEDROCK_EMBEDDING_PROVIDERS_LITERAL
    BEDROCK_INVOKE_PROVIDERS_LITERAL CALLBACK_TYPES COHERE_DEFAULT_EMBEDDING_INPUT_TYPE
    COHERE_EMBEDDING_INPUT_TYPES DEFAULT_ALLOWED_FAILS DEFAULT_BATCH_SIZE
    DEFAULT_FLUSH_INTERVAL_SECONDS DEFAULT_MAX_RETRIES DEFAULT_MAX_TOKENS
    DEFAULT_REPLICATE_POLLING_DELAY_SECONDS DEFAULT_REPLICATE_POLLING_RETRIES
    DEFAULT_SOFT_BUDGET HUMANLOOP_PROMPT_CACHE_TTL_SECONDS LITELLM_CHAT_PROVIDERS
    LITELLM_EXCEPTION_TYPES OPENAI_CHAT_COMPLETION_PARAMS OPENAI_FINISH_REASONS
    REPEATED_STREAMING_CHUNK_LIMIT ROUTER_MAX_FALLBACKS TYPE_CHECKING WANDB_MODELS
    WATSONX_DEFAULT_API_VERSION acancel_eval acancel_responses acancel_run aclient_session
    acompact_responses acreate acreate_agent acreate_eval acreate_realtime_client_secret
    acreate_realtime_transcription_session acreate_realtime_translation_client_secret
    acreate_run acreate_skill adapters add_function_to_prompt
    add_user_information_to_llm_headers adelete_agent adelete_eval adelete_responses adelete_run
    adelete_skill agenerate_content agent_search_embedding_model aget_agent aget_eval
    aget_responses aget_run aget_skill ai21_chat_models ai21_key ai21_models aiand_models
    aiml_models aiohttp_trust_env aleph_alpha_key aleph_alpha_models alist_agent_versions
    alist_agents alist_evals alist_input_items alist_runs alist_skills all_embedding_models
    allm_passthrough_route allow_dynamic_callback_disabling allowed_fails amazon_nova_api_key
    amazon_nova_models annotations anthropic_beta_headers_url anthropic_key
    anthropic_messages_estimate_initial_input_tokens anthropic_models
    anthropic_prompt_caching_ttl anthropic_sse_ping_interval_seconds anyscale_models api_base
    api_key api_version apply_search_free_tier arealtime_calls arealtime_translation_calls
    aresponses_api_with_mcp argilla_batch_size argilla_transformation_object arun_tool_loop
    assemblyai_models audit_log_callbacks autorouter_presets_url avector_store_file_content
    avector_store_file_create avector_store_file_delete avector_store_file_list
    avector_store_file_retrieve avector_store_file_update aws_polly_models
    aws_sqs_callback_params azure_ai_models azure_anthropic_models azure_content_safety_params
    azure_embedding_models azure_key azure_llms azure_models azure_text_models
    banned_keywords_list baseten_key baseten_models batch_line_item_callbacks
    bedrock_converse_models bedrock_embedding_models bedrock_mantle_models bedrock_models
    bedrock_neutralize_orphaned_tool_blocks bedrock_request_metadata_fields
    bedrock_tool_name_mappings bigmodel_models black_forest_labs_models
    block_requests_for_models_without_pricing blocked_user_list blog_posts_url budget_duration
    budget_exceeded_status_code budget_exceeded_throttle_percentage budget_reset_time
    budget_rollover bytez_key cache cache_params caching caching_with_models
    calculate_retry_after callback_settings callbacks cancel_eval cancel_responses cancel_run
    cerebras_models chatgpt_models check_provider_endpoint check_valid_key clarifai_key
    clarifai_models clf_ai_gateway_models client client_session close_litellm_async_clients
    cloudflare_api_key cloudflare_models codestral_models cohere_chat_models
    cohere_embedding_models cohere_key cohere_models cold_storage_custom_logger cometapi_key
    cometapi_models common_cloud_provider_auth_params compact_responses completion_cost compress
    config_path content_policy_fallbacks context_window_fallbacks coralbricks_models
    cost_discount_config cost_margin_config cost_per_token create_agent create_eval create_run
    create_skill credential_list custom_prometheus_metadata_labels custom_prometheus_tags
    custom_prompt_dict custom_provider_map darkbloom_models dashscope_models databricks_key
    databricks_models datadog_llm_observability_params datadog_params datadog_use_v1
    datarobot_key datarobot_models decode deepgram_models deepinfra_models deepseek_models
    default_fallbacks default_in_memory_ttl default_internal_user_params
    default_key_generate_params default_key_max_budget_alert_emails
    default_max_internal_user_budget default_redis_batch_cache_expiry default_redis_ttl
    default_soft_budget default_team_params default_team_settings delete_agent delete_eval
    delete_responses delete_run delete_skill disable_add_prefix_to_prompt
    disable_add_transform_inline_image_block disable_add_user_agent_to_request_tags
    disable_aiohttp_transport disable_aiohttp_trust_env
    disable_anthropic_gemini_context_caching_transform disable_copilot_system_to_assistant
    disable_end_user_cost_tracking disable_end_user_cost_tracking_prometheus_only
    disable_hf_tokenizer_download disable_stop_sequence_limit disable_streaming_logging
    disable_token_counter disable_vertex_batch_output_transformation docker_model_runner_models
    drop_params drop_params_env_flag dynamodb_table_name edenai_models elevenlabs_models email
    empower_models enable_anthropic_prompt_caching enable_azure_ad_token_refresh
    enable_caching_on_provider_specific_optional_params
    enable_end_user_cost_tracking_prometheus_only enable_gemini_default_thinking_level_low
    enable_json_schema_validation enable_key_alias_format_validation
    enable_loadbalancing_on_batch_endpoints enable_model_config_credential_overrides
    enable_preview_features enable_redis_auth_cache encode encoding error_logs
    expose_router_debug_in_errors extra_spend_tag_headers failure_callback fal_ai_models
    fallbacks featherless_ai_models filter_invalid_headers fireworks_ai_embedding_models
    fireworks_ai_models force_ipv4 force_redis_hash_tag_grouping
    forward_traceparent_to_llm_provider friendliai_models galadriel_models gcs_pub_sub_use_v1
    gdc_api_base gdc_key gemini_include_thoughts_default gemini_live_defer_setup gemini_models
    generic_api_use_v1 generic_logger_headers get_agent get_api_base get_args get_eval
    get_first_chars_messages get_litellm_gateway_api_key get_max_tokens get_model_cost_map
    get_model_info get_provider_fields get_response_string get_responses get_run get_skill
    get_supported_openai_params get_valid_models gigachat_key gigachat_models
    github_copilot_models global_bitbucket_config global_disable_no_log_param
    global_gitlab_config global_prompt_directory google_moderation_confidence_threshold
    gradient_ai_api_key gradient_ai_models groq_key groq_models guardrail_name_config_map
    guardrails headers heroku_key heroku_models http2 huggingface_key huggingface_models
    hyperbolic_models in_memory_llm_clients_cache inception_key inception_models
    include_cost_in_streaming_usage infinity_key infinity_models initialized_langfuse_clients
    input_callback interactions internal_user_budget_duration is_hidden_as_retired
    jina_ai_models json_logs key_alias_pattern key_generation_settings known_tokenizer_config
    kyma_models lambda_ai_models langfuse_default_tags langfuse_enable_update_trace_keys
    langsmith_batch_size lemonade_key lemonade_models list_agent_versions list_agents list_evals
    list_input_items list_runs list_skills litellm_mode llama_api_key llama_models
    llamagate_models llamaguard_model_name llamaguard_unsafe_content_categories llm_guard_mode
    llm_passthrough_route log_auth_failure_key_identity log_client_error_tracebacks log_level
    log_raw_request_response logged_real_time_event_types logging logging_callback_manager
    longer_context_model_fallback_dict maritalk_key maritalk_models mark_litellm_import_complete
    max_budget max_end_user_budget max_end_user_budget_id max_fallbacks max_internal_user_budget
    max_tokens max_ui_session_budget max_user_budget mcp_aliases mcp_semantic_tool_filter
    mcp_tool_search microsoft_365_copilot_models minimax_models mistral_chat_models
    mock_responses_api_response model_alias_map model_cost model_cost_map_url model_fallbacks
    model_group_settings model_list model_list_set models_by_provider modelscope_models
    modify_integration modify_params module_level_aclient module_level_client moonshot_models
    morph_models nadir_models nebius_embedding_models nebius_key nebius_models network_mock
    newrelic_params nlp_cloud_key nlp_cloud_models novita_api_key novita_models nscale_models
    num_retries num_retries_per_request nvidia_nim_models nvidia_riva_models oci_models
    ollama_key ollama_models open_ai_chat_completion_models open_ai_embedding_models
    open_ai_text_completion_models openai_compatible_endpoints openai_compatible_providers
    openai_key openai_like_key openai_moderations_model_name openai_system_messages_first
    openai_text_completion_compatible_providers openai_video_generation_models
    opencode_go_models openinfer_models openrouter_key openrouter_models organization
    otel_tenant_destination_mode output_parse_pii overload overwrite_user_with_key_hash
    ovhcloud_embedding_models ovhcloud_key ovhcloud_models palm_models perplexity_models
    personal_key_model_access_from_teams petals_models pointfive_params post_call_rules
    pre_call_rules predibase_key predibase_tenant_id presidio_ad_hoc_recognizers
    presidio_logging_only priority_reservation priority_reservation_settings project
    prometheus_deployment_and_latency_caller_identity
    prometheus_emit_input_sequence_length_label prometheus_emit_rate_limit_labels
    prometheus_emit_stream_label prometheus_end_user_metrics_cleanup_interval_seconds
    prometheus_end_user_metrics_max_series_per_metric prometheus_end_user_metrics_ttl_seconds
    prometheus_exclude_labels prometheus_exclude_metrics prometheus_initialize_budget_metrics
    prometheus_latency_buckets prometheus_metrics_cleanup_interval_seconds
    prometheus_metrics_config prometheus_metrics_max_series_per_metric
    prometheus_metrics_ttl_seconds prometheus_user_budget_label_include_email_alias
    prompt_injection_params prompt_name_config_map provider_list
    provider_url_destination_allowed_hosts proxy_auth public_agent_groups
    public_mcp_hub_strict_whitelist public_mcp_servers public_model_groups
    public_model_groups_links public_skills_index publicai_models qwen_ai_platform_models
    qwencloud_models rag reasoning_auto_summary reasoning_effort_rounding recraft_models
    redact_messages_in_exceptions redact_user_api_key_info reducto_models register_model
    register_prompt_template remove_index_from_tool_calls replicate_key replicate_models
    request_correlation_in_logs request_timeout request_timeout_explicitly_set
    require_auth_for_metrics_endpoint require_managed_files response_cost_calculator responses
    retry return_response_headers route_all_chat_openai_to_responses run_tool_loop
    runwayml_models rust s3_audit_callback_params s3_callback_params safe_memory_mode
    sambanova_embedding_models sambanova_models sap_service_key scaledown_models
    scim_admin_group scim_upsert_user secret_manager_client service_callback set_verbose
    should_retry skill_search_embedding_model skip_system_message_in_guardrail
    skip_tool_message_in_guardrail snowflake_key snowflake_models soniox_models
    sse_keepalive_ping_interval_seconds ssl_certificate ssl_ecdh_curve ssl_security_level
    ssl_verify stability_models standard_logging_payload_excluded_fields store_audit_logs
    streamlake_models strip_anthropic_total_tokens success_callback supports_audio_input
    supports_audio_output supports_box_questions supports_continuation supports_function_calling
    supports_parallel_function_calling supports_reasoning supports_response_schema
    supports_system_messages supports_tool_search supports_url_context supports_video_input
    supports_vision supports_web_search suppress_debug_info suppress_startup_output
    tag_budget_config tencent_models text_completion_codestral_models
    text_completion_inception_models together_ai_models togetherai_api_key token
    transcribe_models turn_off_message_logging turn_on_debug turn_on_json
    upperbound_key_generate_params use_aiohttp_transport
    use_chat_completions_url_for_anthropic_messages use_client use_litellm_proxy
    user_url_allowed_hosts user_url_validation v0_models validate_end_user_id_in_db
    validate_environment vector_store_file_content vector_store_file_create
    vector_store_file_delete vector_store_file_list vector_store_file_retrieve
    vector_store_file_update vector_store_index_registry vector_store_registry
    vector_store_search_failure_mode verbose_logger vercel_ai_gateway_key
    vercel_ai_gateway_models vertex_ai_ai21_models vertex_ai_image_models vertex_ai_models
    vertex_ai_safety_settings vertex_ai_video_models vertex_anthropic_models vertex_chat_models
    vertex_code_chat_models vertex_code_text_models vertex_deepseek_models
    vertex_embedding_models vertex_language_models vertex_llama3_models vertex_location
    vertex_minimax_models vertex_mistral_models vertex_moonshot_models vertex_openai_models
    vertex_project vertex_qwen_models vertex_text_models vertex_vision_models vertex_zai_models
    volcengine_models voyage_models wally_models wandb_key wandb_models watsonx_models
    websearch_interception_params xai_key xai_models zai_models zerobus_params zerogpu_models
    """
)
