"""Configuration: defaults < TOML file < environment, as the contract orders them.

Settings are pure data: they say where keys and secrets are, never read them (that is
:mod:`ftwatch.secrets`' job, wired by :mod:`ftwatch.app.wiring`), and notifier tables
are validated once, here, into their types' typed configs. Every failure becomes one
:class:`ConfigError` line.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ftwatch.config_errors import describe_errors, unknown_variables
from ftwatch.duration import parse_duration
from ftwatch.errors import ConfigError
from ftwatch.model import check_model_id
from ftwatch.notifiers.base import NotifierConfig
from ftwatch.plan import PollMode
from ftwatch.sources.base import RequestPolicy, SourceSpec, http_url
from ftwatch.statuses import STATES, normalize_status, provider_word

__all__ = [
    "CohereSettings",
    "DeliverySettings",
    "HttpSettings",
    "PollMode",
    "PollSettings",
    "Settings",
    "StallSettings",
    "StateSettings",
    "cycle_budget",
    "default_state_path",
    "find_config_file",
    "load_settings",
    "redacted",
    "source_specs",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class CohereSettings(RequestPolicy):
    """``[cohere]``: the one source when there are no ``[[sources]]`` tables."""

    model_config = _STRICT

    base_url: str = "https://api.cohere.com"
    api_key_file: Path | None = None
    client_name: str = "ftwatch"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


#: A duration written as ``"30d"``, ``"2h"``, ``"90s"`` (or a number of seconds), held as seconds.
Duration = Annotated[float, BeforeValidator(_duration)]


class PollSettings(BaseModel):
    model_config = _STRICT

    interval_s: Annotated[float, Field(gt=0)] = 30.0
    models: list[str] = Field(default_factory=list)
    #: API requests in flight at once.
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    mode: PollMode = PollMode.AUTO
    #: In list mode, a few unchanged models have their events re-read each cycle, in
    #: case the list missed a change: this share of the list's own requests (0.1: a
    #: tenth more), round robin, so every model is re-read in turn. 0 turns it off.
    reconcile_share: Annotated[float, Field(ge=0, le=10)] = 0.1
    #: Events stamped up to this long before the newest one seen are still taken as
    #: new if they were not seen before (eventually consistent APIs, skewed clocks).
    lookback_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    #: How far the API's updated_at may lag the event that set the status it shows
    #: (another clock, fewer digits): such an event is part of a baseline.
    clock_skew_s: Annotated[float, Field(ge=0, le=3_600)] = 2.0
    #: A start on empty state reports the events of this last stretch of time
    #: instead of taking them as baseline ("1h"); "0s": everything is baseline.
    catch_up: Annotated[Duration, Field(ge=0, le=30 * 86_400)] = 0.0
    #: The longest one source's cycle may take (an API paging for ever, one that
    #: stopped answering): past it that cycle is abandoned, nothing of it committed,
    #: and the source is marked down. Other sources never wait for it.
    source_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0

    @field_validator("models")
    @classmethod
    def _one_segment(cls, value: list[str]) -> list[str]:
        return [check_model_id(model_id) for model_id in value]


class StateSettings(BaseModel):
    model_config = _STRICT

    path: Path | None = None
    #: How long a write waits for a lock held by another client of the file
    #: (someone querying it) before that attempt counts as failed.
    busy_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    #: PostgreSQL instead of the SQLite file (``postgresql://user@host/db``); the
    #: password may come from ``url_file`` (the whole URL) or libpq's PGPASSWORD or
    #: PGPASSFILE. When set, ``path`` is unused.
    url: SecretStr | None = None
    url_file: Path | None = None
    #: Polling leadership between replicas on PostgreSQL: a leader that stops
    #: renewing is replaced within this (plus one interval).
    lease_s: Annotated[float, Field(ge=1, le=3600)] = 15.0
    #: How long ``run --once`` and the operator's commands wait for a PostgreSQL
    #: server that does not answer before giving up (exit 1); ``run`` waits for ever.
    connect_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    #: Delivered rows older than this are removed ("30d"); "0s" keeps them forever.
    retention: Annotated[Duration, Field(ge=0)] = 30 * 86_400.0

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError('must be a PostgreSQL URL: "postgresql://user@host:5432/database"')
        return value


class HttpSettings(BaseModel):
    model_config = _STRICT

    listen: str = "127.0.0.1:9464"
    #: The status page at ``/`` and its JSON at ``/api/v1/jobs``.
    ui: bool = True

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError('must be "HOST:PORT" (e.g. "127.0.0.1:9464"), or "" to turn it off')
        return value


class DeliverySettings(BaseModel):
    model_config = _STRICT

    retry_initial_s: Annotated[float, Field(gt=0)] = 1.0
    retry_max_s: Annotated[float, Field(gt=0)] = 300.0
    #: A transition still undelivered after this long becomes a dead letter.
    give_up_after_s: Annotated[float, Field(gt=0)] = 86_400.0
    #: On SIGTERM, how long in-flight deliveries may finish. Short: a Kubernetes
    #: sidecar gets SIGKILL soon after, and the outbox keeps whatever is cut off.
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 5.0


class StallSettings(BaseModel):
    model_config = _STRICT

    #: How long a model may stay in a state before one ``finetuned_model.stalled``
    #: alert: keyed by normalized state (``running``) or the provider's own word
    #: (``FINETUNING`` / ``STATUS_FINETUNING``).
    after: dict[str, Annotated[Duration, Field(gt=0)]] = Field(default_factory=dict)

    @field_validator("after")
    @classmethod
    def _known_states(cls, value: dict[str, float]) -> dict[str, float]:
        checked = {}
        for key, seconds in value.items():
            word = key.strip()
            if word.lower() in STATES:
                checked[word.lower()] = seconds
            elif (status := normalize_status(word) or provider_word(word)) is not None:
                checked[status] = seconds
            else:
                raise ValueError(f"{key!r} is no state: use one of {', '.join(STATES)}, or a status such as FINETUNING")
        return checked

    def threshold_s(self, status: str | None, state: str) -> float | None:
        """How long ``status`` (of normalized ``state``) may last: its own word
        first, then its state."""
        if not self.after or status is None:
            return None
        return self.after.get(status, self.after.get(state))


class Settings(BaseSettings):
    """The whole configuration of ftwatch."""

    model_config = SettingsConfigDict(
        env_prefix="FTWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    cohere: CohereSettings = Field(default_factory=CohereSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    stall: StallSettings = Field(default_factory=StallSettings)
    #: Each ``[[notifiers]]`` table, validated once into its type's config.
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    #: Each ``[[sources]]`` table, validated into its type's config; none: ``[cohere]``
    #: and ``[poll] models`` are the one source.
    sources: list[Any] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("notifiers", "sources", mode="before")
    @classmethod
    def _typed_plugins(cls, value: object, info: ValidationInfo) -> object:
        """Each table validated by its type's own model (the registry of that kind)."""
        if not isinstance(value, list) or not value:
            return value
        # Only when some are configured: each registry loads its entry points.
        from ftwatch.notifiers.registry import validate_notifiers  # noqa: PLC0415
        from ftwatch.sources.registry import validate_sources  # noqa: PLC0415

        validate: Callable[[list[Any]], list[Any]] = (
            validate_notifiers if info.field_name == "notifiers" else validate_sources
        )
        try:
            return validate(value)
        except ConfigError as exc:
            # Carried out of pydantic as one value error, worded already.
            raise ValueError(str(exc)) from None


