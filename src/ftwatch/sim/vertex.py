"""A simulated Vertex AI tuning-jobs API and Google token endpoint, over real HTTP on
127.0.0.1.

As the real ones are: ``/v1/projects/{project}/locations/{location}/tuningJobs`` with
``pageSize`` and an opaque ``pageToken`` (``nextPageToken`` left out on the last page,
``{}`` for no jobs, as proto3 JSON leaves out empty fields); job names carrying the
project *number*; ``JOB_STATE_*`` states; RFC 3339 times with 0, 3, 6 or 9 fractional
digits; ``error`` as a google.rpc.Status; Google-style errors (429
``RESOURCE_EXHAUSTED``). Credentials go the real way: :meth:`credentials_env` writes a
service-account file whose ``token_uri`` is this simulator's ``/token``, google-auth
signs a JWT with its key, and the simulator checks that signature against the
account's public key before it issues an access token, the only Bearer its API takes.
Needs the ``vertex`` extra (google-auth, cryptography).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ftwatch.sim.fireworks import stamp
from ftwatch.sim.kit import Fault, SimOptions, SimServer, bearer, google_error, running_in_thread

__all__ = ["LOCATION", "PROJECT", "PROJECT_NUMBER", "Fault", "SimTuningJob", "VertexSimulator", "running_in_thread"]

PROJECT = "sim-project"
PROJECT_NUMBER = "123456789012"
LOCATION = "us-central1"
ACCOUNT = f"ftwatch-sim@{PROJECT}.iam.gserviceaccount.com"
_ENDED = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
}
_FAILURE = "Dataset validation failed: line 4 of gs://sim-bucket/train.jsonl is not valid JSON."


@dataclass(slots=True)
class SimTuningJob:
    id: str
    display_name: str
    state: str
    create_ns: int
    update_ns: int
    end_ns: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def _private_key_pem() -> tuple[str, str]:
    """A new RSA key pair: the private key (PKCS#8 PEM, as service-account files have
    it) and the public one."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - the vertex extra
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


