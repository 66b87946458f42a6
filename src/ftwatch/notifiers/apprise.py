"""The Apprise bridge: every service Apprise knows (Teams, Discord, e-mail, ntfy, …).

Optional: ``pip install 'ftwatch[apprise]'``. Apprise is synchronous, so each send
runs in a worker thread; the outbox, retries and pacing are the dispatcher's, as for
every notifier.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from pydantic import Field, SecretStr

from ftwatch.model import Transition
from ftwatch.notifiers.base import DeliveryFailedError, NotifierConfig, NotifierContext, TemplatedConfig
from ftwatch.wording import headline, text_line

if TYPE_CHECKING:
    import apprise as apprise_module

    from ftwatch.templates import Template

__all__ = ["AppriseConfig", "AppriseNotifier"]

_INSTALL = "the apprise notifier needs Apprise: pip install 'ftwatch[apprise]'"


def _import_apprise() -> Any:
    try:
        import apprise  # noqa: PLC0415 - optional dependency, imported only when configured
    except ImportError:
        raise ValueError(_INSTALL) from None
    return apprise


def _notify(target: Any, body: str, title: str) -> bool:
    return bool(target.notify(body=body, title=title))


class AppriseConfig(TemplatedConfig):
    #: Apprise URLs (``json://``, ``discord://``, ``mailto://`` …); they hold tokens.
    urls: list[SecretStr] = Field(min_length=1)


class AppriseNotifier:
    """Sends title and body through Apprise to every configured URL."""

    config_model: ClassVar[type[NotifierConfig]] = AppriseConfig
    min_interval_s = 0.0

    def __init__(self, urls: list[str], template: Template | None = None) -> None:
        apprise = _import_apprise()
        # Apprise logs a service's URL on failure, and URLs hold tokens.
        logging.getLogger("apprise").setLevel(logging.ERROR)
        # One Apprise object per URL, so one delivery can tell which URLs have it.
        self._targets: list[tuple[str, apprise_module.Apprise]] = []
        for url in urls:
            scheme = url.partition("://")[0]
            target = apprise.Apprise()
            if not target.add(url):
                raise ValueError(f"Apprise does not understand a {scheme}:// URL (or it is malformed)")
            self._targets.append((scheme, target))
        #: The transition being delivered, and the URLs that already have it: a retry
        #: goes only to those that failed (kept in memory: after a restart, all again).
        self._progress: tuple[str, set[int]] = ("", set())
        self._template = template
        self.identity = "\n".join(sorted(urls))
        schemes = sorted({url.partition("://")[0] for url in urls})
        self.description = f"apprise {','.join(schemes)}"

    @classmethod
    def from_config(cls, config: AppriseConfig, context: NotifierContext) -> AppriseNotifier:
        return cls([url.get_secret_value() for url in config.urls], config.compiled_template())

    async def send(self, transition: Transition) -> None:
        title = headline(transition)
        body = text_line(transition)
        if self._template is not None:
            body = self._template.render(transition, fallback=body)
        if self._progress[0] != transition.id:
            self._progress = (transition.id, set())
        done = self._progress[1]
        failed: list[str] = []
        for index, (scheme, target) in enumerate(self._targets):
            if index in done:
                continue
            if await anyio.to_thread.run_sync(functools.partial(_notify, target, body, title)):
                done.add(index)
            else:
                failed.append(f"{scheme}://")
        if failed:
            raise DeliveryFailedError(
                f"Apprise could not deliver to {len(failed)} of {len(self._targets)} URLs ({', '.join(failed)})"
            )
