//! The one walk over a connector's spec: where its expressions are (with
//! their field path, how they parse and what they may read), where its
//! names are, and where its secrets are (with their path and the owner
//! they are sealed for).
//!
//! Everything that treats expressions or secrets field by field derives
//! from [`ConnectorSpec::map`]: compiling (`compile.rs`), printing back for
//! a node's cache, sealing, opening and keeping stored secrets on the
//! control plane. A field added to the connector is added here and in the
//! proto conversion, nowhere else.

use hookplane_expr::SourceKind;

use super::repr::Repr;
use super::{ConnectorSpec, FieldMapping, Lookup, NamedTemplate, OutboundAuth, Perform};

/// Where an expression or template sits in a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpressionField {
    Condition,
    LookupUrl,
    LookupHeader(usize),
    LookupQuery(usize),
    Mapping(usize),
    PerformUrl,
    PerformHeader(usize),
    PerformQuery(usize),
    BodyValue(usize),
    RawBody,
    BearerToken,
    BasicUsername,
    BasicPassword,
}

/// Which mappings an expression may read as `$processed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessedScope {
    /// None: it runs before them (the condition).
    None,
    /// The first `n`: a mapping reads those before it.
    Before(usize),
    /// All of them.
    All,
}

impl ExpressionField {
    /// The field's path in the API's terms, e.g. `perform.headers[2].value`.
    pub fn path(self) -> String {
        match self {
            ExpressionField::Condition => "condition".to_owned(),
            ExpressionField::LookupUrl => "lookup.url".to_owned(),
            ExpressionField::LookupHeader(i) => format!("lookup.headers[{i}].value"),
            ExpressionField::LookupQuery(i) => format!("lookup.query[{i}].value"),
            ExpressionField::Mapping(i) => format!("mappings[{i}].expression"),
            ExpressionField::PerformUrl => "perform.url".to_owned(),
            ExpressionField::PerformHeader(i) => format!("perform.headers[{i}].value"),
            ExpressionField::PerformQuery(i) => format!("perform.query[{i}].value"),
            ExpressionField::BodyValue(i) => format!("perform.body[{i}].value"),
            ExpressionField::RawBody => "perform.raw_body".to_owned(),
            ExpressionField::BearerToken => "perform.auth.bearer.token".to_owned(),
            ExpressionField::BasicUsername => "perform.auth.basic.username".to_owned(),
            ExpressionField::BasicPassword => "perform.auth.basic.password".to_owned(),
        }
    }

    /// How its text is read: the condition is one expression; everything
    /// else may be a template.
    pub fn kind(self) -> SourceKind {
        match self {
            ExpressionField::Condition => SourceKind::Expression,
            _ => SourceKind::Template,
        }
    }

    /// Which mappings it may read: the condition runs before them, a
    /// mapping after those before it, everything else after all of them.
    pub fn processed(self) -> ProcessedScope {
        match self {
            ExpressionField::Condition => ProcessedScope::None,
            ExpressionField::Mapping(i) => ProcessedScope::Before(i),
            _ => ProcessedScope::All,
        }
    }
}

/// Where a secret sits in a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSlot {
    Signature,
    /// The signing secret a rotation replaced, during its overlap.
    PreviousSignature,
    OAuth2ClientSecret,
    OAuth2RefreshToken,
}

impl SecretSlot {
    /// The field's path in the API's terms.
    pub fn path(self) -> &'static str {
        match self {
            SecretSlot::Signature => "signature.secret",
            SecretSlot::PreviousSignature => "signature.previous_secret",
            SecretSlot::OAuth2ClientSecret => "perform.auth.oauth2.client_secret",
            SecretSlot::OAuth2RefreshToken => "perform.auth.oauth2.refresh_token",
        }
    }

    /// The owner the secret is sealed for: bound to its organization,
    /// connector and field, so a ciphertext moved elsewhere does not open.
    pub fn owner(self, organization_id: &str, connector_id: &str) -> String {
        format!("connector:{organization_id}:{connector_id}:{}", self.path())
    }
}

