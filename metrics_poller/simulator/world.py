"""The simulated estate: subscriptions, resource groups, accounts and deployments (pure, seeded)."""

from __future__ import annotations

from dataclasses import dataclass

from metrics_poller.simulator.hashing import guid, key64, mix64, pick, uniform
from metrics_poller.simulator.spec import SimAccount, SimAgent, SimDeployment, SimSpec

ACCOUNT_TYPE = "Microsoft.CognitiveServices/accounts"
PROJECT_TYPE = "Microsoft.CognitiveServices/accounts/projects"
PROJECT_SHARE = 0.6  # AIServices accounts with Foundry projects
_PROJECT_STEMS = ("support", "research", "sales-assist", "ops-copilot", "docs-qa")
_AGENT_NAMES = ("triage-agent", "researcher", "writer", "planner", "coder", "faq-bot")
OPENAI_KINDS = ("OpenAI", "OpenAI", "OpenAI", "AIServices")
OTHER_KINDS = ("SpeechServices", "Face", "ComputerVision", "TextAnalytics")
_OTHER_PREFIX = {
    "SpeechServices": "speech",
    "Face": "face",
    "ComputerVision": "vision",
    "TextAnalytics": "lang",
}

# Azure writes the display name on request metrics ("East US") and the short name elsewhere.
REGION_DISPLAY = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "centralus": "Central US",
    "northcentralus": "North Central US",
    "southcentralus": "South Central US",
    "canadaeast": "Canada East",
    "brazilsouth": "Brazil South",
    "westeurope": "West Europe",
    "northeurope": "North Europe",
    "swedencentral": "Sweden Central",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "switzerlandnorth": "Switzerland North",
    "uksouth": "UK South",
    "norwayeast": "Norway East",
    "polandcentral": "Poland Central",
    "japaneast": "Japan East",
    "koreacentral": "Korea Central",
    "australiaeast": "Australia East",
    "southindia": "South India",
    "southeastasia": "Southeast Asia",
}


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    version: str
    family: str  # "chat", "embedding" or "realtime"
    openai: bool = True  # Azure OpenAI models appear in both metric families; others only in "Models"


MODELS: tuple[Model, ...] = (
    Model("gpt-4o", "2024-08-06", "chat"),
    Model("gpt-4o", "2024-11-20", "chat"),
    Model("gpt-4o-mini", "2024-07-18", "chat"),
    Model("gpt-4.1", "2025-04-14", "chat"),
    Model("gpt-4.1-mini", "2025-04-14", "chat"),
    Model("gpt-35-turbo", "0125", "chat"),
    Model("o3-mini", "2025-01-31", "chat"),
    Model("text-embedding-3-large", "1", "embedding"),
    Model("text-embedding-3-small", "1", "embedding"),
    Model("text-embedding-ada-002", "2", "embedding"),
    Model("gpt-4o-realtime-preview", "2024-12-17", "realtime"),
)
# Models sold directly by Azure that Foundry (AIServices) accounts host beside or instead of OpenAI
# models (foundry.md §3.2; names as the model catalogue and Elastic's sample spell them).
FOUNDRY_MODELS: tuple[Model, ...] = (
    Model("DeepSeek-R1", "1", "chat", openai=False),
    Model("Meta-Llama-3.1-405B-Instruct", "1", "chat", openai=False),
    Model("Phi-4", "7", "chat", openai=False),
    Model("Mistral-Large-2411", "2", "chat", openai=False),
    Model("grok-3", "1", "chat", openai=False),
    Model("Cohere-embed-v3-english", "1", "embedding", openai=False),
)
MODELS_BY_KEY = {(m.name, m.version): m for m in (*MODELS, *FOUNDRY_MODELS)}
FOUNDRY_ONLY_SHARE = 0.3  # AIServices accounts that host no OpenAI model at all
_DEPLOYMENT_SUFFIXES = ("", "-prod", "-dev", "-eu", "-batch", "-app")


def region_display(region: str) -> str:
    return REGION_DISPLAY.get(region.lower(), region)


def model_of(deployment: SimDeployment) -> Model:
    return MODELS_BY_KEY[(deployment.model, deployment.version)]


@dataclass(frozen=True, slots=True)
class Resource:
    """A non-account resource, listed by ARM so that the `resourceType` filter has something to drop."""

    id: str
    name: str
    type: str
    subscription_id: str
    resource_group: str
    location: str