class VertexSimulator(SimServer[SimTuningJob]):
    """The fake API and token endpoint: one project's tuning jobs in one location."""

    url_key = "endpoint_url"
    table = (("project", PROJECT), ("location", LOCATION))

    provider = "vertex"
    lifecycle = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
    failed_status = "JOB_STATE_FAILED"

    def __init__(self, *, page_size: int = 50, token_ttl_s: int = 3600, **options: Unpack[SimOptions]) -> None:
        # Keys are no part of it: Google's tokens are (see _token).
        super().__init__(**options)
        self.page_size = page_size
        self.token_ttl_s = token_ttl_s
        self._private_pem, self._public_pem = _private_key_pem()
        self._key_id = secrets.token_hex(20)
        #: Access tokens issued, and when each expires (monotonic seconds).
        self.tokens: dict[str, float] = {}
        #: What each token request was answered: "issued", or why not.
        self.token_requests: list[str] = []
        self._digits = itertools.cycle((0, 3, 6, 9))
        base = "/v1/projects/{project}/locations/{location}/tuningJobs"
        self.app = self.jobs_app(base, self._list_jobs, before=[Route("/token", self._token, methods=["POST"])])

    # --- the SimulatedProvider interface ---------------------------------------------

    def job_row(self, job: SimTuningJob) -> tuple[str, str]:
        return job.display_name, job.state

    def service_account_json(self, *, registered: bool = True) -> str:
        """A service-account key file for this simulator's token endpoint (with
        ``registered=False``, one whose key the endpoint does not know)."""
        private = self._private_pem if registered else _private_key_pem()[0]
        info = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": self._key_id,
            "private_key": private,
            "client_email": ACCOUNT,
            "client_id": "100000000000000000001",
            "token_uri": f"{self.url}/token",
        }
        return json.dumps(info, indent=2)

    def credentials_env(self, tmp: Path) -> dict[str, str]:
        """The service-account file a user would point ``GOOGLE_APPLICATION_CREDENTIALS``
        at; and no metadata server to ask (there is none here: no probe leaves 127.0.0.1)."""
        path = tmp / "vertex-service-account.json"
        path.write_text(self.service_account_json())
        return {
            "GOOGLE_APPLICATION_CREDENTIALS": str(path),
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": "127.0.0.1:9",
        }

    def add_job(self, name: str, status: str | None = None) -> str:
        with self._lock:
            job_id = str(secrets.randbelow(9 * 10**18) + 10**18)
            now = self._now_ns()
            self._jobs[job_id] = SimTuningJob(job_id, name, "JOB_STATE_QUEUED", now, now)
        self.set_status(job_id, status or "JOB_STATE_PENDING")
        return job_id

    def arrive(self, job: SimTuningJob, status: str, now_ns: int) -> None:
        job.state, job.update_ns = status, now_ns
        if status in _ENDED:
            job.end_ns = now_ns

    # --- the token endpoint ---------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        """Google's OAuth 2.0 token endpoint for a service account's signed JWT."""
        import google.auth.exceptions  # noqa: PLC0415 - the vertex extra
        from google.auth import jwt  # noqa: PLC0415

        # application/x-www-form-urlencoded, read by hand (no multipart parser needed).
        form = {key: values[0] for key, values in urllib.parse.parse_qs((await request.body()).decode()).items()}
        assertion = form.get("assertion", "")
        try:
            # google-auth names Google's endpoint as the audience wherever it posts.
            audience = ["https://oauth2.googleapis.com/token", f"{self.url}/token"]
            claims = jwt.decode(assertion, certs=self._public_pem, audience=audience)  # type: ignore[no-untyped-call]
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            with self._lock:
                self.token_requests.append(f"refused: {exc}"[:200])
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return JSONResponse(body, 400)
        if claims.get("iss") != ACCOUNT or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid grant."}, 400)
        token = "ya29.sim-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_ttl_s
            self.token_requests.append("issued")
        return JSONResponse({"access_token": token, "expires_in": self.token_ttl_s, "token_type": "Bearer"})

    # --- serving ------------------------------------------------------------------

    malformed_body = b'{"tuningJobs": [{"name": '

    def caller_key(self, request: Request, body: bytes) -> str | None:
        token = bearer(request)
        expires = self.tokens.get(token)
        return token if expires is not None and expires > time.monotonic() else None

    def error(self, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return google_error(code, message, headers)

    def refused(self) -> Response:
        return self.error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or"
            " other valid authentication credential.",
        )

    def render_job(self, job: SimTuningJob) -> dict[str, Any]:
        digits = next(self._digits)
        out: dict[str, Any] = {
            "name": f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/tuningJobs/{job.id}",
            "tunedModelDisplayName": job.display_name,
            "baseModel": "gemini-2.0-flash-001",
            "state": job.state,
            "createTime": stamp(job.create_ns, digits),
            "updateTime": stamp(job.update_ns, digits),
            "supervisedTuningSpec": {"trainingDatasetUri": "gs://sim-bucket/train.jsonl"},
        }
        if job.state != "JOB_STATE_QUEUED":
            out["startTime"] = stamp(job.create_ns, digits)
        if job.end_ns is not None:
            out["endTime"] = stamp(job.end_ns, digits)
        if job.state == "JOB_STATE_SUCCEEDED":
            model = f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/models/{job.id[:10]}"
            out["tunedModel"] = {
                "model": model + "@1",
                "endpoint": f"projects/{PROJECT_NUMBER}/endpoints/{job.id[-8:]}",
            }
        if job.state == "JOB_STATE_FAILED":
            out["error"] = {"code": 3, "message": _FAILURE}
        return out | job.overrides

    def job_in_scope(self, request: Request) -> bool:
        # The project by its id (as configured) or its number (as names carry it).
        project, location = request.path_params["project"], request.path_params["location"]
        return project in (PROJECT, PROJECT_NUMBER) and location == LOCATION

    async def _list_jobs(self, request: Request) -> Response:
        return await self.answer_token_list(
            request, "tuningJobs", self.page_size, created=lambda j: (j.create_ns, j.id)
        )
