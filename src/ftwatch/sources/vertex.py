"""Google Vertex AI tuning jobs: a snapshot source.

``GET {endpoint}/v1/projects/{project}/locations/{location}/tuningJobs`` pages by
``pageToken`` (an empty list is ``{}``), a job is read by its id (the last segment of
its ``name``, whose project is the project's *number*), in proto3 JSON: states are
``JOB_STATE_*`` (:data:`~ftwatch.statuses.VERTEX`), times RFC 3339 with 0 to 9
fractional digits, a failure's reason ``error.message`` (a google.rpc.Status). Vertex
keeps no event history ftwatch can read: each poll sees the job as it is now.

Credentials are Google's Application Default Credentials, through google-auth (the
``vertex`` extra): ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account or external
account file), else the gcloud user's, else the metadata server (GCE, GKE Workload
Identity, Cloud Run). The token is refreshed before it expires, in a worker thread.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
from pydantic import field_validator

from ftwatch.errors import AuthRefusedError, ConfigError
from ftwatch.model import ModelInfo, ModelListing
from ftwatch.sources.base import FromConfig, SourceConfig, SourceContext, SourceUnavailableError, http_url
from ftwatch.sources.fields import NoHistory, parsed, path_of, resource_job
from ftwatch.sources.http import ApiClient, ApiDialect, json_message
from ftwatch.sources.pages import read_listing, token_listing
from ftwatch.statuses import VERTEX

__all__ = ["GoogleCredentials", "VertexSource", "VertexSourceConfig"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_PAGE = 100
_EXTRA = "a vertex source needs google-auth: pip install 'ftwatch[vertex]'"
_DIALECT = ApiDialect("Vertex AI", json_message(("error", "message"), ("message",)))


class VertexSourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``vertex``."""

    project: str
    #: A region, e.g. ``us-central1``.
    location: str
    #: Else ``https://{location}-aiplatform.googleapis.com``.
    endpoint_url: str | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return http_url(value) if value is not None else None


class GoogleCredentials:
    """Application Default Credentials (google-auth), a Bearer token per request."""

    def __init__(self, environ: Any) -> None:
        try:
            import google.auth.transport.requests  # noqa: PLC0415 - the optional extra
        except ImportError:
            raise ConfigError(_EXTRA) from None
        self._file: str | None = environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None
        self._credentials: Any = None
        self._transport = google.auth.transport.requests.Request()

    def _resolve(self) -> Any:
        """The credentials, found once (blocking: a file, or the metadata server)."""
        import google.auth  # noqa: PLC0415
        import google.auth.exceptions  # noqa: PLC0415

        if self._credentials is None:
            try:
                self._credentials = _from_file(self._file) if self._file else google.auth.default(scopes=[SCOPE])[0]
            except (google.auth.exceptions.DefaultCredentialsError, OSError, ValueError) as exc:
                where = f"GOOGLE_APPLICATION_CREDENTIALS ({self._file})" if self._file else "none was found"
                raise ConfigError(
                    f"no Google credentials for the vertex source: {where}: {str(exc)[:200]}; set"
                    " GOOGLE_APPLICATION_CREDENTIALS to a service-account file, or run where the metadata"
                    " server answers"
                ) from None
        return self._credentials

    def _token(self, force: bool = False) -> str:
        """A valid access token (refreshed when it is about to expire, or when asked)."""
        import google.auth.exceptions  # noqa: PLC0415

        credentials = self._resolve()
        if force or not credentials.valid:
            try:
                credentials.refresh(self._transport)
            except google.auth.exceptions.RefreshError as exc:
                if getattr(exc, "retryable", False):
                    raise SourceUnavailableError(f"Google's token endpoint: {str(exc)[:200]}") from None
                raise AuthRefusedError(
                    f"Google refused the key of {self.describe()}: {str(exc.args[0] if exc.args else exc)[:200]};"
                    " check that the account and its key are current"
                ) from None
            except google.auth.exceptions.TransportError as exc:
                raise SourceUnavailableError(f"Google's token endpoint: {str(exc)[:200]}") from None
        return str(credentials.token)

    def check_credentials(self) -> None:
        self._token()

    async def headers(self, method: str, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
        token = await anyio.to_thread.run_sync(self._token)
        return headers | {"authorization": f"Bearer {token}"}

    async def reread(self) -> None:
        """A new token now (the API refused the one it had)."""
        await anyio.to_thread.run_sync(lambda: self._token(force=True))

    def describe(self) -> str:
        if self._file:
            return f"GOOGLE_APPLICATION_CREDENTIALS ({self._file})"
        return "Google's Application Default Credentials"


def _from_file(path: str) -> Any:
    """The credentials of a file, by the type it says it is: a service account's key,
    a workload identity federation config, or a gcloud user's. Only these: a file of
    another type is refused, not loaded on trust (google-auth's own advice)."""
    import json  # noqa: PLC0415

    from google.auth import identity_pool  # noqa: PLC0415
    from google.oauth2 import credentials as user  # noqa: PLC0415
    from google.oauth2 import service_account  # noqa: PLC0415

    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "service_account":
        return service_account.Credentials.from_service_account_file(path, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    if kind == "external_account":
        return identity_pool.Credentials.from_file(path, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    if kind == "authorized_user":
        return user.Credentials.from_authorized_user_file(path, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    raise ValueError(f"its type is {kind!r}: service_account, external_account or authorized_user is read")


def _job(raw: Any) -> ModelInfo:
    return resource_job(
        raw,
        VERTEX,
        display="tunedModelDisplayName",
        reason=("error", "message"),
        ended_at="endTime",
        produced=("tunedModel", "model"),
    )


class VertexSource(NoHistory, FromConfig, provider="vertex", vocabulary=VERTEX, config_model=VertexSourceConfig):
    """One project's tuning jobs in one location, through one :class:`ApiClient`."""

    def __init__(self, config: VertexSourceConfig, deps: SourceContext) -> None:
        self._credentials = GoogleCredentials(deps.environ)
        base_url = config.endpoint_url or f"https://{config.location}-aiplatform.googleapis.com"
        self._api = ApiClient(deps, self._credentials, _DIALECT, base_url=base_url, retry=config)
        self._jobs = path_of(path_of("/v1/projects", config.project, "/locations"), config.location, "/tuningJobs")
        self._max_pages = config.max_pages

    def check_credentials(self) -> None:
        """Find the credentials and get a token now (blocking): none is exit 2."""
        self._credentials.check_credentials()

    async def list_models(self) -> ModelListing:
        entries, pages = await token_listing(
            self._api.get, "list_tuning_jobs", self._jobs, "tuningJobs", page_size=_PAGE, max_pages=self._max_pages
        )
        return read_listing(entries, _job, "name", pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._api.get("get_tuning_job", path_of(self._jobs, model_id), one_job=True)
        return parsed(model_id, _job, body, "tuning job")
