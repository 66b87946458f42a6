"""Azure OpenAI's fine-tuning jobs: OpenAI's shape, with Azure's differences.

The same jobs, job and events as OpenAI's (:class:`~ftwatch.sources.openai.OpenAIShaped`
reads them for both), under ``{endpoint}/openai/fine_tuning/jobs`` with a dated
``api-version`` on every request, or under ``{endpoint}/openai/v1/fine_tuning/jobs``
without one (``api_version = "v1"``). The key goes in an ``api-key`` header, or an
Entra ID token as a Bearer. Statuses are Azure's (``pending``, no ``validating_files``
or ``queued``; the preview's ``pausing``, ``paused``, ``resuming``), events say where a
job went in Azure's words ("Job started.") and come in no promised order.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from ftwatch.errors import ConfigError
from ftwatch.secrets import AZURE_OPENAI_KEY, AZURE_OPENAI_TOKEN, api_key
from ftwatch.sources.base import FromConfig, SourceConfig, SourceContext, http_url
from ftwatch.sources.http import ApiClient, ApiDialect, BearerKey, Credentials, HeaderKey, json_message
from ftwatch.sources.openai import JobsApi, OpenAIShaped
from ftwatch.statuses import AZURE_OPENAI

__all__ = ["AzureOpenAISource", "AzureOpenAISourceConfig"]

#: The generally available authoring API version (the dated routes need one).
DEFAULT_API_VERSION = "2024-10-21"

#: Azure's words for a job's moves (lower case, by prefix).
_MESSAGES: tuple[tuple[str, str], ...] = (
    ("job enqueued", "pending"),
    ("job started", "running"),
    ("job resumed", "running"),
    ("job paused", "paused"),
    ("job succeeded", "succeeded"),
    ("job failed", "failed"),
    ("job cancelled", "cancelled"),
    ("job canceled", "cancelled"),
)
#: ``{"error": {"code", "message", "target", "details", "innererror"}}``; the gateway's
#: own answers put the text at ``message`` or ``error.message`` too.
_DIALECT_MESSAGE = json_message(("error", "message"), ("message",))


class AzureOpenAISourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``azure_openai``."""

    #: ``https://NAME.openai.azure.com``; else ``AZURE_OPENAI_ENDPOINT``.
    endpoint: str | None = Field(
        default_factory=lambda: os.environ.get("AZURE_OPENAI_ENDPOINT") or None, validate_default=True
    )
    #: A dated authoring version, or ``"v1"`` for the ``/openai/v1/`` routes; else
    #: ``OPENAI_API_VERSION``, else the generally available one.
    api_version: str = Field(default_factory=lambda: os.environ.get("OPENAI_API_VERSION") or DEFAULT_API_VERSION)
    #: Else ``AZURE_OPENAI_API_KEY``, else the systemd credential ``azure-openai-api-key``.
    api_key_file: Path | None = None
    #: An Entra ID token instead of a key: else ``AZURE_OPENAI_AD_TOKEN``.
    ad_token_file: Path | None = None

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        # The SDK's own examples end the endpoint in a slash, or /openai.
        return http_url(value).removesuffix("/openai") if value is not None else None


def _credentials(config: AzureOpenAISourceConfig, deps: SourceContext, where: str) -> Credentials:
    """The key (as ``api-key``) where one is given, else an Entra token (as a Bearer);
    neither is one line naming both."""
    label = f"{where} api_key_file"
    key = api_key(AZURE_OPENAI_KEY, config.api_key_file, deps.environ, where=where, file_label=label)
    if key.present() or config.api_key_file is not None:
        return HeaderKey(key, "api-key")
    token = api_key(
        AZURE_OPENAI_TOKEN, config.ad_token_file, deps.environ, where=where, file_label=f"{where} ad_token_file"
    )
    if token.present() or config.ad_token_file is not None:
        return BearerKey(token)
    raise ConfigError(
        f"no Azure OpenAI credential: set AZURE_OPENAI_API_KEY or api_key_file in {where} (a key),"
        " or AZURE_OPENAI_AD_TOKEN or ad_token_file (an Entra ID token)"
    )


class AzureOpenAISource(
    OpenAIShaped, FromConfig, provider="azure_openai", vocabulary=AZURE_OPENAI, config_model=AzureOpenAISourceConfig
):
    """One Azure OpenAI resource's fine-tuning jobs."""

    def __init__(self, config: AzureOpenAISourceConfig, deps: SourceContext) -> None:
        where = config.where
        if not config.endpoint:
            raise ConfigError(
                f"no Azure OpenAI endpoint for {where}: set endpoint (https://NAME.openai.azure.com) in the table,"
                " or AZURE_OPENAI_ENDPOINT"
            )
        credentials = _credentials(config, deps, where)
        api = ApiClient(
            deps, credentials, ApiDialect("Azure OpenAI", _DIALECT_MESSAGE), base_url=config.endpoint, retry=config
        )
        v1 = config.api_version == "v1"
        shape = JobsApi(
            jobs="/openai/v1/fine_tuning/jobs" if v1 else "/openai/fine_tuning/jobs",
            query={} if v1 else {"api-version": config.api_version},
            messages=_MESSAGES,
            events_newest_first=False,
        )
        super().__init__(api, shape, config.max_pages)