@dataclass(frozen=True, slots=True)
class World:
    tenant_id: str
    client_id: str
    client_secret: str
    subscription_ids: tuple[str, ...]
    resource_groups: dict[str, tuple[str, ...]]  # subscription id -> resource group names
    accounts: tuple[SimAccount, ...]
    other_resources: tuple[Resource, ...]
    projects: tuple[SimAccount, ...] = ()  # Foundry projects of AIServices accounts, with agents


def build_world(spec: SimSpec) -> World:
    """Every subscription, resource group, account and deployment of `spec`, deterministically."""
    subscriptions = tuple(guid(spec.seed, "subscription", i) for i in range(spec.subscriptions))
    groups = {s: _resource_groups(spec, s, i) for i, s in enumerate(subscriptions)}
    accounts: list[SimAccount] = []
    for s_index, subscription in enumerate(subscriptions):
        for region in spec.regions:
            for n in range(spec.accounts_per_region):
                accounts.append(_account(spec, subscription, s_index, groups[subscription], region, n, len(accounts)))
            for n in range(spec.other_accounts_per_region):
                accounts.append(_other(spec, subscription, s_index, groups[subscription], region, n, len(accounts)))
    return World(
        tenant_id=guid(spec.seed, "tenant"),
        client_id=guid(spec.seed, "client"),
        client_secret=f"sim~{key64(spec.seed, 'secret'):016x}",
        subscription_ids=subscriptions,
        resource_groups=groups,
        accounts=tuple(accounts),
        other_resources=tuple(r for s in subscriptions for r in _storage_accounts(spec, s, groups[s])),
        projects=_all_projects(spec, accounts),
    )


def _all_projects(spec: SimSpec, accounts: list[SimAccount]) -> tuple[SimAccount, ...]:
    out: list[SimAccount] = []
    for account in accounts:
        out += _projects(spec, account, len(accounts) + len(out))
    return tuple(out)


def _projects(spec: SimSpec, account: SimAccount, index: int) -> list[SimAccount]:
    """0–2 projects of an AIServices account, each with 1–3 agents on the account's deployments."""
    if account.kind != "AIServices" or not account.deployments:
        return []
    key = key64(spec.seed, "projects", account.key)
    if uniform(key, 1) >= PROJECT_SHARE:
        return []
    out: list[SimAccount] = []
    for p in range(1 + mix64(key ^ 2) % 2):
        pkey = key64(spec.seed, "project", account.key, p)
        name = f"{pick(pkey, 3, _PROJECT_STEMS)}-{p}"
        out.append(
            SimAccount(
                id=f"{account.id}/projects/{name}",
                name=name,
                subscription_id=account.subscription_id,
                resource_group=account.resource_group,
                location=account.location,
                kind=account.kind,
                tags=_tags(pkey),
                deployments=account.deployments,
                index=index + p,
                type=PROJECT_TYPE,
                agents=_agents(pkey, account.deployments),
            )
        )
    return out


def _agents(key: int, deployments: tuple[SimDeployment, ...]) -> tuple[SimAgent, ...]:
    chat = tuple(d for d in deployments if model_of(d).family == "chat") or deployments
    deployments = chat
    out: list[SimAgent] = []
    for i in range(1 + mix64(key ^ 4) % 3):
        deployment = deployments[mix64(key ^ (5 + i * 7919)) % len(deployments)]
        agent_id = f"asst_{mix64(key ^ (6 + i * 7919)):016x}"
        name = f"{_AGENT_NAMES[mix64(key ^ (7 + i * 7919)) % len(_AGENT_NAMES)]}-{i}"
        out.append(SimAgent(agent_id, name, str(1 + mix64(key ^ (8 + i)) % 3), deployment.model, deployment.name))
    return tuple(out)


def _resource_groups(spec: SimSpec, subscription: str, index: int) -> tuple[str, ...]:
    stems = ("ai-prod", "ai-dev", "openai-shared", "ml-platform", "chatbots", "search")
    return tuple(f"rg-{stems[g % len(stems)]}-{index:02d}{g:02d}" for g in range(spec.resource_groups_per_subscription))


def _resource_id(subscription: str, group: str, name: str, rtype: str = ACCOUNT_TYPE) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{rtype}/{name}"


