"""Security of the Elasticsearch test server: principals, API keys with role descriptors, and the
privilege check every request passes, in Elasticsearch's own terms (actions and named privileges).

Sources: x-pack/plugin/core/src/main/java/org/elasticsearch/xpack/core/security/authz/privilege/
`ClusterPrivilegeResolver.java` and `IndexPrivilege.java` (which actions each named privilege grants),
`AuthorizationService.java` / `Exceptions.authorizationError` (the 403 `security_exception` text:
"action [A] is unauthorized for API key id [I] of user [U] on indices [N], this action is granted by
the index privileges [P,…]"), and the docs "Security privileges" and "Create API key"
(`role_descriptors`: an API key with none gets its owner's privileges).
"""

from __future__ import annotations

import base64
import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Named privilege → the action patterns it grants (the subset of actions the server serves). Order
# matters only for messages: it is the order Elasticsearch lists them in ("[monitor,manage,all]",
# "[auto_configure,create_index,manage,all]", "[create_doc,create,index,write,all]").
CLUSTER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "monitor": ("cluster:monitor/*",),
    "manage_index_templates": (
        "indices:admin/template/*",
        "indices:admin/index_template/*",
        "cluster:admin/component_template/*",
    ),
    "read_pipeline": ("cluster:admin/ingest/pipeline/get", "cluster:admin/ingest/pipeline/simulate"),
    "manage_ingest_pipelines": ("cluster:admin/ingest/pipeline/*",),
    "manage_own_api_key": ("cluster:admin/xpack/security/api_key/*",),
    "manage_api_key": ("cluster:admin/xpack/security/api_key/*",),
    "manage": (
        "cluster:monitor/*",
        "cluster:admin/settings/*",
        "cluster:admin/ingest/*",
        "cluster:admin/component_template/*",
        "indices:admin/template/*",
        "indices:admin/index_template/*",
    ),
    "all": ("cluster:*", "indices:admin/template/*", "indices:admin/index_template/*"),
}
INDEX_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "create_doc": (
        "indices:data/write/index:op_type/create",
        "indices:data/write/bulk*",
        "indices:admin/mapping/auto_put",
    ),
    "create": ("indices:data/write/index*", "indices:data/write/bulk*", "indices:admin/mapping/auto_put"),
    "index": (
        "indices:data/write/index*",
        "indices:data/write/update*",
        "indices:data/write/bulk*",
        "indices:admin/mapping/auto_put",
    ),
    "delete": ("indices:data/write/delete*", "indices:data/write/bulk*"),
    "write": ("indices:data/write/*", "indices:admin/mapping/auto_put"),
    "auto_configure": ("indices:admin/auto_create", "indices:admin/mapping/auto_put"),
    "create_index": ("indices:admin/create", "indices:admin/auto_create", "indices:admin/data_stream/create"),
    "view_index_metadata": (
        "indices:admin/get",
        "indices:admin/mappings/get",
        "indices:admin/data_stream/get",
        "indices:admin/resolve/index",
    ),
    "read": ("indices:data/read/*",),
    "delete_index": ("indices:admin/delete", "indices:admin/data_stream/delete"),
    "maintenance": ("indices:admin/refresh*", "indices:admin/flush*", "indices:admin/forcemerge*"),
    "monitor": ("indices:monitor/*",),
    "manage": ("indices:monitor/*", "indices:admin/*"),
    "all": ("indices:*",),
}
# Actions every authenticated principal may run on itself.
ALWAYS_ALLOWED = ("cluster:admin/xpack/security/user/has_privileges", "cluster:admin/xpack/security/user/authenticate")


