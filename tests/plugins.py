"""A third party's source, as an installed distribution would bring it: a module and
an entry point in a directory of its own, found through ``PYTHONPATH``.

``AcmeSource`` reads its jobs from a JSON file (id -> [name, status]) in Acme's own
status words; ``InterruptedAcmeSource`` is the same source that, mid-read, receives
the SIGTERM a supervisor sends, while its own code (not the event loop) is running.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ACME_WORDS", "install_plugin"]

ACME_WORDS = {"WAITING": "queued", "TRAINING": "running", "SHIPPED": "ready", "BROKEN": "failed"}

_MODULE = """
import json
import os
import signal
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from ftwatch.model import ModelInfo, ModelListing
from ftwatch.sources.base import ModelNotFoundError, SourceConfig
from ftwatch.sources.protocol import SourceKind
from ftwatch.statuses import Vocabulary


class AcmeConfig(SourceConfig):
    jobs_file: Path


class AcmeSource:
    provider = "acme"
    kind = SourceKind.SNAPSHOT
    vocabulary = Vocabulary("acme", WORDS)
    config_model: ClassVar[type[BaseModel]] = AcmeConfig

    def __init__(self, config):
        self._file = config.jobs_file

    @classmethod
    def from_config(cls, config, deps):
        return cls(config)

    def _jobs(self):
        return {job_id: ModelInfo(job_id, name, status) for job_id, (name, status) in json.loads(
            self._file.read_text()).items()}

    async def list_models(self):
        jobs = self._jobs()
        return ModelListing(list(jobs.values()), 1)

    async def get_model(self, model_id):
        try:
            return self._jobs()[model_id]
        except KeyError:
            raise ModelNotFoundError(model_id) from None

    async def list_events(self, model_id, newer_than_ns=None):
        return []


class InterruptedAcmeSource(AcmeSource):
    provider = "acme-interrupted"

    def _jobs(self):
        os.kill(os.getpid(), signal.SIGTERM)
        # Python runs the handler between two of these steps: inside this task.
        sum(range(100_000))
        return super()._jobs()
"""


def install_plugin(root: Path) -> Path:
    """The plug-in as an installed distribution under ``root``; the directory to put
    on ``PYTHONPATH``. Its entry points: ``acme`` and ``acme-interrupted``."""
    site = root / "site"
    (site / "acme_source-1.0.dist-info").mkdir(parents=True)
    (site / "acme_ftwatch.py").write_text(_MODULE.replace("WORDS", repr(ACME_WORDS)))
    (site / "acme_source-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-source\nVersion: 1.0\n"
    )
    (site / "acme_source-1.0.dist-info" / "entry_points.txt").write_text(
        "[ftwatch.sources]\nacme = acme_ftwatch:AcmeSource\nacme-interrupted = acme_ftwatch:InterruptedAcmeSource\n"
    )
    return site