/// Where a spec's secrets are, borrowed with `$borrow` (`&` or `&mut`):
/// one list for both borrows. [`ConnectorSpec::map`] visits the same slots
/// in the same order (a test holds the two together). A spec without
/// secrets allocates nothing here.
macro_rules! secret_slots {
    ($spec:expr, $($borrow:tt)+) => {{
        let spec = $spec;
        let mut slots = Vec::new();
        if let Some(signature) = $($borrow)+ spec.signature {
            slots.push((SecretSlot::Signature, $($borrow)+ signature.secret));
            if let Some(previous) = $($borrow)+ signature.previous {
                slots.push((SecretSlot::PreviousSignature, $($borrow)+ previous.secret));
            }
        }
        if let OutboundAuth::OAuth2(oauth) = $($borrow)+ spec.perform.auth {
            slots.push((SecretSlot::OAuth2ClientSecret, $($borrow)+ oauth.client_secret));
            slots.push((SecretSlot::OAuth2RefreshToken, $($borrow)+ oauth.refresh_token));
        }
        slots
    }};
}

/// Turns a spec's representation `A` into `B`, one part at a time; the
/// parts are borrowed from a spec that lives for `'s`.
pub trait SpecVisitor<'s, A: Repr, B: Repr> {
    fn expression(&mut self, field: ExpressionField, expression: &'s A::Expr) -> B::Expr;
    fn name(&mut self, name: &'s A::Name) -> B::Name;
    fn secret(&mut self, slot: SecretSlot, secret: &'s A::Secret) -> B::Secret;
}

impl<A: Repr> ConnectorSpec<A> {
    /// This spec in representation `B`: every expression (in evaluation
    /// order), name and secret through `visitor`, everything else copied.
    /// A raw body is visited only when the body type is raw.
    pub fn map<'s, B: Repr>(&'s self, visitor: &mut impl SpecVisitor<'s, A, B>) -> ConnectorSpec<B> {
        let condition = self.condition.as_ref().map(|c| visitor.expression(ExpressionField::Condition, c));
        let lookup = self.lookup.as_ref().map(|lookup| {
            Box::new(Lookup {
                url: visitor.expression(ExpressionField::LookupUrl, &lookup.url),
                headers: named(&lookup.headers, visitor, ExpressionField::LookupHeader),
                query: named(&lookup.query, visitor, ExpressionField::LookupQuery),
                timeout_ms: lookup.timeout_ms,
            })
        });
        let mappings = self
            .mappings
            .iter()
            .enumerate()
            .map(|(i, m)| FieldMapping {
                name: visitor.name(&m.name),
                expression: visitor.expression(ExpressionField::Mapping(i), &m.expression),
            })
            .collect();
        let signature = self.signature.as_ref().map(|s| {
            Box::new(super::SignatureSettings {
                preset: s.preset,
                secret: visitor.secret(SecretSlot::Signature, &s.secret),
                previous: s.previous.as_ref().map(|p| super::PreviousSecret {
                    secret: visitor.secret(SecretSlot::PreviousSignature, &p.secret),
                    expire_time: p.expire_time,
                }),
                algorithm: s.algorithm,
                encoding: s.encoding,
                header: s.header.clone(),
                prefix: s.prefix.clone(),
                timestamp_header: s.timestamp_header.clone(),
                timestamp_tolerance_secs: s.timestamp_tolerance_secs,
            })
        });
        ConnectorSpec {
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            enabled: self.enabled,
            async_mode: self.async_mode,
            auth: self.auth.clone(),
            allowed_origins: self.allowed_origins.clone(),
            signature,
            condition,
            lookup,
            mappings,
            perform: self.perform.map(visitor),
            sample_payload: self.sample_payload.clone(),
            labels: self.labels.clone(),
        }
    }
}

impl<A: Repr> Perform<A> {
    fn map<'s, B: Repr>(&'s self, visitor: &mut impl SpecVisitor<'s, A, B>) -> Perform<B> {
        let url = visitor.expression(ExpressionField::PerformUrl, &self.url);
        let headers = named(&self.headers, visitor, ExpressionField::PerformHeader);
        let query = named(&self.query, visitor, ExpressionField::PerformQuery);
        let body = self
            .body
            .iter()
            .enumerate()
            .map(|(i, field)| super::BodyField {
                key: visitor.name(&field.key),
                value: visitor.expression(ExpressionField::BodyValue(i), &field.value),
                file: field.file.clone(),
            })
            .collect();
        let raw_body = match (&self.raw_body, self.body_type) {
            (Some(raw), super::BodyType::Raw) => Some(visitor.expression(ExpressionField::RawBody, raw)),
            _ => None,
        };
        let auth = match &self.auth {
            OutboundAuth::None => OutboundAuth::None,
            OutboundAuth::Bearer { token } => {
                OutboundAuth::Bearer { token: visitor.expression(ExpressionField::BearerToken, token) }
            }
            OutboundAuth::Basic { username, password } => OutboundAuth::Basic {
                username: visitor.expression(ExpressionField::BasicUsername, username),
                password: visitor.expression(ExpressionField::BasicPassword, password),
            },
            OutboundAuth::OAuth2(oauth) => OutboundAuth::OAuth2(Box::new(super::OAuth2Settings {
                token_url: oauth.token_url.clone(),
                client_id: oauth.client_id.clone(),
                client_secret: visitor.secret(SecretSlot::OAuth2ClientSecret, &oauth.client_secret),
                scopes: oauth.scopes.clone(),
                grant: oauth.grant,
                refresh_token: visitor.secret(SecretSlot::OAuth2RefreshToken, &oauth.refresh_token),
            })),
        };
        Perform {
            method: self.method.clone(),
            url,
            headers,
            query,
            body_type: self.body_type,
            body,
            raw_body,
            raw_content_type: self.raw_content_type.clone(),
            skip_null_values: self.skip_null_values,
            auth,
            timeout_ms: self.timeout_ms,
            retry: self.retry,
        }
    }
}