@dataclass(frozen=True)
class IndexGrant:
    names: tuple[str, ...]
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class Role:
    """The union of some role descriptors: cluster privileges and index grants."""

    cluster: tuple[str, ...] = ()
    indices: tuple[IndexGrant, ...] = ()

    @classmethod
    def from_descriptors(cls, descriptors: Mapping[str, Any]) -> Role:
        cluster: list[str] = []
        indices: list[IndexGrant] = []
        for name, descriptor in descriptors.items():
            if not isinstance(descriptor, Mapping):
                raise ValueError(f"failed to parse role descriptor [{name}]")
            cluster.extend(descriptor.get("cluster", []))
            for entry in descriptor.get("indices", descriptor.get("index", [])):
                names = entry.get("names", [])
                names = [names] if isinstance(names, str) else names
                indices.append(IndexGrant(tuple(names), tuple(entry["privileges"])))
        for privilege in cluster:
            if privilege not in CLUSTER_PRIVILEGES:
                raise ValueError(f"unknown cluster privilege [{privilege}]")
        for grant in indices:
            for privilege in grant.privileges:
                if privilege not in INDEX_PRIVILEGES:
                    raise ValueError(f"unknown index privilege [{privilege}]")
        return cls(tuple(cluster), tuple(indices))

    def allows_cluster(self, action: str) -> bool:
        return any(_grants(CLUSTER_PRIVILEGES[p], action) for p in self.cluster)

    def allows_index(self, action: str, index: str) -> bool:
        return any(
            _grants(INDEX_PRIVILEGES[p], action)
            for grant in self.indices
            if any(fnmatch.fnmatchcase(index, pattern) for pattern in grant.names)
            for p in grant.privileges
        )

    def has_cluster_privilege(self, privilege: str) -> bool:
        """Whether every action `privilege` names is granted (how `_has_privileges` answers)."""
        wanted = CLUSTER_PRIVILEGES.get(privilege, (privilege,))
        return all(self.allows_cluster(action) for action in wanted)

    def has_index_privilege(self, privilege: str, index: str) -> bool:
        wanted = INDEX_PRIVILEGES.get(privilege, (privilege,))
        return all(self.allows_index(action, index) for action in wanted)


SUPERUSER = Role(("all",), (IndexGrant(("*",), ("all",)),))


def _grants(patterns: Iterable[str], action: str) -> bool:
    # An action given as a pattern (from a privilege being compared) is granted when a granting
    # pattern covers it: `cluster:*` covers `cluster:monitor/*`.
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in patterns)


def granting(kind: str, action: str) -> list[str]:
    """Names of the privileges that grant `action`, as the 403 message lists them."""
    table = CLUSTER_PRIVILEGES if kind == "cluster" else INDEX_PRIVILEGES
    return [name for name, patterns in table.items() if _grants(patterns, action)]


@dataclass
class Principal:
    """Who a request authenticated as: a user, or an API key (`key_id` set) owned by a user."""

    username: str
    role: Role
    key_id: str | None = None
    roles: tuple[str, ...] = ("superuser",)

    def who(self) -> str:
        if self.key_id is not None:
            return f"API key id [{self.key_id}] of user [{self.username}]"
        return f"user [{self.username}] with effective roles [{','.join(self.roles)}]"


@dataclass(frozen=True)
class Denied:
    """A failed privilege check: the 403 `security_exception` reason."""

    reason: str


def deny_cluster(principal: Principal, action: str) -> Denied:
    privileges = ",".join(granting("cluster", action))
    return Denied(
        f"action [{action}] is unauthorized for {principal.who()}, this action is granted by the cluster "
        f"privileges [{privileges}]"
    )


def deny_index(principal: Principal, action: str, indices: Sequence[str], shown: str | None = None) -> Denied:
    privileges = ",".join(granting("index", action))
    return Denied(
        f"action [{shown or action}] is unauthorized for {principal.who()} on indices [{', '.join(indices)}], "
        f"this action is granted by the index privileges [{privileges}]"
    )


@dataclass
class Realm:
    """The server's credentials: header value → principal."""

    principals: dict[str, Principal] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.principals)

    def add(self, header: str, principal: Principal) -> None:
        self.principals[header] = principal

    def authenticate(self, header: str | None) -> Principal | None:
        return self.principals.get(header or "")

    def create_api_key(
        self, owner: Principal, name: str, descriptors: Mapping[str, Any] | None
    ) -> tuple[str, str, str]:
        """A new key limited to `descriptors` (the owner's privileges when none): `(id, api_key, encoded)`."""
        role = Role.from_descriptors(descriptors) if descriptors else owner.role
        if descriptors and owner.role != SUPERUSER:
            role = _limited(role, owner.role)
        key_id = base64.urlsafe_b64encode(os.urandom(15)).decode().rstrip("=")
        secret = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        encoded = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        self.add(f"ApiKey {encoded}", Principal(owner.username, role, key_id, (name,)))
        return key_id, secret, encoded


def _limited(role: Role, owner: Role) -> Role:
    """An API key never exceeds its owner: keep only what both grant (coarsely, per privilege name)."""
    cluster = tuple(p for p in role.cluster if owner.has_cluster_privilege(p))
    indices = tuple(
        IndexGrant(g.names, tuple(p for p in g.privileges if all(owner.has_index_privilege(p, n) for n in g.names)))
        for g in role.indices
    )
    return Role(cluster, indices)
