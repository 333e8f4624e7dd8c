"""ARM readers of the Azure OpenAI control plane: deployments, quota usages, the model catalogue.

The only module that knows azure-mgmt-cognitiveservices (api-version 2025-09-01, its default). Each
read goes through the shared Azure HTTP layer (`azure_http`: retries, Retry-After holds, deadline, error
classification) and draws on the same ARM read bucket per (cloud, subscription) as discovery and metric
definitions. Bodies are read raw from the response pages and parsed by `headroom`, so no field the SDK
model drops is lost.
The catalogue changes rarely and is large: it is cached per (subscription, region).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.credentials_async import AsyncTokenCredential
from azure.mgmt.cognitiveservices.aio import CognitiveServicesManagementClient

from metrics_poller import config
from metrics_poller.azure_http import CallError, Capture, Clients, Pacing, Retrier, arm_kwargs, json_pages
from metrics_poller.headroom import (
    Catalogue,
    Deployment,
    Quota,
    parse_catalogue,
    parse_deployments,
    parse_usages,
)
from metrics_poller.model import Account

T = TypeVar("T")

# A failed catalogue read is not retried by every cycle: remember the failure this long (seconds).
CATALOGUE_NEGATIVE_TTL = 600.0


class InventoryReadError(Exception):
    """One control-plane read failed; the message is one line without secrets."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class _Cached:
    expires: float
    value: Catalogue | None = None
    error: InventoryReadError | None = None


def _reason(what: str, err: CallError) -> InventoryReadError:
    if err.status == 404:
        return InventoryReadError(f"{what}: not found (deleted?): {err.reason}", 404)
    if err.status == 403:
        return InventoryReadError(f"{what}: forbidden: {err.reason} (needs Reader on this scope)", 403)
    return InventoryReadError(f"{what}: {err.reason}", err.status)


class InventoryReader:
    """Reads deployments per account, usages and the catalogue per (subscription, region)."""

    def __init__(
        self,
        cfg: config.Azure,
        credential: AsyncTokenCredential,
        *,
        catalogue_ttl: float,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
        pacing: Pacing | None = None,
    ) -> None:
        self._clock = clock
        self._catalogue_ttl = catalogue_ttl
        # Its own slots: control-plane reads never hold a slot a metrics request is waiting for.
        self._retrier = Retrier(cfg, asyncio.Semaphore(concurrency), clock, pacing=pacing)
        self._clients = Clients(
            lambda subscription: CognitiveServicesManagementClient(credential, subscription, **arm_kwargs(cfg))
        )
        self._catalogues: dict[tuple[str, str], _Cached] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Catalogue]] = {}

    async def close(self) -> None:
        await self._clients.close()

    async def _read_pages(
        self,
        route: str,
        pages: Callable[[Capture], AsyncIterator[Any]],
        parse: Callable[[list[Any]], T],
        subscription_id: str,
        deadline: float,
    ) -> T:
        """One paged ARM list, every page read raw (the SDK's models are skipped) and parsed whole."""

        async def call(capture: Capture) -> None:
            async for _ in pages(capture):
                pass

        return await self._retrier.run(
            route, call, lambda _v, capture: parse(json_pages(capture)), deadline, subscription_id=subscription_id
        )

    async def deployments(self, account: Account, deadline: float) -> list[Deployment]:
        """Deployments_List of one account, every page. Raises `InventoryReadError`."""
        client = self._clients.get(account.subscription_id)
        try:
            return await self._read_pages(
                "deployments",
                lambda capture: client.deployments.list(account.resource_group, account.name, **capture.hooks()),
                parse_deployments,
                account.subscription_id,
                deadline,
            )
        except CallError as err:
            raise _reason("deployments", err) from None

    async def usages(self, subscription_id: str, region: str, deadline: float) -> list[Quota]:
        """Usages_List: the subscription's quota rows in one region. Raises `InventoryReadError`."""
        client = self._clients.get(subscription_id)
        try:
            return await self._read_pages(
                "usages",
                lambda capture: client.usages.list(region, **capture.hooks()),
                parse_usages,
                subscription_id,
                deadline,
            )
        except CallError as err:
            raise _reason(f"quota usages of {subscription_id}/{region}", err) from None

    async def catalogue(self, subscription_id: str, region: str, deadline: float) -> Catalogue:
        """Models_List of one region, cached per (subscription, region); concurrent callers share one
        read. Raises `InventoryReadError` (remembered for a while, so a forbidden scope is not hammered)."""
        key = (subscription_id.lower(), region.lower())
        cached = self._catalogues.get(key)
        if cached is not None and cached.expires > self._clock():
            if cached.error is not None:
                raise cached.error
            assert cached.value is not None
            return cached.value
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._read_catalogue(key, subscription_id, region, deadline))
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(future)

    def _forget(self, key: tuple[str, str], done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved, so an unawaited failure is never logged as lost

    async def _read_catalogue(
        self, key: tuple[str, str], subscription_id: str, region: str, deadline: float
    ) -> Catalogue:
        client = self._clients.get(subscription_id)
        try:
            value = await self._read_pages(
                "models",
                lambda capture: client.models.list(region, **capture.hooks()),
                parse_catalogue,
                subscription_id,
                deadline,
            )
        except CallError as err:
            error = _reason(f"model catalogue of {subscription_id}/{region}", err)
            self._catalogues[key] = _Cached(self._clock() + CATALOGUE_NEGATIVE_TTL, error=error)
            raise error from None
        self._catalogues[key] = _Cached(self._clock() + self._catalogue_ttl, value=value)
        return value