def source_specs(settings: Settings) -> list[SourceSpec]:
    """The configured sources, in order: each ``[[sources]]`` table, or Cohere's
    ``[cohere]`` with ``[poll] models`` when there is none."""
    if not settings.sources:
        return [SourceSpec("cohere", "cohere", settings.cohere, list(settings.poll.models), "")]
    specs = []
    for config in settings.sources:
        name = config.name or config.type
        # The first Cohere source keeps the rows it had before [[sources]] existed.
        namespace = "" if (config.type, name) == ("cohere", "cohere") else name
        specs.append(SourceSpec(name, config.type, config, list(config.models), namespace))
    return specs


def cycle_budget(settings: Settings, spec: SourceSpec) -> int:
    """Requests one cycle of a source may make to keep to the interval."""
    return max(1, int(spec.config.max_requests_per_minute * settings.poll.interval_s / 60))


def request_limits(settings: Settings) -> dict[str, int]:
    """Each source's name -> its ``max_requests_per_minute``."""
    return {spec.name: spec.config.max_requests_per_minute for spec in source_specs(settings)}


def default_state_path(environ: Mapping[str, str]) -> Path:
    """``$STATE_DIRECTORY/ftwatch.db`` under systemd (first of its entries), else
    ``./ftwatch-state.db``."""
    state_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state_dir) / "ftwatch.db" if state_dir else Path("ftwatch-state.db")


