"""A simulated Together fine-tuning API, over real HTTP on 127.0.0.1.

As the real one is: ``/v1/fine-tunes`` lists every job at once (``{"data": [...]}``,
no paging), a job's ``/events`` carry no id (a ``type``, a ``created_at``, a
``message`` and a ``hash`` that is sometimes empty) and come oldest first; ISO 8601
times with milliseconds; progress as ``steps_completed``/``total_steps`` and
``progress.seconds_remaining``; OpenAI-style errors; Bearer keys. Faults as every
simulator has them (:mod:`ftwatch.sim.kit`).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Unpack

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ftwatch.sim.kit import Fault, SimOptions, SimServer, running_in_thread

__all__ = ["DEFAULT_KEY", "Fault", "SimFineTune", "TogetherSimulator", "running_in_thread"]

DEFAULT_KEY = "tg-sim-key"
_TOTAL_STEPS = 120
#: The event each status's arrival writes (Together's types), where it writes one.
_EVENT_OF = {
    "pending": ("job_pending", "Fine tune request created"),
    "running": ("job_start", "Training started for model {model}"),
    "completed": ("job_complete", "Training completed for {model}"),
    "error": ("job_error", "Training failed: CUDA out of memory at step 37"),
    "user_error": ("job_user_error", "Training file has an invalid line 12: expected a JSON object"),
    "cancel_requested": ("cancel_requested", "Cancel requested by user"),
    "cancelled": ("job_cancelled", "Job cancelled"),
}


@dataclass(slots=True)
class SimFineTuneEvent:
    created_ns: int
    type: str
    message: str
    hash: str = ""
    step: int | None = None


@dataclass(slots=True)
class SimFineTune:
    id: str
    suffix: str
    status: str
    created_ns: int
    updated_ns: int
    steps_completed: int = 0
    total_steps: int = _TOTAL_STEPS
    events: list[SimFineTuneEvent] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TogetherSimulator(SimServer[SimFineTune]):
    """The fake API: its fine-tunes, keys, faults and request log."""

    key_variable = "TOGETHER_API_KEY"

    provider = "together"
    lifecycle = ("pending", "running", "completed")
    failed_status = "error"

    default_keys = (DEFAULT_KEY,)

    def __init__(self, **options: Unpack[SimOptions]) -> None:
        super().__init__(**options)
        self.app = self.jobs_app("/v1/fine-tunes", self._list_jobs, events=self._list_events)

    # --- the SimulatedProvider interface ---------------------------------------------

    def job_row(self, job: SimFineTune) -> tuple[str, str]:
        return job.suffix, job.status

    def add_job(self, name: str, status: str | None = None) -> str:
        """A fine-tune that went through the usual statuses up to ``status``."""
        with self._lock:
            job_id = f"ft-{uuid.uuid4()}"
            now = self._now_ns()
            self._jobs[job_id] = SimFineTune(job_id, name, "pending", now, now)
            self._event(self._jobs[job_id], "pending")
        status = status or "pending"
        if status in self.lifecycle:
            for step in self.lifecycle[1 : self.lifecycle.index(status) + 1]:
                self.set_status(job_id, step)
        elif status != "pending":
            self.set_status(job_id, status)
        return job_id

    def _event(self, job: SimFineTune, status: str) -> None:
        kind, message = _EVENT_OF[status]
        text = message.format(model=f"sim-user/{job.suffix}")
        # Together's hash is a checkpoint's or a model's; empty for most events.
        digest = hashlib.sha256(f"{job.id}{kind}".encode()).hexdigest()[:16] if kind == "job_complete" else ""
        job.events.append(SimFineTuneEvent(job.updated_ns, kind, text, digest, job.steps_completed))

    tells_progress: ClassVar[str] = "list"

    def train(self, job_id: str, step: int, total: int = _TOTAL_STEPS) -> None:
        # Together's total is the job's own (its epochs times batches).
        with self._lock:
            job = self._jobs[job_id]
            job.steps_completed, job.total_steps = step, total

    def arrive(self, job: SimFineTune, status: str, now_ns: int) -> None:
        job.status, job.updated_ns = status, now_ns
        if status == "running":
            job.steps_completed = max(job.steps_completed, 1)
        if status == "completed":
            job.steps_completed = job.total_steps
        if status in _EVENT_OF:
            self._event(job, status)

    # --- serving ------------------------------------------------------------------

    malformed_body = b'{"data": [{"id": '

    def error(self, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
        kind = "invalid_request_error" if code < 500 else "server_error"
        error_code = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded"}.get(code)
        body = {"error": {"message": message, "type": kind, "param": None, "code": error_code}}
        return JSONResponse(body, code, headers)

    def refused(self) -> Response:
        return self.error(401, "Invalid API key provided. You can find your API key at api.together.xyz/settings.")

    def render_job(self, job: SimFineTune) -> dict[str, Any]:
        remaining = (job.total_steps - job.steps_completed) * 30 if job.status == "running" else 0
        out: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "created_at": _iso(job.created_ns),
            "updated_at": _iso(job.updated_ns),
            "model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
            "output_name": f"sim-user/Meta-Llama-3.1-8B-Instruct-Reference-{job.suffix}-{job.id[3:8]}",
            "suffix": job.suffix,
            "total_steps": job.total_steps,
            "steps_completed": job.steps_completed,
            "epochs_completed": 1 if job.status == "completed" else 0,
            "queue_depth": 0,
            "progress": {"estimate_available": job.status == "running", "seconds_remaining": remaining},
        }
        return out | job.overrides

    async def _list_jobs(self, request: Request) -> Response:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j.created_ns, j.id))
            body = {"data": [self.render_job(job) for job in jobs]}
        return await self.handle(request, "list_models", None, body)

    async def _list_events(self, request: Request) -> Response:
        return await self.answer_about_job(request, "list_events", self._events_json)

    @staticmethod
    def _events_json(job: SimFineTune) -> dict[str, Any]:
        return {
            "data": [
                {
                    "object": "fine-tune-event",
                    "created_at": _iso(e.created_ns),
                    "level": "error" if e.type in ("job_error", "job_user_error") else "info",
                    "message": e.message,
                    "type": e.type,
                    "step": e.step,
                    "hash": e.hash,
                }
                for e in job.events
            ]
        }
