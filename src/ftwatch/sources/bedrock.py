"""AWS Bedrock model customization jobs, a snapshot source, signed SigV4 by botocore.

``ListModelCustomizationJobs`` (up to 1000 a page, ``nextToken``) gives every job's
status; ``GetModelCustomizationJob`` its ``failureMessage``, read only for a job
whose status moved. Bedrock keeps no status history, so a transition's
``occurred_at`` is the job's ``endTime`` when it has ended, else its
``lastModifiedTime``, else the moment ftwatch noticed.

botocore (the AWS SDK's core, which boto3 and the CLI are built on) resolves the
credentials through the standard chain (environment, shared config and profile,
web identity for EKS, container and instance metadata, refreshed before they
expire) and signs; the requests themselves go through ftwatch's own client, with
its budget and retries. It is an optional extra: ``pip install 'ftwatch[bedrock]'``.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import structlog
from pydantic import field_validator

from ftwatch.errors import ConfigError
from ftwatch.model import ModelInfo, ModelListing, Progress, format_timestamp, parse_timestamp
from ftwatch.sources.base import FromConfig, SourceConfig, SourceContext, SourceUnavailableError, http_url
from ftwatch.sources.fields import (
    NoHistory,
    id_and_status,
    optional_number,
    optional_str,
    parsed,
    path_of,
)
from ftwatch.sources.http import ApiClient, ApiDialect, json_message
from ftwatch.sources.pages import Page, every_page, paginate, read_listing
from ftwatch.statuses import BEDROCK

if TYPE_CHECKING:
    from botocore.credentials import Credentials as AwsCredentials

#: AWS services spell the error text "message" or "Message".
_DIALECT = ApiDialect("Bedrock", json_message(("message",), ("Message",)))


__all__ = ["BedrockSource", "BedrockSourceConfig", "SigV4"]

log = structlog.get_logger("ftwatch.sources.bedrock")

_JOBS = "/model-customization-jobs"
_PAGE = 1000
_EXTRA = "a bedrock source needs botocore: pip install 'ftwatch[bedrock]'"


class BedrockSourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``bedrock``."""

    #: Else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's region.
    region: str | None = None
    #: Else ``https://bedrock.{region}.amazonaws.com``.
    endpoint_url: str | None = None
    #: A profile of the shared config files; else ``AWS_PROFILE`` or the default chain.
    profile: str | None = None
    #: Bedrock's control plane allows a few requests a second per account.
    max_requests_per_minute: int = 120

    @field_validator("endpoint_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return http_url(value) if value is not None else None


class SigV4:
    """Credentials from the AWS chain, a SigV4 signature per request (botocore)."""

    def __init__(self, region: str | None, profile: str | None, environ: Any) -> None:
        try:
            import botocore.session  # noqa: PLC0415 - the optional extra
        except ImportError:
            raise ConfigError(_EXTRA) from None
        self._session = botocore.session.Session(profile=profile)
        self.region = (
            region
            or environ.get("AWS_REGION")
            or environ.get("AWS_DEFAULT_REGION")
            or self._session.get_config_variable("region")
        )
        if not self.region:
            raise ConfigError(
                "no AWS region for the bedrock source: set region in its [[sources]] table, or AWS_REGION"
            )
        self._profile = profile
        self._credentials: Any = None

    def resolve(self) -> AwsCredentials:
        """The chain, once (blocking: instance metadata is a network call)."""
        if self._credentials is None:
            self._credentials = self._session.get_credentials()
        if self._credentials is None:
            raise ConfigError(
                "no AWS credentials for the bedrock source: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,"
                " AWS_PROFILE or profile, or run with an IAM role (EKS web identity, ECS task, EC2 instance)"
            )
        # Refreshable credentials refresh here, before they expire (blocking too).
        return self._credentials.get_frozen_credentials()  # type: ignore[no-any-return]

    async def headers(self, method: str, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth  # noqa: PLC0415
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        frozen = await anyio.to_thread.run_sync(self.resolve)
        request = AWSRequest(method=method, url=str(url), headers=dict(headers), data=b"")
        SigV4Auth(frozen, "bedrock", self.region).add_auth(request)
        return {key: str(value) for key, value in request.headers.items()}

    async def reread(self) -> None:
        """Resolve the chain anew (rotated keys, a new web identity token)."""
        self._credentials = None
        await anyio.to_thread.run_sync(self.resolve)

    def describe(self) -> str:
        return f"the AWS credential chain (profile {self._profile})" if self._profile else "the AWS credential chain"


#: Jobs whose time could not be read, told once each (per process).
_UNREADABLE_TOLD: set[tuple[str, str]] = set()


def aws_time(value: Any) -> int | None:
    """A time as the AWS SDKs read one: ISO 8601 with ``T`` or a space, a zone or none
    (UTC), or epoch seconds (a number, or its text). ``None`` when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value * 1_000_000_000)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return parse_timestamp(text)
    except ValueError:
        pass
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        pass
    try:
        return parse_timestamp(text + "Z")  # "2026-12-01 21:54:13": no zone is UTC
    except ValueError:
        return None


def _checked_time(raw: dict[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is None or value == "":
        return None
    ns = aws_time(value)
    if ns is None:
        job = str(raw.get("jobName") or "?")[:80]
        if (job, field) not in _UNREADABLE_TOLD:
            _UNREADABLE_TOLD.add((job, field))
            log.warning("time.unreadable", job=job, field=field, note="the moment ftwatch noticed stands in for it")
        return None
    return format_timestamp(ns)


def _final_loss(raw: dict[str, Any]) -> Progress | None:
    """``trainingMetrics.trainingLoss``: all Bedrock tells of training, at its end."""
    loss = optional_number(raw.get("trainingMetrics"), "trainingLoss")
    return None if loss is None else Progress(train_loss=loss)


def _job(raw: Any, *, name_field: str = "customModelName", arn_field: str = "customModelArn") -> ModelInfo:
    name, status = id_and_status(raw, "jobName")
    return ModelInfo(
        id=name,
        name=optional_str(raw, name_field),
        status=status,
        updated_at=_checked_time(raw, "endTime") or _checked_time(raw, "lastModifiedTime"),
        fine_tuned_model=optional_str(raw, arn_field) if status == "Completed" else None,
        failure=optional_str(raw, "failureMessage"),
        progress=_final_loss(raw),
        # Text is parsed only when a summary asks; a number (epoch seconds) is cheap now.
        created=created if isinstance(created := raw.get("creationTime"), str) and created else aws_time(created),
    )


def _detail(raw: Any) -> ModelInfo:
    """``GetModelCustomizationJob``'s answer: its model fields are named otherwise."""
    return _job(raw, name_field="outputModelName", arn_field="outputModelArn")


class BedrockSource(NoHistory, FromConfig, provider="bedrock", vocabulary=BEDROCK, config_model=BedrockSourceConfig):
    """Bedrock's customization jobs, by job name, through one :class:`ApiClient`."""

    def __init__(self, config: BedrockSourceConfig, deps: SourceContext) -> None:
        signer = SigV4(config.region, config.profile, deps.environ)
        self._signer = signer
        # As AWS's own tools: the service's endpoint variable, then the global one.
        base_url = (
            config.endpoint_url
            or deps.environ.get("AWS_ENDPOINT_URL_BEDROCK")
            or deps.environ.get("AWS_ENDPOINT_URL")
            or f"https://bedrock.{signer.region}.amazonaws.com"
        )
        self._api = ApiClient(deps, signer, _DIALECT, base_url=base_url, retry=config)
        self._max_pages = config.max_pages

    def check_credentials(self) -> None:
        """Resolve the credential chain now (blocking): none found is exit 2."""
        self._signer.resolve()

    async def list_models(self) -> ModelListing:
        endpoint = "ListModelCustomizationJobs"

        async def fetch(token: str | None) -> Page:
            query = {"maxResults": str(_PAGE), "sortBy": "CreationTime", "sortOrder": "Descending"}
            if token:
                query["nextToken"] = token
            # Encoded here, as SigV4's canonical query wants it (%20, not +).
            encoded = urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote, safe="-_.~")
            body = await self._api.get(endpoint, f"{_JOBS}?{encoded}")
            items = body.get("modelCustomizationJobSummaries") or []
            if not isinstance(items, list):
                raise SourceUnavailableError(f"{endpoint}: modelCustomizationJobSummaries is not a list")
            token = body.get("nextToken")
            return items, token if isinstance(token, str) and token else None

        entries, pages = await every_page(paginate(endpoint, fetch, max_pages=self._max_pages, cursor_name="nextToken"))
        return read_listing(entries, _job, "jobName", pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._api.get("GetModelCustomizationJob", path_of(_JOBS, model_id), one_job=True)
        return parsed(model_id, _detail, body, "job")
