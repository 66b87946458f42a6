"""SIGHUP: read the configuration again and hand each running part its new config.

Two halves, so the poll loop is never held up: :meth:`Reloader.load` reads and builds
the new configuration off the loop (a broken one is refused at once, and the old one
stays in force); :meth:`Reloader.apply` runs between two cycles and gives each part its
own new config (the pollers theirs, the dispatcher its retry policy and notifiers, the
loop and the health their interval). What a reload cannot apply is what the daemon
built once (:class:`BuiltOnce`): a change there is named as needing a restart, and
keeps its old value, so the warning stays true on every reload until a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import anyio
import structlog
from pydantic import BaseModel

from ftwatch.app import wiring
from ftwatch.app.reload_sources import SourcesPlan, plan_sources
from ftwatch.errors import ConfigError
from ftwatch.notifiers.registry import LoadedNotifier
from ftwatch.ops.logs import set_log_level
from ftwatch.poller import Poller
from ftwatch.settings import CohereSettings, HttpSettings, Settings, StateSettings, load_settings, source_specs
from ftwatch.sources.base import SourceSpec

__all__ = ["BuiltOnce", "Reloader", "changed_keys"]

log = structlog.get_logger("ftwatch.daemon")


@dataclass(frozen=True, slots=True)
class BuiltOnce:
    """The sections the daemon builds its parts from once: the API client and the
    legacy source (``[cohere]``), the state (``[state]``), the listener (``[http]``)."""

    cohere: CohereSettings
    state: StateSettings
    http: HttpSettings

    @classmethod
    def of(cls, settings: Settings) -> BuiltOnce:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def changed(self, new: BuiltOnce) -> list[str]:
        """The dotted keys that differ from ``new``'s."""
        return sorted(
            f"{f.name}.{key}" for f in fields(self) for key in _differing(getattr(self, f.name), getattr(new, f.name))
        )


def _differing(old: BaseModel, new: BaseModel) -> list[str]:
    return [key for key in type(old).model_fields if getattr(old, key) != getattr(new, key)]


def changed_keys(old: Settings, new: Settings) -> set[str]:
    """Dotted names of the keys that differ between two configurations."""
    changed: set[str] = set()
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            changed |= {f"{name}.{key}" for key in _differing(before, after)}
        else:
            changed.add(name)
    return changed


@dataclass(frozen=True, slots=True)
class _Loaded:
    settings: Settings
    notifiers: list[LoadedNotifier]
    plan: SourcesPlan
    built: dict[str, Poller]


class Reloader:
    """The reloads of one running daemon (see the module)."""

    def __init__(
        self,
        runtime: wiring.Runtime,
        config_path: Path | None,
        build_poller: Callable[[Settings, SourceSpec], Poller],
    ) -> None:
        self.runtime = runtime
        self.config_path = config_path
        self.build_poller = build_poller
        self._loaded: _Loaded | None = None
        #: Each running source's config, and the webhook config its route was built with.
        specs = source_specs(runtime.settings)
        self._sources_in_force = {spec.name: spec.config for spec in specs}
        self._pushes_in_force = {spec.name: spec.webhook for spec in specs}

    async def load(self) -> None:
        """Read and build the new configuration now, off the loop; the loop is woken
        to apply it between two cycles."""
        runtime = self.runtime
        runtime.observers.systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        path = str(self.config_path) if self.config_path else None
        try:
            settings, _ = await anyio.to_thread.run_sync(load_settings, path)
            notifiers = await anyio.to_thread.run_sync(wiring.load_notifiers, settings, runtime.context)
            specs = source_specs(settings)
            plan = plan_sources(self._sources_in_force, self._pushes_in_force, specs, legacy=settings.cohere)
            # The new and changed sources are built here, off the loop (their keys read).
            built = await anyio.to_thread.run_sync(self._build, settings, plan)
        except ConfigError as exc:
            log.error("reload.failed", error=str(exc), note="the previous configuration stays in force")
            runtime.observers.systemd.notify("READY=1")
            return
        self._loaded = _Loaded(settings, notifiers, plan, built)
        runtime.loop.wake()

    def _build(self, settings: Settings, plan: SourcesPlan) -> dict[str, Poller]:
        specs = {spec.name: spec for spec in source_specs(settings)}
        return {name: self.build_poller(settings, specs[name]) for name in plan.to_build}

    def apply(self) -> None:
        """Hand the loaded configuration to each part (between two cycles)."""
        if self._loaded is None:
            return
        loaded, self._loaded = self._loaded, None
        runtime, settings = self.runtime, loaded.settings
        self._swap_sources(settings, loaded.plan, loaded.built)
        wiring.reconfigure(runtime.group, runtime.dispatcher, settings, loaded.notifiers)
        runtime.loop.reconfigure(settings)
        runtime.observers.health.reconfigure(settings.poll.interval_s)
        runtime.observers.metrics.poll_interval.set(settings.poll.interval_s)
        set_log_level(settings.log_level)
        old = BuiltOnce.of(runtime.settings)
        restart = old.changed(BuiltOnce.of(settings))
        if restart or loaded.plan.restart_needed:
            log.warning(
                "reload.restart_needed",
                keys=restart + list(loaded.plan.restart_needed),
                note="these keep their old values until a restart",
            )
        applied = changed_keys(runtime.settings, settings) - set(restart)
        # What needs a restart keeps its old value, so the warning stays true.
        runtime.settings = settings.model_copy(update={f.name: getattr(old, f.name) for f in fields(old)})
        log.info(
            "reload.done",
            applied=sorted(applied),
            models=len(runtime.group.models) or "all",
            notifiers=[n.key for n in loaded.notifiers],
        )
        runtime.observers.systemd.notify("READY=1")

    def _swap_sources(self, settings: Settings, plan: SourcesPlan, built: dict[str, Poller]) -> None:
        """Start, stop and restart the pollers the plan names; the others go on."""
        if not (plan.added or plan.removed or plan.restarted):
            return
        group = self.runtime.group
        running = {poller.name: poller for poller in group.pollers}
        specs = source_specs(settings)
        group.swap([built.get(spec.name) or running[spec.name] for spec in specs])
        self._sources_in_force = {spec.name: spec.config for spec in specs}
        self.runtime.observers.metrics.source_up.clear()  # a removed source's series goes; the next cycle sets the rest
        log.info("reload.sources", added=list(plan.added), removed=list(plan.removed), restarted=list(plan.restarted))