def _account(
    spec: SimSpec, subscription: str, s_index: int, groups: tuple[str, ...], region: str, n: int, index: int
) -> SimAccount:
    key = key64(spec.seed, "account", subscription, region, n)
    kind = pick(key, 1, OPENAI_KINDS)
    name = f"{'aoai' if kind == 'OpenAI' else 'aisvc'}-{region}-{s_index:02d}{n:04d}"
    deployments = _deployments(key)
    if kind == "AIServices":
        # Foundry accounts serve other models too; some serve only those (foundry.md §3.2).
        others = _foundry_deployments(key)
        deployments = others if uniform(key, 90) < FOUNDRY_ONLY_SHARE else deployments + others
    return _record(key, subscription, groups, region, name, kind, deployments, index)


def _other(
    spec: SimSpec, subscription: str, s_index: int, groups: tuple[str, ...], region: str, n: int, index: int
) -> SimAccount:
    key = key64(spec.seed, "other", subscription, region, n)
    kind = OTHER_KINDS[(n + s_index) % len(OTHER_KINDS)]
    name = f"{_OTHER_PREFIX[kind]}-{region}-{s_index:02d}{n:04d}"
    return _record(key, subscription, groups, region, name, kind, (), index)


def _record(
    key: int,
    subscription: str,
    groups: tuple[str, ...],
    region: str,
    name: str,
    kind: str,
    deployments: tuple[SimDeployment, ...],
    index: int,
) -> SimAccount:
    """The account record: resource group and tags derive from the account's key."""
    group = groups[mix64(key ^ 2) % len(groups)]
    return SimAccount(
        id=_resource_id(subscription, group, name),
        name=name,
        subscription_id=subscription,
        resource_group=group,
        location=region,
        kind=kind,
        tags=_tags(key),
        deployments=deployments,
        index=index,
    )


def _tags(key: int) -> dict[str, str]:
    # About a third of real accounts carry no tags at all; ARM then omits the key.
    if uniform(key, 3) < 0.35:
        return {}
    tags = {
        "env": pick(key, 4, ("prod", "dev", "test")),
        "team": pick(key, 5, ("search", "support", "platform")),
    }
    if uniform(key, 6) < 0.5:
        tags["costCenter"] = f"cc-{mix64(key ^ 7) % 900 + 100}"
    return tags


def _deployments(key: int) -> tuple[SimDeployment, ...]:
    count = 1 + mix64(key ^ 10) % 4
    out: list[SimDeployment] = []
    names: set[str] = set()
    for i in range(count):
        model = MODELS[mix64(key ^ (11 + i * 7919)) % len(MODELS)]
        provisioned = model.family == "chat" and uniform(key, 12 + i * 7919) < 0.3
        name = model.name + _DEPLOYMENT_SUFFIXES[mix64(key ^ (13 + i * 7919)) % len(_DEPLOYMENT_SUFFIXES)]
        if provisioned:
            name += "-ptu"
        while name in names:
            name += f"-{i}"
        names.add(name)
        out.append(SimDeployment(name, model.name, model.version, "ProvisionedManaged" if provisioned else "Standard"))
    return tuple(out)


def _foundry_deployments(key: int) -> tuple[SimDeployment, ...]:
    """1–3 deployments of non-OpenAI models (serverless, so always Standard)."""
    out: list[SimDeployment] = []
    for i in range(1 + mix64(key ^ 91) % 3):
        model = FOUNDRY_MODELS[mix64(key ^ (92 + i * 7919)) % len(FOUNDRY_MODELS)]
        name = model.name if i == 0 else f"{model.name}-{i}"
        if all(d.name != name for d in out):
            out.append(SimDeployment(name, model.name, model.version, "Standard"))
    return tuple(out)


def _storage_accounts(spec: SimSpec, subscription: str, groups: tuple[str, ...]) -> list[Resource]:
    out = []
    for g, group in enumerate(groups):
        name = f"st{key64(spec.seed, subscription, group) % 10**10:010d}"
        rtype = "Microsoft.Storage/storageAccounts"
        out.append(
            Resource(
                _resource_id(subscription, group, name, rtype),
                name,
                rtype,
                subscription,
                group,
                spec.regions[g % len(spec.regions)],
            )
        )
    return out