fn named<'s, A: Repr, B: Repr>(
    list: &'s [NamedTemplate<A>],
    visitor: &mut impl SpecVisitor<'s, A, B>,
    field: fn(usize) -> ExpressionField,
) -> Vec<NamedTemplate<B>> {
    list.iter()
        .enumerate()
        .map(|(i, item)| NamedTemplate {
            name: visitor.name(&item.name),
            value: visitor.expression(field(i), &item.value),
        })
        .collect()
}

/// The parts of a spec, read without building anything: the walk into a
/// representation of nothing.
#[derive(Clone, Debug, PartialEq)]
struct Nothing;

impl Repr for Nothing {
    type Expr = ();
    type Name = ();
    type Secret = ();
}

/// Collects references to the expressions of a spec as the walk passes
/// them.
struct Reader<'s, A: Repr> {
    expressions: Vec<(ExpressionField, &'s A::Expr)>,
}

impl<'s, A: Repr> SpecVisitor<'s, A, Nothing> for Reader<'s, A> {
    fn expression(&mut self, field: ExpressionField, expression: &'s A::Expr) {
        self.expressions.push((field, expression));
    }

    fn name(&mut self, _: &'s A::Name) {}

    fn secret(&mut self, _: SecretSlot, _: &'s A::Secret) {}
}

impl<A: Repr> ConnectorSpec<A> {
    /// Every expression with its field, in evaluation order.
    pub fn expressions(&self) -> Vec<(ExpressionField, &A::Expr)> {
        let mut reader = Reader { expressions: Vec::new() };
        self.map(&mut reader);
        reader.expressions
    }

    /// Every secret with its slot.
    pub fn secrets(&self) -> Vec<(SecretSlot, &A::Secret)> {
        secret_slots!(self, &)
    }

    /// Every secret with its slot, to change in place.
    pub fn secrets_mut(&mut self) -> Vec<(SecretSlot, &mut A::Secret)> {
        secret_slots!(self, &mut)
    }

    /// Every secret through `f`, in place: how secrets are sealed, opened
    /// and kept across updates, slot by slot. Nothing else is touched, so
    /// a delta of 100 000 connectors is opened without copying them (a
    /// copy through [`ConnectorSpec::map`] made a full sync 20 % slower).
    pub fn update_secrets(&mut self, mut f: impl FnMut(SecretSlot, &A::Secret) -> A::Secret) {
        for (slot, secret) in self.secrets_mut() {
            *secret = f(slot, secret);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyField, BodyType, InboundAuth, OAuth2Grant, OAuth2Settings, RetryPolicy, SecretField, Source};

    pub(crate) fn every_part() -> ConnectorSpec<Source> {
        let named = |name: &str, value: &str| NamedTemplate { name: name.into(), value: value.into() };
        ConnectorSpec {
            display_name: "all".into(),
            description: String::new(),
            enabled: true,
            async_mode: false,
            auth: InboundAuth { bearer_token: true, ..Default::default() },
            allowed_origins: Vec::new(),
            signature: Some(Box::new(crate::SignatureSettings {
                preset: crate::SignaturePreset::Custom,
                previous: Some(crate::PreviousSecret {
                    secret: SecretField::Sealed("old".into()),
                    expire_time: crate::now(),
                }),
                secret: SecretField::Sealed("sig".into()),
                algorithm: crate::SignatureAlgorithm::Sha256,
                encoding: crate::SignatureEncoding::Hex,
                header: "x-sig".into(),
                prefix: String::new(),
                timestamp_header: None,
                timestamp_tolerance_secs: 300,
            })),
            condition: Some("c".into()),
            lookup: Some(Box::new(Lookup {
                url: "lu".into(),
                headers: vec![named("LH", "lh")],
                query: vec![named("lq", "lq")],
                timeout_ms: 1,
            })),
            mappings: vec![FieldMapping { name: "m0".into(), expression: "m0".into() }],
            perform: Perform {
                method: "POST".into(),
                url: "pu".into(),
                headers: vec![named("PH", "ph")],
                query: vec![named("pq", "pq")],
                body_type: BodyType::Raw,
                body: vec![BodyField { key: "k".into(), value: "b0".into(), file: None }],
                raw_body: Some("raw".into()),
                raw_content_type: String::new(),
                skip_null_values: false,
                auth: OutboundAuth::OAuth2(Box::new(OAuth2Settings {
                    token_url: "https://t".into(),
                    client_id: "id".into(),
                    client_secret: SecretField::Sealed("cs".into()),
                    scopes: Vec::new(),
                    grant: OAuth2Grant::RefreshToken,
                    refresh_token: SecretField::Sealed("rt".into()),
                })),
                timeout_ms: 1,
                retry: RetryPolicy::default(),
            },
            sample_payload: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn the_walk_finds_every_part_in_evaluation_order() {
        let spec = every_part();
        let found: Vec<(String, &str)> = spec.expressions().into_iter().map(|(f, e)| (f.path(), e.as_str())).collect();
        let expected = [
            ("condition", "c"),
            ("lookup.url", "lu"),
            ("lookup.headers[0].value", "lh"),
            ("lookup.query[0].value", "lq"),
            ("mappings[0].expression", "m0"),
            ("perform.url", "pu"),
            ("perform.headers[0].value", "ph"),
            ("perform.query[0].value", "pq"),
            ("perform.body[0].value", "b0"),
            ("perform.raw_body", "raw"),
        ];
        assert_eq!(found, expected.map(|(p, e)| (p.to_owned(), e)));
        let secrets: Vec<&str> = spec.secrets().into_iter().map(|(slot, _)| slot.path()).collect();
        assert_eq!(
            secrets,
            [
                "signature.secret",
                "signature.previous_secret",
                "perform.auth.oauth2.client_secret",
                "perform.auth.oauth2.refresh_token"
            ]
        );
        assert_eq!(SecretSlot::Signature.owner("org", "con"), "connector:org:con:signature.secret");
        // The walk visits the slots the list names, in its order.
        struct Slots(Vec<SecretSlot>);
        impl<'s> SpecVisitor<'s, Source, Source> for Slots {
            fn expression(&mut self, _: ExpressionField, e: &'s String) -> String {
                e.clone()
            }
            fn name(&mut self, n: &'s String) -> String {
                n.clone()
            }
            fn secret(&mut self, slot: SecretSlot, secret: &'s SecretField) -> SecretField {
                self.0.push(slot);
                secret.clone()
            }
        }
        let mut without_oauth = every_part();
        without_oauth.perform.auth = OutboundAuth::None;
        let mut without_signature = every_part();
        without_signature.signature = None;
        for mut spec in [every_part(), without_oauth, without_signature] {
            let mut walked = Slots(Vec::new());
            spec.map(&mut walked);
            let listed: Vec<SecretSlot> = spec.secrets().into_iter().map(|(slot, _)| slot).collect();
            assert_eq!(walked.0, listed);
            spec.update_secrets(|slot, _| SecretField::Sealed(slot.path().to_owned()));
            assert!(spec.secrets().iter().all(|(slot, s)| **s == SecretField::Sealed(slot.path().to_owned())));
        }
        let mut basic = every_part();
        basic.perform.auth = OutboundAuth::Basic { username: "u".into(), password: "p".into() };
        basic.perform.body_type = BodyType::Json;
        let paths: Vec<String> = basic.expressions().into_iter().map(|(f, _)| f.path()).collect();
        assert!(!paths.contains(&"perform.raw_body".to_owned()), "a raw body counts only for raw bodies");
        assert_eq!(&paths[paths.len() - 2..], ["perform.auth.basic.username", "perform.auth.basic.password"]);
    }
}
