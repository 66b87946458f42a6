"""Paged lists, read the same guarded way by every source.

An API's cursor is outside input like any other: a token it repeats, or one that is
new every time for ever, must end the listing rather than the watcher. One
:func:`paginate` guards both (a repeated token, a page cap); one :func:`read_listing`
parses each entry, keeps the unreadable ones apart and reads a job that two pages
both list only once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from ftwatch.model import ModelInfo, ModelListing
from ftwatch.sources.base import InvalidModelIdError, SourceUnavailableError
from ftwatch.sources.fields import BadDataError, item_id

__all__ = ["every_page", "paginate", "read_listing", "token_listing"]

#: One page: its entries and the cursor of the next (``None``: the last page).
Page = tuple[list[Any], str | None]


async def paginate(
    endpoint: str, fetch: Callable[[str | None], Awaitable[Page]], *, max_pages: int, cursor_name: str = "page cursor"
) -> AsyncIterator[list[Any]]:
    """Each page's entries, following the cursor ``fetch(cursor)`` returns, from
    ``None`` (the first page). :class:`SourceUnavailableError` when the API repeats a
    cursor or keeps answering past ``max_pages``; ``cursor_name`` is the API's word
    for its cursor, for that message."""
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        items, cursor = await fetch(cursor)
        yield items
        if not cursor:
            return
        if cursor in seen:
            raise SourceUnavailableError(f"{endpoint}: the API repeated its {cursor_name}")
        seen.add(cursor)
    raise SourceUnavailableError(
        f"{endpoint}: still more pages after {max_pages}; raise max_pages for this source if that many are real"
    )


async def token_listing(
    get: Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]],
    endpoint: str,
    path: str,
    collection: str,
    *,
    page_size: int,
    max_pages: int,
) -> tuple[list[Any], int]:
    """Every entry of a ``pageSize``/``pageToken`` list (Google's APIs, Fireworks'),
    and the pages it took. proto3 JSON leaves an empty list out: ``{}`` is none."""

    async def fetch(token: str | None) -> Page:
        params: dict[str, Any] = {"pageSize": page_size} | ({"pageToken": token} if token else {})
        body = await get(endpoint, path, params)
        items = body.get(collection, [])
        if not isinstance(items, list):
            raise SourceUnavailableError(f"{endpoint}: {collection} is not a list")
        following = body.get("nextPageToken")
        return items, following if isinstance(following, str) and following else None

    return await every_page(paginate(endpoint, fetch, max_pages=max_pages, cursor_name="nextPageToken"))


async def every_page(pages: AsyncIterator[list[Any]]) -> tuple[list[Any], int]:
    """All the entries of a paged list, and how many pages (requests) it took."""
    entries: list[Any] = []
    count = 0
    async for page in pages:
        entries.extend(page)
        count += 1
    return entries, count


def read_listing(entries: Iterable[Any], parse: Callable[[Any], ModelInfo], id_key: str, requests: int) -> ModelListing:
    """Every readable entry once (the first page to list a job wins: lists are read
    newest first), the unreadable ones apart by id."""
    models: dict[str, ModelInfo] = {}
    rejected: dict[str, str] = {}
    for raw in entries:
        try:
            info = parse(raw)
        except (BadDataError, InvalidModelIdError, ValueError) as exc:
            rejected[item_id(raw, id_key)] = str(exc)
            continue
        models.setdefault(info.id, info)
    return ModelListing(list(models.values()), requests, rejected)
