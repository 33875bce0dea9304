import { ConnectorService } from "./gen/hookplane/v1/connectors_pb.js";
import { EventService } from "./gen/hookplane/v1/events_pb.js";
import { NodeService } from "./gen/hookplane/v1/nodes_pb.js";
import { ApiKeyService, OrganizationService, PlanService } from "./gen/hookplane/v1/organizations_pb.js";
import { SecretService } from "./gen/hookplane/v1/secrets_pb.js";
import { SubscriptionService } from "./gen/hookplane/v1/subscriptions_pb.js";

/**
 * The API's services under the names the client exposes them by. Every
 * service of proto/hookplane/v1 is here except NodeSyncService, which only
 * data-plane nodes speak (with node tokens, not API keys). A test checks
 * this list against the generated code, so a service added to the proto
 * fails the suite until it is added here.
 */
export const services = {
  connectors: ConnectorService,
  events: EventService,
  secrets: SecretService,
  organizations: OrganizationService,
  plans: PlanService,
  apiKeys: ApiKeyService,
  nodes: NodeService,
  subscriptions: SubscriptionService,
} as const;

/** Services deliberately left out of the client, by full name. */
export const internalServices: readonly string[] = ["hookplane.v1.NodeSyncService"];
