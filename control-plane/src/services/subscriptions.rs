//! `SubscriptionService`: platform-webhook subscriptions and their
//! delivery log (SPEC §8).

use std::net::IpAddr;

use hookplane::api::v1::{self as api, subscription_service_server::SubscriptionService};
use hookplane_convert as convert;
use hookplane_model::{self as model, ExpiringSecret, SecretField, Subscription, SubscriptionSpec};
use tonic::{Request, Response, Status};

use super::{SharedCore, check_request_id, expected_revision, required, required_id};
use crate::crypto::new_signing_secret;
use crate::error::{ApiError, ApiResult};
use crate::store::{DeliveryFilter, StoreError};
use crate::webhooks::{previous_secret_owner, secret_owner};

/// Serves `hookplane.v1.SubscriptionService`.
#[derive(Debug, Clone)]
pub struct SubscriptionApi {
    core: SharedCore,
}

impl SubscriptionApi {
    pub fn new(core: SharedCore) -> SubscriptionApi {
        SubscriptionApi { core }
    }

    /// Refuses a URL the dispatcher could never call: an address literal
    /// the egress policy refuses, or plain http to anything but a network
    /// the policy opens (a receiver on the operator's own network).
    fn check_reachable(&self, spec: &SubscriptionSpec, field: &str) -> ApiResult<()> {
        let url = url::Url::parse(&spec.url).map_err(|e| ApiError::invalid(field, e.to_string()))?;
        let policy = &self.core.webhooks.egress;
        policy.check_url(&url).map_err(|e| ApiError::invalid(field, e.to_string()))?;
        if url.scheme() == "http" {
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            let opened = literal.is_some_and(|ip| hookplane_egress::classify(ip).is_some());
            if !opened {
                return Err(ApiError::invalid(
                    field,
                    "must be https; http is only for addresses of networks the egress policy allows",
                ));
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        request: Request<api::CreateSubscriptionRequest>,
    ) -> ApiResult<api::CreateSubscriptionResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        check_request_id(&req.request_id)?;
        let spec =
            convert::subscription_spec_from_api(required(req.subscription.as_ref(), "subscription")?, "subscription")?;
        self.check_reachable(&spec, "subscription.url")?;
        let id = crate::crypto::new_id("sub_");
        let secret = new_signing_secret();
        let now = model::now();
        let subscription = Subscription {
            secret: SecretField::Sealed(self.core.secret_box.seal(&secret_owner(org, &id), secret.as_bytes())),
            id,
            organization_id: org.to_owned(),
            spec,
            previous_secret: None,
            enabled: true,
            disabled_reason: String::new(),
            create_time: now,
            update_time: now,
            revision: 1,
        };
        let response = api::CreateSubscriptionResponse {
            subscription: Some(convert::subscription_to_api(&subscription, now)),
            secret: secret.to_string(),
        };
        let key = self.core.idempotency_key(org, "CreateSubscription", &req.request_id, req, &response);
        let creation = self.core.store.create_subscription(&subscription, key.as_ref()).await?;
        self.core.settle(creation, key.as_ref(), response)
    }

    async fn get(&self, request: Request<api::GetSubscriptionRequest>) -> ApiResult<api::Subscription> {
        let caller = self.core.caller(&request).await?;
        let id = required_id(&request.get_ref().id, "id")?;
        let subscription = self.core.store.get_subscription(caller.organization()?, id).await?;
        Ok(convert::subscription_to_api(&subscription, model::now()))
    }

    async fn list(&self, request: Request<api::ListSubscriptionsRequest>) -> ApiResult<api::ListSubscriptionsResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?;
        let req = request.get_ref();
        let page = self.core.pages.parse("subscriptions", org, req.page_size, &req.page_token)?;
        let mut rows = self.core.store.list_subscriptions(org, &page.cursor, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("subscriptions", org, &mut rows, page.size, |s| s.id.clone());
        let now = model::now();
        Ok(api::ListSubscriptionsResponse {
            subscriptions: rows.iter().map(|s| convert::subscription_to_api(s, now)).collect(),
            next_page_token,
        })
    }

    async fn update(&self, request: Request<api::UpdateSubscriptionRequest>) -> ApiResult<api::Subscription> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let patch = required(req.subscription.as_ref(), "subscription")?;
        let etag = expected_revision(&patch.etag, "subscription.etag")?;
        let stored = self.core.store.get_subscription(org, required_id(&patch.id, "subscription.id")?).await?;
        if etag.is_some_and(|e| e != stored.revision) {
            return Err(StoreError::Conflict("subscription").into());
        }
        let spec = convert::merge_subscription_update(&stored.spec, patch, req.update_mask.as_ref())?;
        self.check_reachable(&spec, "subscription.url")?;
        self.write(Subscription { spec, update_time: model::now(), ..stored.clone() }, stored.revision).await
    }

