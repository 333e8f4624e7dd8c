"""Entra ID (v2.0 endpoints) as MSAL uses them for the client-credentials flow (pure)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs

from metrics_poller.simulator.api import Reply

TOKEN_LIFETIME = 3599


def openid_configuration(url: str, tenant: str, tenant_id: str) -> Reply:
    """The discovery document MSAL reads before it asks for a token."""
    if tenant.lower() != tenant_id.lower():
        return _oauth_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
    base = f"{url}/{tenant_id}"
    return Reply(
        200,
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        },
    )


def issue_token(
    tenant: str, body: bytes, tenant_id: str, client_id: str, client_secret: str
) -> tuple[Reply, str | None, str | None]:
    """Answer a client-credentials token request: (reply, token, audience it is bound to)."""
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    if tenant.lower() != tenant_id.lower():
        return _oauth_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found."), None, None
    if form.get("grant_type") != "client_credentials":
        message = f"The grant type '{form.get('grant_type', '')}' is not supported by this simulator."
        return _oauth_error(400, "unsupported_grant_type", 70003, message), None, None
    if form.get("client_id") != client_id:
        message = f"Application with identifier '{form.get('client_id', '')}' was not found in the directory."
        return _oauth_error(400, "unauthorized_client", 700016, message), None, None
    if form.get("client_secret") != client_secret:
        message = (
            f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value, not the client secret ID, for a secret added to app '{client_id}'."
        )
        return _oauth_error(401, "invalid_client", 7000215, message), None, None
    audience = _audience(form.get("scope", ""))
    if audience is None:
        message = (
            f"The provided value for scope '{form.get('scope', '')}' is not valid. Client credential flows "
            "must have a scope value with /.default suffixed to the resource identifier."
        )
        return _oauth_error(400, "invalid_scope", 1002012, message), None, None
    token = secrets.token_urlsafe(32)
    reply = Reply(
        200,
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        },
    )
    return reply, token, audience


def _audience(scope: str) -> str | None:
    for item in scope.split():
        if item.endswith("/.default"):
            return item.removesuffix("/.default").rstrip("/")
    return None


def _oauth_error(status: int, error: str, code: int, message: str) -> Reply:
    body: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: {message}",
        "error_codes": [code],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": "00000000-0000-0000-0000-000000000000",
        "correlation_id": "00000000-0000-0000-0000-000000000000",
    }
    return Reply(status, body)
