"""A simulated Azure OpenAI fine-tuning API, over real HTTP on 127.0.0.1.

OpenAI's simulator (:mod:`ftwatch.sim.openai`) with Azure's differences: the jobs
under ``/openai/fine_tuning/jobs`` with a required ``api-version`` (400 without), or
under ``/openai/v1/fine_tuning/jobs`` without one; the key in an ``api-key`` header or
an Entra token as a Bearer; Azure's statuses (``pending``, never ``validating_files``
or ``queued``) and wordings ("Job started."); events oldest first, as the spec's
example lists them; Azure's error body, and the gateway's own 401.
"""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ftwatch.sim.kit import Fault, SimOptions, running_in_thread
from ftwatch.sim.openai import OpenAISimulator, SimJob

__all__ = [
    "API_VERSION",
    "DEFAULT_KEY",
    "DEFAULT_TOKEN",
    "AzureOpenAISimulator",
    "Fault",
    "SimJob",
    "running_in_thread",
]

DEFAULT_KEY = "0123456789abcdef0123456789abcdef"
DEFAULT_TOKEN = "eyJ0eXAiOiJKV1QiLCJzaW0iOiJlbnRyYSJ9.sim.token"  # noqa: S105 - the simulator's own Entra token
API_VERSION = "2024-10-21"

#: Azure's statuses in the order a job goes through them, and each one's event.
MESSAGES: dict[str, str] = {
    "pending": "Job enqueued. Waiting for jobs ahead to complete.",
    "running": "Job started.",
    "paused": "Job paused.",
    "succeeded": "Job succeeded.",
    "failed": "Job failed: the training file has an invalid line 3.",
    "cancelled": "Job cancelled.",
}


class AzureOpenAISimulator(OpenAISimulator):
    """The fake Azure OpenAI resource: its jobs, key, token, faults and request log."""

    url_key = "endpoint"
    table = (("api_version", API_VERSION),)
    key_variable = "AZURE_OPENAI_API_KEY"

    provider = "azure_openai"
    lifecycle = ("pending", "running", "succeeded")
    failed_status = "failed"
    messages: ClassVar[dict[str, str]] = MESSAGES
    events_newest_first: ClassVar[bool] = False

    default_keys = (DEFAULT_KEY,)  # Azure's, not OpenAI's

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
        write_messages: bool = True,
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(write_messages=write_messages, **options)
        self.tokens = set(tokens)
        #: Requests to a dated route without an api-version (refused with 400).
        self.unversioned: list[str] = []
        routes = []
        for base in ("/openai/fine_tuning/jobs", "/openai/v1/fine_tuning/jobs"):
            routes += [
                Route(base, self._dated(self._list_jobs)),
                Route(base + "/{job_id}", self._dated(self.answer_job)),
                Route(base + "/{job_id}/events", self._dated(self._list_events)),
            ]
        self.app = Starlette(routes=[*routes, Route("/{path:path}", self.stray)])

    def _dated(self, answer: Any) -> Any:
        """The dated routes want an ``api-version``; the v1 routes none."""

        async def checked(request: Request) -> Response:
            dated = "/openai/v1/" not in request.url.path
            if dated and not request.query_params.get("api-version"):
                with self._lock:
                    self.unversioned.append(request.url.path)
                return self.error(400, "Missing API version parameter.", code_word="MissingApiVersionParameter")
            return await answer(request)  # type: ignore[no-any-return]

        return checked

    # --- the SimulatedProvider interface ---------------------------------------------

    # --- serving ------------------------------------------------------------------

    def caller_key(self, request: Request, body: bytes) -> str | None:
        key = request.headers.get("api-key", "").strip()
        if key:
            return key if key in self.keys else None
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        return token if token in self.tokens else None

    def error(
        self, code: int, message: str, headers: dict[str, str] | None = None, *, code_word: str | None = None
    ) -> Response:
        words = {400: "invalidPayload", 401: "unauthorized", 404: "notFound", 429: "tooManyRequests"}
        body: dict[str, Any] = {
            "error": {
                "code": code_word or words.get(code, "internalFailure"),
                "message": message,
                "target": None,
                "details": [],
                "innererror": None,
            }
        }
        return JSONResponse(body, code, headers)

    def refused(self) -> Response:
        # The gateway's own answer, before the service is reached.
        return JSONResponse(
            {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to"
                    " provide a valid key for an active subscription and use a correct regional API endpoint for"
                    " your resource.",
                }
            },
            401,
        )