    async fn delete(&self, request: Request<api::DeleteSubscriptionRequest>) -> ApiResult<()> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let id = required_id(&req.id, "id")?;
        let expected = expected_revision(&req.etag, "etag")?;
        Ok(self.core.store.delete_subscription(org, id, expected).await?)
    }

    async fn set_enabled(&self, org: &str, id: &str, enabled: bool) -> ApiResult<api::Subscription> {
        let stored = self.core.store.get_subscription(org, required_id(id, "id")?).await?;
        if stored.enabled == enabled {
            return Ok(convert::subscription_to_api(&stored, model::now()));
        }
        let reason = if enabled { String::new() } else { "disabled through the API".to_owned() };
        let next = Subscription { enabled, disabled_reason: reason, update_time: model::now(), ..stored.clone() };
        self.write(next, stored.revision).await
    }

    async fn rotate(
        &self,
        request: Request<api::RotateSubscriptionSecretRequest>,
    ) -> ApiResult<api::RotateSubscriptionSecretResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let overlap_ms = convert::subscription_overlap_from_api(req.overlap.as_ref())?;
        let stored = self.core.store.get_subscription(org, required_id(&req.id, "id")?).await?;
        let now = model::now();
        let previous = if overlap_ms == 0 {
            None
        } else {
            let SecretField::Sealed(sealed) = &stored.secret else {
                return Err(StoreError::Corrupt { what: "subscription", source: "secret not sealed".into() }.into());
            };
            // Sealed again for its new field: a value opens only for the
            // field it was sealed for.
            let current = self.core.secret_box.open_text(&secret_owner(org, &stored.id), sealed)?;
            let resealed = self.core.secret_box.seal(&previous_secret_owner(org, &stored.id), current.as_bytes());
            Some(ExpiringSecret {
                secret: SecretField::Sealed(resealed),
                expire_time: now + chrono::TimeDelta::milliseconds(overlap_ms as i64),
            })
        };
        let secret = new_signing_secret();
        let next = Subscription {
            secret: SecretField::Sealed(self.core.secret_box.seal(&secret_owner(org, &stored.id), secret.as_bytes())),
            previous_secret: previous,
            update_time: now,
            ..stored.clone()
        };
        let subscription = self.write(next, stored.revision).await?;
        Ok(api::RotateSubscriptionSecretResponse { subscription: Some(subscription), secret: secret.to_string() })
    }

    async fn write(&self, next: Subscription, expected: i64) -> ApiResult<api::Subscription> {
        let written = self.core.store.update_subscription(&next, expected).await?;
        Ok(convert::subscription_to_api(&written, model::now()))
    }

    async fn list_deliveries(
        &self,
        request: Request<api::ListDeliveriesRequest>,
    ) -> ApiResult<api::ListDeliveriesResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?;
        let req = request.get_ref();
        let subscription = required_id(&req.subscription_id, "subscription_id")?;
        // Another organization's subscription is not found, like a missing one.
        self.core.store.get_subscription(org, subscription).await?;
        let filter = DeliveryFilter {
            status: convert::delivery_status_from_api(req.status)?,
            event_type: convert::event_type_filter_from_api(&req.event_type)?,
        };
        // The cursor is scoped to the subscription and the filter, so a
        // token cannot be replayed against another listing.
        let scope = format!("{org}/{subscription}/{}/{}", req.status, req.event_type);
        let page = self.core.pages.parse("deliveries", &scope, req.page_size, &req.page_token)?;
        let before = match page.cursor.split_once('/') {
            Some((micros, id)) => {
                let micros =
                    micros.parse().map_err(|_| ApiError::invalid("page_token", "is not a token of this listing"))?;
                Some((chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default(), id))
            }
            None => None,
        };
        let mut rows = self.core.store.list_deliveries(org, subscription, &filter, before, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("deliveries", &scope, &mut rows, page.size, |d| {
            format!("{}/{}", d.create_time.timestamp_micros(), d.id)
        });
        Ok(api::ListDeliveriesResponse {
            deliveries: rows.iter().map(convert::delivery_to_api).collect(),
            next_page_token,
        })
    }

    async fn get_delivery(&self, request: Request<api::GetDeliveryRequest>) -> ApiResult<api::Delivery> {
        let caller = self.core.caller(&request).await?;
        let id = required_id(&request.get_ref().id, "id")?;
        Ok(convert::delivery_to_api(&self.core.store.get_delivery(caller.organization()?, id).await?))
    }

    async fn resend(&self, request: Request<api::ResendDeliveryRequest>) -> ApiResult<api::Delivery> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let id = required_id(&request.get_ref().id, "id")?;
        let delivery = self.core.store.get_delivery(org, id).await?;
        let subscription = self.core.store.get_subscription(org, &delivery.subscription_id).await?;
        if !subscription.enabled {
            return Err(ApiError::FailedPrecondition("the subscription is disabled: enable it before resending"));
        }
        self.core.store.resend_delivery(org, id, model::now()).await?;
        self.core.wake_webhooks.notify_one();
        Ok(convert::delivery_to_api(&self.core.store.get_delivery(org, id).await?))
    }

    async fn send_test(&self, request: Request<api::SendTestEventRequest>) -> ApiResult<api::Delivery> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let subscription = self.core.store.get_subscription(org, required_id(&request.get_ref().id, "id")?).await?;
        if !subscription.enabled {
            return Err(ApiError::FailedPrecondition("the subscription is disabled: enable it before testing it"));
        }
        let data = serde_json::json!({
            "message": "A test event from hookplane: this endpoint receives and verifies platform webhooks.",
            "subscription_id": subscription.id,
        });
        let event = crate::store::platform_event(hookplane_model::PlatformEventType::WebhookTest, org, data);
        let delivery = self.core.store.create_delivery(&subscription, &event).await?;
        self.core.wake_webhooks.notify_one();
        Ok(convert::delivery_to_api(&delivery))
    }
}

