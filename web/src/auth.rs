//! Admin authorization as Zuul does it: `Authorization: Bearer <JWT>` checked against the
//! configured authenticators (HS256 with a shared secret, RS256 with a public key; `iss` must
//! be the authenticator's `issuer-id`, `aud` its `client-id`, `exp` in the future), then the
//! tenant's `admin-rules` from `main.yaml` (`authorization-rule` / `admin-rule` items whose
//! `conditions` are ORed, each a mapping of claims that must all match; a list claim matches
//! when it contains the value; `{tenant.name}` is replaced) or the legacy `zuul.admin` claim
//! listing tenants. A missing or invalid token is 401, a valid one without rights 403.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sluice_scheduler::config::AuthenticatorConfig;
use sluice_scheduler::ServeConfig;

use crate::errors::{ApiError, ApiResult};

/// One realm's token checker.
#[derive(Clone)]
struct Realm {
    realm: String,
    algorithm: Algorithm,
    key: DecodingKey,
    issuer: String,
    audience: String,
    uid_claim: String,
    max_validity: Option<u64>,
    driver: String,
}

/// The configured authenticators and every tenant's admin rules.
#[derive(Clone)]
pub struct Authenticators {
    realms: Vec<Realm>,
    default_realm: Option<String>,
    /// Rule name → conditions (ORed).
    rules: HashMap<String, Vec<Value>>,
    /// Tenant → its admin rule names.
    tenant_rules: HashMap<String, Vec<String>>,
}

impl std::fmt::Debug for Authenticators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticators")
            .field(
                "realms",
                &self.realms.iter().map(|r| &r.realm).collect::<Vec<_>>(),
            )
            .field("tenant_rules", &self.tenant_rules)
            .finish_non_exhaustive()
    }
}

/// Who made an admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A token's user (its uid claim).
    User(String),
    /// A loopback client while `local-admin` is on and no authenticator is configured.
    Local,
}

impl Authenticators {
    /// Reads the authenticators of `cfg` and the admin rules of its tenant configuration;
    /// `None` when no authenticator is configured.
    pub fn from_serve_config(cfg: &ServeConfig) -> Result<Option<Self>, String> {
        if cfg.web.authenticators.is_empty() {
            return Ok(None);
        }
        let mut realms = Vec::new();
        let mut default_realm = None;
        for a in &cfg.web.authenticators {
            let realm = realm(a)?;
            if a.default || default_realm.is_none() {
                default_realm = Some(realm.realm.clone());
            }
            realms.push(realm);
        }
        let (rules, tenant_rules) = admin_rules(&cfg.tenant_config)?;
        Ok(Some(Authenticators {
            realms,
            default_realm,
            rules,
            tenant_rules,
        }))
    }

    /// The realms as `/api/info` lists them.
    pub fn info(&self) -> (Value, Option<String>) {
        let realms: serde_json::Map<String, Value> = self
            .realms
            .iter()
            .map(|r| {
                (
                    r.realm.clone(),
                    serde_json::json!({"authority": r.issuer, "client_id": r.audience, "driver": r.driver}),
                )
            })
            .collect();
        (Value::Object(realms), self.default_realm.clone())
    }

