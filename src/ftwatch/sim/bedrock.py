"""A simulated AWS Bedrock model-customization control plane, over real HTTP on 127.0.0.1.

As the real one is: ``GET /model-customization-jobs`` with ``maxResults`` (1 to 1000)
and an opaque ``nextToken``, ``GET /model-customization-jobs/{jobIdentifier}`` (name
or ARN) with ``failureMessage``; ISO 8601 times; errors as ``{"message": …}`` with
``x-amzn-ErrorType``. Every request must carry a valid SigV4 signature (service
``bedrock``), checked here by its own implementation of the algorithm, independent
of the client's botocore: a wrong signature, an unknown key or a stale date is 403.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Unpack

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ftwatch.model import format_timestamp
from ftwatch.sim.kit import Fault, SimOptions, SimServer, running_in_thread

__all__ = ["ACCESS_KEY", "SECRET_KEY", "BedrockSimulator", "Fault", "SimCustomizationJob", "running_in_thread"]

ACCESS_KEY = "AKIASIMULATEDBEDROCK"
SECRET_KEY = "sim/secret/key/for/the/bedrock/simulator0"  # noqa: S105 - the simulator's own, public
REGION = "us-east-1"
_ACCOUNT = "123456789012"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What SigV4 signs of a request: as it came on the wire, and the headers it
    says it signed (``SignedHeaders``), with the date, region and service of the key."""

    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]
    signed: list[str]
    amz_date: str
    region: str
    service: str


def sigv4_signature(secret: str, request: SignedRequest) -> str:
    """The SigV4 signature of a request, from AWS's description of the algorithm."""
    # Non-S3 services sign the path URI-encoded once more.
    canonical_uri = urllib.parse.quote(request.raw_path or "/", safe="/~")
    query = request.raw_query
    pairs = sorted(tuple(pair.partition("=")[::2]) for pair in query.split("&") if pair) if query else []
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    signed = request.signed
    canonical_headers = "".join(f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed)
    canonical = "\n".join(
        [request.method, canonical_uri, canonical_query, canonical_headers, ";".join(signed), _EMPTY_SHA256]
    )
    day, region, service = request.amz_date[:8], request.region, request.service
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", request.amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(slots=True)
class SimCustomizationJob:
    name: str
    status: str
    creation_ns: int
    last_modified_ns: int
    custom_model_name: str
    end_ns: int | None = None
    failure_message: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:bedrock:{REGION}:{_ACCOUNT}:model-customization-job/amazon.titan-text-lite-v1:0:4k/{self.name}"

    @property
    def model_arn(self) -> str:
        return (
            f"arn:aws:bedrock:{REGION}:{_ACCOUNT}:custom-model/amazon.titan-text-lite-v1:0:4k/{self.custom_model_name}"
        )


def _iso(ns: int | None) -> str | None:
    return None if ns is None else format_timestamp(ns, 3)