#[tonic::async_trait]
impl SubscriptionService for SubscriptionApi {
    async fn create_subscription(
        &self,
        r: Request<api::CreateSubscriptionRequest>,
    ) -> Result<Response<api::CreateSubscriptionResponse>, Status> {
        Ok(Response::new(self.create(r).await?))
    }

    async fn get_subscription(
        &self,
        r: Request<api::GetSubscriptionRequest>,
    ) -> Result<Response<api::Subscription>, Status> {
        Ok(Response::new(self.get(r).await?))
    }

    async fn list_subscriptions(
        &self,
        r: Request<api::ListSubscriptionsRequest>,
    ) -> Result<Response<api::ListSubscriptionsResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn update_subscription(
        &self,
        r: Request<api::UpdateSubscriptionRequest>,
    ) -> Result<Response<api::Subscription>, Status> {
        Ok(Response::new(self.update(r).await?))
    }

    async fn delete_subscription(&self, r: Request<api::DeleteSubscriptionRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(self.delete(r).await?))
    }

    async fn enable_subscription(
        &self,
        r: Request<api::EnableSubscriptionRequest>,
    ) -> Result<Response<api::Subscription>, Status> {
        let caller = self.core.caller(&r).await?;
        Ok(Response::new(self.set_enabled(caller.writable_organization()?, &r.get_ref().id, true).await?))
    }

    async fn disable_subscription(
        &self,
        r: Request<api::DisableSubscriptionRequest>,
    ) -> Result<Response<api::Subscription>, Status> {
        let caller = self.core.caller(&r).await?;
        Ok(Response::new(self.set_enabled(caller.writable_organization()?, &r.get_ref().id, false).await?))
    }

    async fn rotate_subscription_secret(
        &self,
        r: Request<api::RotateSubscriptionSecretRequest>,
    ) -> Result<Response<api::RotateSubscriptionSecretResponse>, Status> {
        Ok(Response::new(self.rotate(r).await?))
    }

    async fn list_deliveries(
        &self,
        r: Request<api::ListDeliveriesRequest>,
    ) -> Result<Response<api::ListDeliveriesResponse>, Status> {
        Ok(Response::new(self.list_deliveries(r).await?))
    }

    async fn get_delivery(&self, r: Request<api::GetDeliveryRequest>) -> Result<Response<api::Delivery>, Status> {
        Ok(Response::new(self.get_delivery(r).await?))
    }

    async fn resend_delivery(&self, r: Request<api::ResendDeliveryRequest>) -> Result<Response<api::Delivery>, Status> {
        Ok(Response::new(self.resend(r).await?))
    }

    async fn send_test_event(&self, r: Request<api::SendTestEventRequest>) -> Result<Response<api::Delivery>, Status> {
        Ok(Response::new(self.send_test(r).await?))
    }
}
