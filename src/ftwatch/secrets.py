"""Where keys and secrets come from: small provider objects, read when asked.

The wiring builds them from the settings (which only say *where*); a source receives
a provider, not a settings type, and reads it again when the API refuses the key. A
value is a :class:`pydantic.SecretStr` from the moment it is read, so no log call or
``repr`` can print it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from ftwatch.errors import ConfigError

__all__ = [
    "AZURE_OPENAI_KEY",
    "AZURE_OPENAI_TOKEN",
    "COHERE_KEY",
    "FIREWORKS_KEY",
    "OPENAI_KEY",
    "TOGETHER_KEY",
    "EnvSecret",
    "FileSecret",
    "FirstOf",
    "KeyPlaces",
    "SecretProvider",
    "api_key",
    "cohere_key",
    "inline_or_file",
    "openai_key",
    "read_secret",
]


class SecretProvider(Protocol):
    """One place a secret is kept."""

    def describe(self) -> str:
        """Where it is read from, for messages; never the value."""
        ...

    def present(self) -> bool:
        """Whether this place holds something (a chain takes the first that does)."""
        ...

    def read(self) -> SecretStr:
        """The value; :class:`ConfigError` naming the place and the fix if it cannot be."""
        ...


def inline_or_file(key: str, value: SecretStr | None, path: Path | None) -> str | None:
    """A config's secret ``key``, given inline or as ``{key}_file`` (exactly one): the
    inline text, or ``None`` when it is the file (read later, by the application);
    :class:`ValueError` naming both keys when neither or both are given."""
    if (value is None) == (path is None):
        raise ValueError(f"needs {key} or {key}_file (one of them)")
    return None if value is None else value.get_secret_value()


def read_secret(path: Path) -> SecretStr:
    """A file's content, stripped, as a secret; :class:`ValueError` saying why it cannot be."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"{path} is empty")
    return SecretStr(value)


@dataclass(frozen=True, slots=True)
class FileSecret:
    """A file: a mounted Kubernetes Secret, a systemd credential, a ``*_file`` setting."""

    path: Path
    #: What it holds, for messages ("the API key (cohere.api_key_file)").
    what: str
    #: Only when it exists (a systemd credential that may not be there).
    optional: bool = False
    #: What kind of file, for messages.
    kind: str = "file"

    def describe(self) -> str:
        return f"{self.kind} {self.path}"

    def present(self) -> bool:
        return not self.optional or self.path.is_file()

    def read(self) -> SecretStr:
        try:
            return read_secret(self.path)
        except ValueError as exc:
            raise ConfigError(f"{self.what}: {exc}; fix the path, its permissions or its content") from None


@dataclass(frozen=True, slots=True)
class EnvSecret:
    """An environment variable."""

    name: str
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def describe(self) -> str:
        return f"environment {self.name}"

    def present(self) -> bool:
        return bool(self.environ.get(self.name, "").strip())

    def read(self) -> SecretStr:
        value = self.environ.get(self.name, "").strip()
        if not value:
            raise ConfigError(f"{self.name} is empty: set it, or configure the secret elsewhere")
        return SecretStr(value)


@dataclass(frozen=True, slots=True)
class FirstOf:
    """The first of several places that holds something; an API key, so it must be
    plain ASCII (it goes into a header)."""

    candidates: Sequence[SecretProvider]
    #: The message when none holds anything: names every place and the fix.
    missing: str

    def _chosen(self) -> SecretProvider | None:
        return next((candidate for candidate in self.candidates if candidate.present()), None)

    def describe(self) -> str:
        chosen = self._chosen()
        return chosen.describe() if chosen is not None else "none"

    def present(self) -> bool:
        return self._chosen() is not None

    def read(self) -> SecretStr:
        chosen = self._chosen()
        if chosen is None:
            raise ConfigError(self.missing)
        return _plain_key(chosen.read(), chosen.describe())


def _plain_key(key: SecretStr, where: str) -> SecretStr:
    """A key goes into an HTTP header: printable ASCII only, said plainly if not."""
    value = key.get_secret_value()
    if value.startswith("\ufeff"):
        raise ConfigError(f"the API key in {where} starts with a byte-order mark: save it as plain ASCII text")
    if not (value.isascii() and value.isprintable()):
        raise ConfigError(
            f"the API key in {where} has non-ASCII or control characters: it must be the key alone, in plain ASCII"
        )
    return key


@dataclass(frozen=True, slots=True)
class KeyPlaces:
    """Where a provider's key may be, besides an ``api_key_file``: its environment
    variables (the first set wins) and its systemd credential."""

    provider: str
    variables: tuple[str, ...]
    credential: str


COHERE_KEY = KeyPlaces("Cohere", ("CO_API_KEY", "COHERE_API_KEY"), "cohere-api-key")
OPENAI_KEY = KeyPlaces("OpenAI", ("OPENAI_API_KEY",), "openai-api-key")
TOGETHER_KEY = KeyPlaces("Together", ("TOGETHER_API_KEY",), "together-api-key")
AZURE_OPENAI_KEY = KeyPlaces("Azure OpenAI", ("AZURE_OPENAI_API_KEY",), "azure-openai-api-key")
#: An Entra ID token instead of a key (sent as a Bearer).
AZURE_OPENAI_TOKEN = KeyPlaces("Azure OpenAI Entra token", ("AZURE_OPENAI_AD_TOKEN",), "azure-openai-ad-token")
FIREWORKS_KEY = KeyPlaces("Fireworks", ("FIREWORKS_API_KEY",), "fireworks-api-key")


def api_key(
    places: KeyPlaces, api_key_file: Path | None, environ: Mapping[str, str], *, where: str, file_label: str
) -> FirstOf:
    """A provider's key: its ``api_key_file`` (alone, when given), else the first of
    its variables that is set, else its systemd credential."""
    candidates: list[SecretProvider] = []
    if api_key_file is not None:
        candidates.append(FileSecret(api_key_file, f"the API key ({file_label})"))
    else:
        candidates += [EnvSecret(name, environ) for name in places.variables]
        if directory := environ.get("CREDENTIALS_DIRECTORY"):
            path = Path(directory) / places.credential
            candidates.append(
                FileSecret(path, "the API key (systemd credential)", optional=True, kind="systemd credential")
            )
    return FirstOf(
        candidates,
        missing=f"no {places.provider} API key: set {places.variables[0]}, or api_key_file in {where},"
        f" or the systemd credential {places.credential}",
    )


def cohere_key(api_key_file: Path | None, environ: Mapping[str, str], where: str = "[cohere]") -> FirstOf:
    """Cohere's key: ``api_key_file``, else ``CO_API_KEY``, else ``COHERE_API_KEY``,
    else the systemd credential ``cohere-api-key``."""
    return api_key(COHERE_KEY, api_key_file, environ, where=where, file_label="cohere.api_key_file")


def openai_key(api_key_file: Path | None, environ: Mapping[str, str], where: str = "[[sources]]") -> FirstOf:
    """OpenAI's key: ``api_key_file``, else ``OPENAI_API_KEY``, else the systemd
    credential ``openai-api-key``."""
    return api_key(OPENAI_KEY, api_key_file, environ, where=where, file_label=f"{where} api_key_file")