class _CohereEnvSource(PydanticBaseSettingsSource):
    """Cohere's own ``CO_API_URL``, between FTWATCH_* and the file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        url = os.environ.get("CO_API_URL")
        return {"cohere": {"base_url": url}} if url else {}


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """``--config``, else ``$FTWATCH_CONFIG``, else the first that exists of
    ``./ftwatch.toml``, ``$XDG_CONFIG_HOME/ftwatch/ftwatch.toml`` (default
    ``~/.config``) and ``/etc/ftwatch/ftwatch.toml`` (where the systemd unit's is, so
    the operator's commands on the host find it with no flag)."""
    if explicit:
        return Path(explicit)
    if environ.get("FTWATCH_CONFIG"):
        return Path(environ["FTWATCH_CONFIG"])
    home = environ.get("HOME")
    xdg = environ.get("XDG_CONFIG_HOME") or (str(Path(home) / ".config") if home else "")
    candidates = [Path("ftwatch.toml"), *([Path(xdg) / "ftwatch" / "ftwatch.toml"] if xdg else [])]
    candidates.append(Path("/etc/ftwatch/ftwatch.toml"))
    return next((path for path in candidates if path.is_file()), None)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: fix --config or FTWATCH_CONFIG") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(config: str | None = None) -> tuple[Settings, Path | None]:
    """Load the effective settings (from this process's environment) and say which
    file they came from."""
    path = find_config_file(config, os.environ)
    data = _read_toml(path) if path is not None else {}

    class _Configured(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # First wins: FTWATCH_* environment, then CO_API_URL, then the file.
            return (env_settings, _CohereEnvSource(settings_cls), InitSettingsSource(settings_cls, data))

    for warning in unknown_variables(os.environ, Settings):
        print(f"ftwatch: warning: {warning}", file=sys.stderr)
    try:
        settings = _Configured()
    except ValidationError as exc:
        # Every mistake at once, one line each (the CLI puts "ftwatch: " before the first).
        lines = describe_errors(exc, Settings, str(path) if path else "the environment")
        raise ConfigError("invalid configuration: " + "\nftwatch: invalid configuration: ".join(lines)) from None
    except ValueError as exc:  # a FTWATCH_* value that is not valid JSON
        raise ConfigError(f"invalid configuration in the environment: {_first_line(exc)}") from None
    return settings, path


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


_REDACTED = "**********"
#: Keys whose values are credentials whatever their type (webhook headers carry tokens).
_SECRET_MAPPINGS = {"headers"}


def redact_url(url: str) -> str:
    """Scheme and host of an http(s) URL, its path, query and userinfo hidden; a
    PostgreSQL URL keeps its user, host and database, never its password or options;
    for any other scheme (Apprise's ``tgram://BOT-TOKEN/…``, where the "host" is the
    token) the scheme alone."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _REDACTED
    if scheme.lower() in ("postgresql", "postgres"):
        authority, _, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        user = userinfo.partition(":")[0]
        database = path.split("?")[0]
        return f"{scheme}://{user + '@' if at else ''}{host}/{database}"
    if scheme.lower() not in ("http", "https"):
        return f"{scheme}://{_REDACTED}"
    host = rest.split("/")[0].split("?")[0].split("#")[0].rpartition("@")[2]
    return f"{scheme}://{host}/{_REDACTED}"


def redacted(value: Any, key: str = "") -> Any:
    """A JSON-able copy of a settings dump with every secret hidden.

    URLs that are secrets keep their scheme and host (http and https only), so a
    reader can tell them apart; header values are hidden whole; a plain URL that
    carries a user and password loses them.
    """
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return redact_url(secret) if "://" in secret else _REDACTED
    if isinstance(value, Mapping):
        if key in _SECRET_MAPPINGS:
            return {str(k): _REDACTED for k in value}
        return {k: redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v, key) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value and "@" in value.partition("://")[2].split("/")[0]:
        scheme, _, rest = value.partition("://")
        host, slash, path = rest.partition("/")
        return f"{scheme}://{_REDACTED}@{host.rpartition('@')[2]}{slash}{path}"
    return value
