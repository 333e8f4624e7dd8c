"""Entra ID credentials and the transport settings every Azure SDK client shares.

This is the only module that knows azure-identity. Custom authorities (sovereign clouds, Azure Stack,
the simulator) are reached through the same settings a user sets: authority host, CA bundle.
"""

from __future__ import annotations

import logging
import re
import ssl
from functools import cache
from typing import Any

from aiohttp import ClientSession, TCPConnector
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import (
    AzureCliCredential,
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from metrics_poller import __version__, config

log = logging.getLogger(__name__)

PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
USER_AGENT = f"metrics-poller/{__version__}"
# Connecting should be quick; a slow *answer* is bounded by request_timeout instead.
CONNECT_TIMEOUT_CAP = 10.0


_AADSTS = re.compile(r"\b(AADSTS\d+):\s*(.*?\.)(?=\s|$)", re.S)
# aiohttp writes `Cannot connect to host h:443 ssl:<ssl.SSLContext object at 0x…> [cause]`.
_SSL_REPR = re.compile(r"\s+ssl:(?:<[^>]*>|\S+)")


def describe_error(text: str) -> str:
    """An Entra ID or connection error in one short line: the AADSTS code and its first sentence (never
    the JSON body azure-identity appends), and the host and cause of a failed connection without
    aiohttp's `ssl:<SSLContext …>` repr."""
    aadsts = _AADSTS.search(text)
    if aadsts:
        return f"{aadsts.group(1)}: {' '.join(aadsts.group(2).split())}"
    text = text.split("\nContent:", 1)[0]
    return _SSL_REPR.sub("", " ".join(text.split()))


def tls_verify(cfg: config.Azure) -> bool | str:
    """What azure-core's `connection_verify` gets: the CA bundle path, or a bool."""
    if not cfg.verify_tls:
        return False
    return cfg.ca_bundle or True


@cache
def _trust(ca_bundle: str) -> ssl.SSLContext:
    """One TLS context per CA bundle for the whole process."""
    return ssl.create_default_context(cafile=ca_bundle)


def _pooled_transport(ca_bundle: str) -> AioHttpTransport:
    """A transport whose connections carry one shared context and are therefore reused.

    Given a CA *path*, azure-core builds a new SSLContext for every request, and aiohttp pools
    connections by context: every call then paid a TLS handshake and left a connection behind
    (about 480 MB and 9 s of CPU per 10,000-account cycle, BENCHMARKS.md round 3). Needs a running
    event loop, as every client here is created from async code.
    """
    session = ClientSession(connector=TCPConnector(ssl=_trust(ca_bundle)), trust_env=True)
    return AioHttpTransport(session=session, session_owner=True)


def client_kwargs(cfg: config.Azure) -> dict[str, Any]:
    """azure-core keyword arguments for one SDK client (call it once per client: it may hold a transport).

    SDK retries are off (`retry_total=0`): the SDK sleeps Retry-After verbatim and uncapped, so the
    poller runs its own deadline-aware retry loop instead.
    """
    kwargs: dict[str, Any] = {
        "connection_verify": tls_verify(cfg),
        "retry_total": 0,
        "connection_timeout": min(cfg.request_timeout, CONNECT_TIMEOUT_CAP),
        "read_timeout": cfg.request_timeout,
        "user_agent": USER_AGENT,
    }
    if cfg.ca_bundle and cfg.verify_tls:
        # The connector's context verifies; `True` keeps azure-core from passing a per-request one.
        kwargs["transport"] = _pooled_transport(cfg.ca_bundle)
        kwargs["connection_verify"] = True
    return kwargs


def _authority_kwargs(cfg: config.Azure) -> dict[str, Any]:
    authority = cfg.endpoints.authority.rstrip("/")
    if authority.lower() == PUBLIC_AUTHORITY:
        return {}
    # MSAL would otherwise ask login.microsoftonline.com to validate an authority it does not know,
    # which fails in sovereign/air-gapped clouds; no environment variable turns that off.
    return {"authority": authority, "disable_instance_discovery": True}


def build_credential(cfg: config.Azure) -> AsyncTokenCredential:
    """The async credential named by `azure.credential.type`; the caller closes it."""
    cred = cfg.credential
    if tls_verify(cfg) is False:
        log.warning("azure.verify_tls is false: TLS certificates of Azure endpoints are NOT verified")
    common: dict[str, Any] = {"connection_verify": tls_verify(cfg), **_authority_kwargs(cfg)}
    if cred.type == "client_secret":
        assert cred.tenant_id and cred.client_id and cred.client_secret  # enforced by config validation
        return ClientSecretCredential(
            cred.tenant_id, cred.client_id, cred.client_secret.get_secret_value(), **common
        )
    if cred.type == "certificate":
        assert cred.tenant_id and cred.client_id and cred.certificate_path  # enforced by config validation
        password = cred.certificate_password.get_secret_value() if cred.certificate_password else None
        try:
            return CertificateCredential(
                cred.tenant_id, cred.client_id, cred.certificate_path, password=password, **common
            )
        except (OSError, ValueError, TypeError) as exc:  # unreadable file, not PEM/PKCS12, wrong password
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            if password:
                reason = reason.replace(password, "***")
            raise config.ConfigError(
                [f"config: azure.credential.certificate_path: cannot load the certificate ({reason})"]
            ) from None
    if cred.type == "managed_identity":
        # IMDS / App Service endpoints are local and authority-free.
        return ManagedIdentityCredential(client_id=cred.client_id, connection_verify=tls_verify(cfg))
    if cred.type == "workload_identity":
        # Unset fields fall back to the AKS webhook's AZURE_* variables inside azure-identity.
        return WorkloadIdentityCredential(
            tenant_id=cred.tenant_id,
            client_id=cred.client_id,
            token_file_path=cred.federated_token_file,
            **common,
        )
    if cred.type == "azure_cli":
        return AzureCliCredential(tenant_id=cred.tenant_id or "")
    extra: dict[str, Any] = {}
    if cred.client_id:
        extra["managed_identity_client_id"] = cred.client_id
    return DefaultAzureCredential(**common, **extra)


def secret_values(cfg: config.Azure) -> tuple[str, ...]:
    """Configured secret strings, so error messages can be scrubbed of them before they are logged."""
    cred = cfg.credential
    return tuple(
        s.get_secret_value() for s in (cred.client_secret, cred.certificate_password) if s is not None
    )
