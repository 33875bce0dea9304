"""The client exposes every public service of proto/hookplane/v1, and each
answers through it."""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import hookplane.v1
import pytest
from google.protobuf import field_mask_pb2
from hookplane.v1 import connectors_pb2, events_pb2, nodes_pb2, secrets_pb2, subscriptions_pb2
from hookplane.v1 import organizations_pb2 as orgs

from hookplane_sdk import ApiError, Client, paginate

# Node-to-control-plane streams, authenticated with node tokens: not for
# API clients.
INTERNAL_SERVICES = {"NodeSyncService"}


def test_every_public_service_has_a_stub_with_every_method(client: Client) -> None:
    services = {}
    for module in pkgutil.iter_modules(hookplane.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"hookplane.v1.{module.name}").DESCRIPTOR
            services.update(descriptor.services_by_name)
    public = {name: service for name, service in services.items() if name not in INTERNAL_SERVICES}
    stubs = {type(stub).__name__.removesuffix("Stub"): stub for stub in vars(client).values() if _is_stub(stub)}

    # A service added to proto/ fails here until the client exposes it.
    assert set(stubs) == set(public)
    for name, service in public.items():
        for method in service.methods:
            assert callable(getattr(stubs[name], method.name)), f"{name}.{method.name}"


def _is_stub(value: object) -> bool:
    return type(value).__name__.endswith("ServiceStub")


def test_each_service_answers_an_admin_key(client: Client) -> None:
    # One read per service, through the client's interceptors.
    client.connectors.ListConnectors(connectors_pb2.ListConnectorsRequest(page_size=1))
    client.events.ListEvents(events_pb2.ListEventsRequest(page_size=1))
    client.secrets.ListSecrets(secrets_pb2.ListSecretsRequest(page_size=1))
    client.subscriptions.ListSubscriptions(subscriptions_pb2.ListSubscriptionsRequest(page_size=1))
    keys = list(paginate(client.api_keys.ListApiKeys, orgs.ListApiKeysRequest(), "api_keys"))
    assert any(k.role == orgs.API_KEY_ROLE_ADMIN for k in keys)
    organization = client.organizations.GetOrganization(orgs.GetOrganizationRequest(id=keys[0].organization_id))
    assert organization.plan == "free", "dev's default organization is on the default plan"
    plan = client.plans.GetPlan(orgs.GetPlanRequest(name=organization.plan))
    assert plan.per_connector_per_minute > 0
    assert {p.name for p in client.plans.ListPlans(orgs.ListPlansRequest()).plans} >= {"free", "starter"}
    nodes = client.nodes.ListNodes(nodes_pb2.ListNodesRequest())
    assert [n.id for n in nodes.nodes if n.connected] == ["dev-node"], "dev runs one node in process"


def test_secrets_round_trip_without_ever_returning_the_value(client: Client, unique: str) -> None:
    names = [f"PY_{unique.upper()}_{n}" for n in range(3)]
    for name in names:
        created = client.secrets.CreateSecret(
            secrets_pb2.CreateSecretRequest(secret=secrets_pb2.Secret(name=name, value=f"value-{name}"))
        )
        assert created.name == name and created.value == "", "values are write-only"
    listed = [s.name for s in paginate(client.secrets.ListSecrets, secrets_pb2.ListSecretsRequest(page_size=1), "secrets")]
    assert set(names) <= set(listed)

    updated = client.secrets.UpdateSecret(
        secrets_pb2.UpdateSecretRequest(
            secret=secrets_pb2.Secret(name=names[0], description="rotated"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    assert updated.description == "rotated"
    for name in names:
        client.secrets.DeleteSecret(secrets_pb2.DeleteSecretRequest(name=name))
    with pytest.raises(ApiError) as gone:
        client.secrets.GetSecret(secrets_pb2.GetSecretRequest(name=names[0]))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
