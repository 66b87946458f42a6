"""A simulated Fireworks supervised fine-tuning API, over real HTTP on 127.0.0.1.

As the real one is: ``/v1/accounts/{account}/supervisedFineTuningJobs`` with
``pageSize`` and an opaque ``pageToken`` (``nextPageToken``, left out on the last
page, as proto3 JSON leaves out empty fields: an account with no jobs answers
``{}``); ``JOB_STATE_*`` states; ``status{code, message}`` with a gRPC code *name*;
RFC 3339 times with 0, 3, 6 or 9 fractional digits; ``jobProgress{percent, epoch}``;
Google-style errors; Bearer keys. No events, no webhooks. Faults as every simulator
has them (:mod:`ftwatch.sim.kit`).
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Unpack

from starlette.requests import Request
from starlette.responses import Response

from ftwatch.sim.kit import Fault, SimOptions, SimServer, google_error, running_in_thread

__all__ = ["ACCOUNT", "DEFAULT_KEY", "Fault", "FireworksSimulator", "SimSftJob", "running_in_thread", "stamp"]

DEFAULT_KEY = "fw-sim-key"
ACCOUNT = "sim-account"
_ENDED = {"JOB_STATE_COMPLETED", "JOB_STATE_EARLY_STOPPED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
_FAILURE = "training dataset row 17: messages[2].content is not a string"


@dataclass(slots=True)
class SimSftJob:
    id: str
    display_name: str
    state: str
    create_ns: int
    update_ns: int
    completed_ns: int | None = None
    percent: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)


def stamp(ns: int, digits: int) -> str:
    """RFC 3339 as proto3 JSON writes it: 0, 3, 6 or 9 fractional digits."""
    seconds, rest = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return base + (f".{rest:09d}"[: digits + 1] if digits else "") + "Z"


class FireworksSimulator(SimServer[SimSftJob]):
    """The fake API: one account's jobs, its keys, faults and request log."""

    table = (("account", ACCOUNT),)
    key_variable = "FIREWORKS_API_KEY"

    provider = "fireworks"
    lifecycle = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_COMPLETED")
    failed_status = "JOB_STATE_FAILED"

    default_keys = (DEFAULT_KEY,)

    def __init__(self, *, page_size: int = 50, **options: Unpack[SimOptions]) -> None:
        super().__init__(**options)
        self.page_size = page_size
        self._digits = itertools.cycle((0, 3, 6, 9))
        base = "/v1/accounts/{account}/supervisedFineTuningJobs"
        self.app = self.jobs_app(base, self._list_jobs)

    # --- the SimulatedProvider interface ---------------------------------------------

    def job_row(self, job: SimSftJob) -> tuple[str, str]:
        return job.display_name, job.state

    def add_job(self, name: str, status: str | None = None) -> str:
        with self._lock:
            job_id = secrets.token_hex(6)
            now = self._now_ns()
            self._jobs[job_id] = SimSftJob(job_id, name, "JOB_STATE_CREATING", now, now)
        self.set_status(job_id, status or "JOB_STATE_PENDING")
        return job_id

    tells_progress: ClassVar[str] = "list"

    def train(self, job_id: str, step: int, total: int = 100) -> None:
        with self._lock:
            self._jobs[job_id].percent = round(100 * step / total, 1)

    def arrive(self, job: SimSftJob, status: str, now_ns: int) -> None:
        job.state, job.update_ns = status, now_ns
        if status == "JOB_STATE_RUNNING":
            job.percent = max(job.percent, 5.0)
        if status in _ENDED:
            job.completed_ns = now_ns
            job.percent = 100.0 if status == "JOB_STATE_COMPLETED" else job.percent

    # --- serving ------------------------------------------------------------------

    malformed_body = b'{"supervisedFineTuningJobs": [{"name": '

    def error(self, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return google_error(code, message, headers)

    def refused(self) -> Response:
        return self.error(401, "unauthorized: invalid API key")

    def render_job(self, job: SimSftJob) -> dict[str, Any]:
        digits = next(self._digits)
        out: dict[str, Any] = {
            "name": f"accounts/{ACCOUNT}/supervisedFineTuningJobs/{job.id}",
            "displayName": job.display_name,
            "createTime": stamp(job.create_ns, digits),
            "updateTime": stamp(job.update_ns, digits),
            "state": job.state,
            "dataset": f"accounts/{ACCOUNT}/datasets/sim-dataset",
            "baseModel": "accounts/fireworks/models/llama-v3p1-8b-instruct",
            "jobProgress": {"percent": job.percent, "epoch": 1},
        }
        if job.completed_ns is not None:
            out["completedTime"] = stamp(job.completed_ns, digits)
        if job.state == "JOB_STATE_COMPLETED":
            out["outputModel"] = f"accounts/{ACCOUNT}/models/{job.display_name}"
        if job.state == "JOB_STATE_FAILED":
            out["status"] = {"code": "INVALID_ARGUMENT", "message": _FAILURE}
        return out | job.overrides

    def job_in_scope(self, request: Request) -> bool:
        return bool(request.path_params["account"] == ACCOUNT)

    async def _list_jobs(self, request: Request) -> Response:
        return await self.answer_token_list(
            request, "supervisedFineTuningJobs", self.page_size, created=lambda j: (j.create_ns, j.id), total=True
        )