class BedrockSimulator(SimServer[SimCustomizationJob]):
    """The fake control plane: its jobs, credentials, faults and request log."""

    url_key = "endpoint_url"
    table = (("region", REGION),)

    default_rate_limit = 500

    def __init__(
        self,
        *,
        credentials: dict[str, str] | None = None,
        max_page_size: int = 1000,
        **options: Unpack[SimOptions],
    ) -> None:
        creds = credentials or {ACCESS_KEY: SECRET_KEY}
        # Its keys are the access key ids: a request is signed, not carrying a key.
        super().__init__(**(options | {"keys": tuple(creds)}))
        self.credentials = creds
        self.max_page_size = max_page_size
        #: Why the last refused request was refused (for tests).
        self.refusals: list[str] = []
        self.app = self.jobs_app(
            "/model-customization-jobs", self._list_jobs, one="/{job_id:path}", get_job=self._get_job
        )

    # --- driving it ---------------------------------------------------------------

    provider = "bedrock"
    lifecycle = ("InProgress", "Stopping", "Completed")
    failed_status = "Failed"

    def job_row(self, job: SimCustomizationJob) -> tuple[str, str]:
        return job.name, job.status

    def credentials_env(self, tmp: Path) -> dict[str, str]:
        """The simulator's keys through the standard chain's environment step; no
        profile files and no instance metadata (no network here)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        }

    def add_job(self, name: str, status: str | None = "InProgress", *, created_at_ns: int | None = None) -> str:
        status = status or "InProgress"
        with self._lock:
            now = created_at_ns or self._now_ns()
            job = SimCustomizationJob(name, status, now, now, f"{name}-model")
            if status in ("Completed", "Failed", "Stopped"):
                job.end_ns = now
            self._jobs[name] = job
            return name

    def set_status(self, name: str, status: str, *, failure_message: str | None = None) -> int:
        with self._lock:
            job = self._jobs[name]
            now = self._now_ns()
            job.status = status
            job.last_modified_ns = now
            if status in ("Completed", "Failed", "Stopped"):
                job.end_ns = now
            if status == "Failed":
                job.failure_message = failure_message or "Internal error: the training data could not be read."
            return now

    def touch(self, name: str) -> None:
        """A change that is no status change (progress details): ``lastModifiedTime`` moves."""
        with self._lock:
            self._jobs[name].last_modified_ns = self._now_ns()

    # --- serving ------------------------------------------------------------------

    def error(self, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
        kinds = {
            400: "ValidationException",
            403: "AccessDeniedException",
            404: "ResourceNotFoundException",
            429: "ThrottlingException",
        }
        kind = kinds.get(code, "InternalServerException")
        return JSONResponse(
            {"message": message}, status_code=code, headers=(headers or {}) | {"x-amzn-ErrorType": kind}
        )

    def refused(self) -> Response:
        why = self.refusals[-1] if self.refusals else "The security token included in the request is invalid."
        return self.error(403, why)

    def caller_key(self, request: Request, body: bytes) -> str | None:
        match = _AUTH.match(request.headers.get("authorization", ""))
        if match is None:
            return self._refuse("Missing Authentication Token")
        if match["key"] not in self.credentials:
            return self._refuse("The security token included in the request is invalid.")
        if match["service"] != "bedrock" or match["region"] != REGION:
            return self._refuse(f"Credential should be scoped to a valid region and service bedrock ({REGION}).")
        amz_date = request.headers.get("x-amz-date", "")
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return self._refuse("X-Amz-Date is missing or malformed")
        if abs(time.time() - signed_at) > 300:
            return self._refuse("Signature expired: the request's date is more than 5 minutes off")
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return self._refuse("SignedHeaders must include host and x-amz-date")
        expected = sigv4_signature(
            self.credentials[match["key"]],
            SignedRequest(
                method=request.method,
                raw_path=request.scope.get("raw_path", b"").decode("latin-1") or request.url.path,
                raw_query=request.scope.get("query_string", b"").decode("latin-1"),
                headers={name: request.headers.get(name, "") for name in signed},
                signed=signed,
                amz_date=amz_date,
                region=match["region"],
                service=match["service"],
            ),
        )
        if not hmac.compare_digest(expected, match["signature"]):
            # AWS's own words, with the canonical request it expected after a blank line.
            return self._refuse(
                "The request signature we calculated does not match the signature you provided."
                " Check your AWS Secret Access Key and signing method. Consult the service documentation"
                f" for details.\n\nThe Canonical String for this request should have been\n'{request.method}\n"
                f"{request.url.path}\n'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n{amz_date}'\n"
            )
        return match["key"]

    def _refuse(self, why: str) -> str | None:
        with self._lock:
            self.refusals.append(why)
        return None

    def _summary(self, job: SimCustomizationJob) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobArn": job.arn,
            "baseModelArn": f"arn:aws:bedrock:{REGION}::foundation-model/amazon.titan-text-lite-v1:0:4k",
            "jobName": job.name,
            "status": job.status,
            "lastModifiedTime": _iso(job.last_modified_ns),
            "creationTime": _iso(job.creation_ns),
            "customizationType": "FINE_TUNING",
            "customModelName": job.custom_model_name,
        }
        if job.end_ns is not None:
            out["endTime"] = _iso(job.end_ns)
        if job.status == "Completed":
            out["customModelArn"] = job.model_arn
        return out | job.overrides

    tells_progress: ClassVar[str] = "end"

    def _detail(self, job: SimCustomizationJob) -> dict[str, Any]:
        summary = self._summary(job)
        out: dict[str, Any] = {
            "jobArn": job.arn,
            "jobName": job.name,
            "outputModelName": job.custom_model_name,
            "roleArn": f"arn:aws:iam::{_ACCOUNT}:role/bedrock-customization",
            "status": job.status,
            "creationTime": summary["creationTime"],
            "lastModifiedTime": summary["lastModifiedTime"],
            "baseModelArn": summary["baseModelArn"],
            "hyperParameters": {"epochCount": "2"},
            "trainingDataConfig": {"s3Uri": "s3://sim-bucket/train.jsonl"},
            "outputDataConfig": {"s3Uri": "s3://sim-bucket/out/"},
            "customizationType": "FINE_TUNING",
        }
        if job.end_ns is not None:
            out["endTime"] = summary["endTime"]
        if job.status == "Completed":
            out["outputModelArn"] = job.model_arn
            # All Bedrock tells of training: its final loss, once it has ended.
            out["trainingMetrics"] = {"trainingLoss": 0.4125}
        if job.failure_message:
            out["failureMessage"] = job.failure_message
        return out | job.overrides

    async def _list_jobs(self, request: Request) -> Response:
        query = request.query_params
        try:
            size = int(query.get("maxResults") or 100)
            offset = int(base64.urlsafe_b64decode(query["nextToken"]).decode()) if query.get("nextToken") else 0
        except (ValueError, KeyError):
            return await self.handle(request, "list_models", None, 400)
        if not 1 <= size <= 1000:
            return await self.handle(request, "list_models", None, 400)
        with self._lock:
            descending = query.get("sortOrder", "Descending") == "Descending"
            jobs = sorted(self._jobs.values(), key=lambda j: (j.creation_ns, j.name), reverse=descending)
            size = min(size, self.max_page_size)
            page = [self._summary(job) for job in jobs[offset : offset + size]]
            body: dict[str, Any] = {"modelCustomizationJobSummaries": page}
            if offset + size < len(jobs):
                body["nextToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return await self.handle(request, "list_models", None, body)

    async def _get_job(self, request: Request) -> Response:
        ident = urllib.parse.unquote(request.path_params["job_id"])
        with self._lock:
            name = ident.rsplit("/", 1)[-1] if ident.startswith("arn:") else ident
            job = self._jobs.get(name)
            body: Any = self._detail(job) if job else 404
        return await self.handle(request, "get_model", name, body)
