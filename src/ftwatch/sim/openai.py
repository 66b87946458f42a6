"""A simulated OpenAI fine-tuning jobs API, over real HTTP on 127.0.0.1.

As the real one is: ``/v1/fine_tuning/jobs`` newest first with ``after`` (a job id),
``limit`` (default 20, at most 100) and ``has_more``; a job's events newest first,
paged the same way by event id, mostly metrics, a few messages that say where the
job went; Unix-second times; ``error`` ``{}`` rather than null on success; errors as
``{"error": {"message", "type", "param", "code"}}``; Bearer keys; ``x-ratelimit-*``
headers on every answer and ``retry-after`` on 429. Faults as every simulator has
them (:mod:`ftwatch.sim.kit`).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Unpack

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ftwatch.sim.kit import Fault, SimOptions, SimServer, running_in_thread
from ftwatch.standard_webhooks import sign

__all__ = ["DEFAULT_KEY", "MESSAGES", "Fault", "OpenAISimulator", "SimJob", "running_in_thread"]

DEFAULT_KEY = "sk-sim-openai"

#: The message each status's event carries, as OpenAI words them.
MESSAGES: dict[str, str] = {
    "validating_files": "Validating training file: file-sim",
    "queued": "Files validated, moving job to queued state",
    "running": "Fine-tuning job started",
    "succeeded": "The job has successfully completed",
    "failed": "The job failed due to an invalid training file. Expected file to have JSONL format.",
    "cancelled": "The job was cancelled",
}


def training_loss(step: int, total: int) -> float:
    """A loss that falls the way training losses do: fast, then slowly."""
    return round(0.4 + 2.0 / (1 + 9 * step / max(total, 1)), 4)


@dataclass(slots=True)
class SimJobEvent:
    id: str
    created_at: int
    message: str
    type: str = "message"
    level: str = "info"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SimJob:
    id: str
    suffix: str | None
    status: str
    created_at: int
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    error: dict[str, Any] = field(default_factory=dict)
    events: list[SimJobEvent] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    estimated_finish: int | None = None


class OpenAISimulator(SimServer[SimJob]):
    """The fake API: its jobs, keys, faults and request log."""

    key_variable = "OPENAI_API_KEY"

    default_keys = (DEFAULT_KEY,)
    default_rate_limit = 500

    def __init__(self, *, write_messages: bool = True, **options: Unpack[SimOptions]) -> None:
        """``write_messages=False``: status changes leave no event message (only the
        snapshot tells), as for a job whose events lag or say something unforeseen."""
        super().__init__(**options)
        self.write_messages = write_messages
        #: Every list page says has_more (a broken cursor, for tests).
        self.force_has_more = False
        #: The job list never ends: past the real jobs, each page is one phantom job
        #: with a new id and has_more (a hostile API, for tests).
        self.endless_pages = False
        #: Where terminal states are pushed, signed with ``webhook_secret`` (None: nowhere).
        self.webhook_url: str | None = None
        self.webhook_secret = ""
        #: What each push was answered (status code, or the error's name).
        self.pushes: list[str] = []
        self._event_ids = itertools.count(1)
        self.app = self.jobs_app("/v1/fine_tuning/jobs", self._list_jobs, events=self._list_events)

    # --- driving it ---------------------------------------------------------------

    def _seconds(self) -> int:
        return self._now_ns() // 1_000_000_000

    def _event(self, job: SimJob, message: str, *, at: int | None = None, **extra: Any) -> None:
        job.events.append(SimJobEvent(f"ftevent-{next(self._event_ids):08d}", at or self._seconds(), message, **extra))

    provider = "openai"
    lifecycle = ("queued", "running", "succeeded")
    failed_status = "failed"
    #: Each status's event message, in the order a job goes through them, from its first.
    messages: ClassVar[dict[str, str]] = MESSAGES
    #: Events are served newest first (OpenAI's order).
    events_newest_first: ClassVar[bool] = True

    def job_row(self, job: SimJob) -> tuple[str, str]:
        return job.suffix or "", job.status

    def add_job(self, suffix: str | None = "sim", status: str | None = None, *, created_at: int | None = None) -> str:
        """A job that went through the usual statuses up to ``status``."""
        order = list(self.messages)
        status = status or order[0]
        with self._lock:
            job_id = f"ftjob-{secrets.token_hex(12)}"
            at = created_at or self._seconds()
            job = SimJob(job_id, suffix, order[0], at)
            self._jobs[job_id] = job
            self._event(job, f"Created fine-tuning job: {job_id}", at=at)
            self._event(job, self.messages[order[0]], at=at)
        if status in order:
            for step in order[1 : order.index(status) + 1]:
                if step in ("succeeded", "failed", "cancelled") and step != status:
                    continue
                self.set_status(job_id, step, at=at if created_at else None)
        else:
            self.set_status(job_id, status, at=at if created_at else None)
        return job_id

    def set_status(self, job_id: str, status: str, *, at: int | None = None, message: bool | None = None) -> None:
        """Move a job; its event says so (unless ``message`` or the simulator say not)."""
        with self._lock:
            job = self._jobs[job_id]
            when = at or self._seconds()
            job.status = status
            write = self.write_messages if message is None else message
            if status == "succeeded":
                job.fine_tuned_model = f"ft:gpt-4o-mini-2024-07-18:sim-org:{job.suffix or 'model'}:{job_id[-8:]}"
                if write:
                    self._event(job, f"New fine-tuned model created: {job.fine_tuned_model}", at=when)
            if status == "failed":
                job.error = {
                    "code": "invalid_training_file",
                    "message": self.messages["failed"],
                    "param": "training_file",
                }
            if status in ("succeeded", "failed"):
                job.finished_at = when
            if write and status in self.messages:
                self._event(job, self.messages[status], at=when, level="error" if status == "failed" else "info")
        if status in ("succeeded", "failed", "cancelled") and self.webhook_url:
            threading.Thread(target=self._push, args=(job_id, status), daemon=True).start()

    def _push(self, job_id: str, status: str) -> None:
        """``fine_tuning.job.<status>`` as OpenAI sends it: thin, signed, Standard Webhooks."""
        assert self.webhook_url is not None
        msg_id = f"evt_{secrets.token_hex(12)}"
        stamp = int(time.time())
        body = json.dumps(
            {
                "id": msg_id,
                "object": "event",
                "created_at": stamp,
                "type": f"fine_tuning.job.{status}",
                "data": {"id": job_id},
            }
        ).encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(self.webhook_secret, msg_id, stamp, body),
        }
        try:
            answer = httpx.post(self.webhook_url, content=body, headers=headers, timeout=5.0)
            outcome = str(answer.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        with self._lock:
            self.pushes.append(outcome)

    tells_progress: ClassVar[str] = "events"

    def train(self, job_id: str, step: int, total: int = 100) -> None:
        self.add_metrics(job_id, step, total=total, first=step)

    def add_metrics(self, job_id: str, steps: int, *, total: int | None = None, first: int = 1) -> None:
        """Training-step events (most of a real job's events): steps ``first`` to
        ``steps`` of ``total`` (else ``steps``), a loss that falls, an ETA that nears."""
        total = total or steps
        with self._lock:
            job = self._jobs[job_id]
            for step in range(first, steps + 1):
                loss = training_loss(step, total)
                data = {"step": step, "train_loss": loss, "total_steps": total, "train_mean_token_accuracy": 0.8}
                if step % 10 == 0:
                    data["valid_loss"] = round(loss * 1.1, 4)
                self._event(job, f"Step {step}/{total}: training loss={loss:.4f}", type="metrics", data=data)
            if job.status == "running":
                job.estimated_finish = self._seconds() + (total - steps) * 2

    # --- serving ------------------------------------------------------------------

    def error(self, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
        kinds = {401: ("invalid_request_error", "invalid_api_key"), 404: ("invalid_request_error", "not_found")}
        kind, error_code = kinds.get(code, ("server_error" if code >= 500 else "requests", None))
        if code == 429:
            headers = (headers or {}) | {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
        body = {"error": {"message": message, "type": kind, "param": None, "code": error_code}}
        return JSONResponse(body, status_code=code, headers=headers)

    def refused(self) -> Response:
        return self.error(401, "Incorrect API key provided. You can find your API key in your dashboard.")

    def render_job(self, job: SimJob) -> dict[str, Any]:
        out: dict[str, Any] = {
            "object": "fine_tuning.job",
            "id": job.id,
            "model": "gpt-4o-mini-2024-07-18",
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "fine_tuned_model": job.fine_tuned_model,
            "organization_id": "org-sim",
            "result_files": [],
            "status": job.status,
            "validation_file": None,
            "training_file": "file-sim",
            "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8},
            "trained_tokens": 4000 if job.status == "succeeded" else None,
            "error": job.error,
            "user_provided_suffix": job.suffix,
            "seed": 42,
            "estimated_finish": job.estimated_finish if job.status == "running" else None,
            "integrations": [],
            "metadata": None,
            "method": {"type": "supervised"},
        }
        return out | job.overrides

    def _page(self, request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            limit = max(1, min(int(request.query_params.get("limit") or 20), 100))
        except ValueError:
            limit = 20
        after = request.query_params.get("after")
        start = 0
        if after:
            ids = [item["id"] for item in items]
            start = ids.index(after) + 1 if after in ids else len(items)
        page = items[start : start + limit]
        return {"object": "list", "data": page, "has_more": self.force_has_more or start + limit < len(items)}

    async def _list_jobs(self, request: Request) -> Response:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
            body = self._page(request, [self.render_job(job) for job in jobs])
            if self.endless_pages and not body["has_more"]:
                phantom = f"ftjob-phantom-{next(self._event_ids):08d}"
                body = {"object": "list", "data": [{"id": phantom, "status": "running"}], "has_more": True}
        return await self.handle(request, "list_models", None, body)

    async def _list_events(self, request: Request) -> Response:
        def page_of_events(job: SimJob) -> dict[str, Any]:
            events = [
                {
                    "object": "fine_tuning.job.event",
                    "id": e.id,
                    "created_at": e.created_at,
                    "level": e.level,
                    "message": e.message,
                    "data": e.data,
                    "type": e.type,
                }
                for e in (reversed(job.events) if self.events_newest_first else job.events)
            ]
            return self._page(request, events)

        return await self.answer_about_job(request, "list_events", page_of_events)

    def _respond(self, key_ok: bool, retry_after: float | None, fault: Fault | None, body: Any) -> Response:
        response = super()._respond(key_ok, retry_after, fault, body)
        if response.status_code < 400:
            response.headers["x-ratelimit-limit-requests"] = str(self.rate_limit_per_minute)
            response.headers["x-ratelimit-reset-requests"] = "60s"
        return response