    /// The claims of a valid token, or 401.
    fn validate(&self, token: &str) -> ApiResult<(Value, String)> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ApiError::Unauthorized(format!("Invalid token: {e}")))?;
        let mut last = String::from("no authenticator accepts this token's algorithm");
        for r in self.realms.iter().filter(|r| r.algorithm == header.alg) {
            let mut v = Validation::new(r.algorithm);
            v.set_issuer(&[&r.issuer]);
            v.set_audience(&[&r.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            match jsonwebtoken::decode::<Value>(token, &r.key, &v) {
                Ok(data) => {
                    let claims = data.claims;
                    if let Some(max) = r.max_validity {
                        let iat = claims.get("iat").and_then(Value::as_u64);
                        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                        match iat {
                            Some(iat) if exp.saturating_sub(iat) <= max => {}
                            _ => {
                                last = format!("token validity exceeds {max} s");
                                continue;
                            }
                        }
                    }
                    let user = claims
                        .get(&r.uid_claim)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    if user.is_empty() {
                        last = format!("token has no {} claim", r.uid_claim);
                        continue;
                    }
                    return Ok((claims, user));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(ApiError::Unauthorized(format!("Invalid token: {last}")))
    }

    /// Whether `claims` may administer `tenant`.
    fn allows(&self, tenant: &str, claims: &Value) -> bool {
        let legacy = claims
            .pointer("/zuul/admin")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|t| t.as_str() == Some(tenant)));
        legacy
            || self
                .tenant_rules
                .get(tenant)
                .into_iter()
                .flatten()
                .filter_map(|name| self.rules.get(name))
                .flatten()
                .any(|condition| condition_matches(condition, claims, tenant))
    }
}

fn realm(a: &AuthenticatorConfig) -> Result<Realm, String> {
    let ctx = |m: String| format!("web authenticator {}: {m}", a.name);
    let (algorithm, key) = match a.driver.as_str() {
        "HS256" => {
            let secret = a
                .secret
                .as_deref()
                .ok_or_else(|| ctx("HS256 needs `secret`".into()))?;
            (
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            )
        }
        "RS256" => {
            let path = a
                .public_key
                .as_deref()
                .ok_or_else(|| ctx("RS256 needs `public-key`".into()))?;
            let pem = std::fs::read(path)
                .map_err(|e| ctx(format!("cannot read {}: {e}", path.display())))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map_err(|e| ctx(format!("{} is not an RSA public key: {e}", path.display())))?;
            (Algorithm::RS256, key)
        }
        other => {
            return Err(ctx(format!(
                "unknown driver {other:?} (supported: HS256, RS256)"
            )))
        }
    };
    Ok(Realm {
        realm: a.realm.clone().unwrap_or_else(|| a.name.clone()),
        algorithm,
        key,
        issuer: a.issuer_id.clone(),
        audience: a.client_id.clone(),
        uid_claim: a.uid_claim.clone().unwrap_or_else(|| "sub".into()),
        max_validity: a.max_validity_time,
        driver: a.driver.clone(),
    })
}

type Rules = (HashMap<String, Vec<Value>>, HashMap<String, Vec<String>>);

/// `authorization-rule` / `admin-rule` items and tenants' `admin-rules` of a `main.yaml`.
fn admin_rules(path: &Path) -> Result<Rules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rules = HashMap::new();
    let mut tenants = HashMap::new();
    for item in doc.as_array().into_iter().flatten() {
        for key in ["authorization-rule", "admin-rule"] {
            if let Some(rule) = item.get(key) {
                let name = rule
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{}: {key} without a name", path.display()))?;
                let conditions = match rule.get("conditions") {
                    Some(Value::Array(a)) => a.clone(),
                    Some(one @ Value::Object(_)) => vec![one.clone()],
                    _ => {
                        return Err(format!(
                            "{}: {key} {name}: `conditions` must be a list of mappings",
                            path.display()
                        ))
                    }
                };
                rules.insert(name.to_string(), conditions);
            }
        }
        if let Some(t) = item.get("tenant") {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let names: Vec<String> = match t.get("admin-rules") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            };
            tenants.insert(name.to_string(), names);
        }
    }
    for (tenant, names) in &tenants {
        if let Some(unknown) = names.iter().find(|n| !rules.contains_key(*n)) {
            return Err(format!(
                "{}: tenant {tenant} names unknown admin rule {unknown:?}",
                path.display()
            ));
        }
    }
    Ok((rules, tenants))
}

/// Whether every claim of `condition` matches (a dotted claim name walks nested objects).
fn condition_matches(condition: &Value, claims: &Value, tenant: &str) -> bool {
    let Some(map) = condition.as_object() else {
        return false;
    };
    map.iter().all(|(claim, wanted)| {
        let mut found = claims.get(claim.as_str());
        if found.is_none() {
            let mut cur = Some(claims);
            for part in claim.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            found = cur;
        }
        found.is_some_and(|v| value_matches(wanted, v, tenant))
    })
}

fn value_matches(wanted: &Value, found: &Value, tenant: &str) -> bool {
    match wanted {
        Value::Object(nested) => nested.iter().all(|(k, w)| {
            found
                .get(k.as_str())
                .is_some_and(|f| value_matches(w, f, tenant))
        }),
        Value::String(w) => {
            let w = w.replace("{tenant.name}", tenant);
            match found {
                Value::Array(items) => items.iter().any(|i| i.as_str() == Some(w.as_str())),
                Value::String(s) => *s == w,
                Value::Bool(b) => b.to_string() == w,
                Value::Number(n) => n.to_string() == w,
                _ => false,
            }
        }
        other => match found {
            Value::Array(items) => items.contains(other),
            f => f == other,
        },
    }
}

/// Checks an admin call on `tenant`: the bearer token (or the local guard) and the rules.
pub fn authorize(
    auth: Option<&Authenticators>,
    local_admin: bool,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    tenant: &str,
) -> ApiResult<Caller> {
    let Some(auth) = auth else {
        if local_admin && peer.is_some_and(|p| p.is_loopback()) {
            return Ok(Caller::Local);
        }
        return Err(ApiError::Unauthorized(
            "Admin calls need a bearer token, and no authenticator is configured (web.authenticators)"
                .into(),
        ));
    };
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ApiError::Unauthorized("Missing Authorization header".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be a Bearer token".into()))?;
    let (claims, user) = auth.validate(token.trim())?;
    if !auth.allows(tenant, &claims) {
        return Err(ApiError::Forbidden(format!(
            "User {user} is not allowed to perform admin actions on tenant {tenant}"
        )));
    }
    Ok(Caller::User(user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_match_claims_as_zuul() {
        let claims = json!({"sub": "alice", "groups": ["ops", "dev"], "resources_access": {"account": {"roles": ["admin"]}}});
        assert!(condition_matches(&json!({"sub": "alice"}), &claims, "t"));
        assert!(condition_matches(&json!({"groups": "ops"}), &claims, "t"));
        assert!(!condition_matches(&json!({"groups": "qa"}), &claims, "t"));
        assert!(condition_matches(
            &json!({"resources_access.account.roles": "admin"}),
            &claims,
            "t"
        ));
        assert!(condition_matches(
            &json!({"resources_access": {"account": {"roles": "admin"}}}),
            &claims,
            "t"
        ));
        assert!(!condition_matches(
            &json!({"sub": "alice", "groups": "qa"}),
            &claims,
            "t"
        ));
        assert!(condition_matches(
            &json!({"groups": "{tenant.name}"}),
            &claims,
            "dev"
        ));
    }
}
