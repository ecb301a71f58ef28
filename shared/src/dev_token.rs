//! Development tokens for `api.auth = "jwt"`: an HS256 JWT signed with the configured
//! `api.jwt_secret`, for trying `jwt` mode locally and for loadgen — not for production issuance
//! (real tokens come from an identity provider). Here, not in the API, so that loadgen can mint
//! one without building the HTTP stack; the API's verifier (`api::auth`) is what accepts it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::ApiConfig;

/// The claims of a development token.
#[derive(Debug, Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("minting a token needs api.jwt_secret (HS256): a public key cannot sign")]
    NoSecret,
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A development token for `usuario`, signed with the configured HS256 secret and carrying the
/// configured `iss` and `aud`, valid for `ttl`; with the operator role when `operator`. For
/// trying `jwt` mode locally and for loadgen, not for production issuance.
pub fn mint(
    api: &ApiConfig,
    usuario: &str,
    operator: bool,
    ttl: Duration,
) -> Result<String, MintError> {
    let secret = api
        .jwt_secret
        .as_ref()
        .filter(|s| !s.is_empty())
        .ok_or(MintError::NoSecret)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = DevClaims {
        sub: usuario,
        iat: now,
        exp: now.saturating_add(ttl.as_secs()),
        iss: api.jwt_issuer.as_deref(),
        aud: api.jwt_audience.as_deref(),
        role: operator.then_some(api.jwt_ops_role.as_str()),
    };
    let key = EncodingKey::from_secret(secret.expose().as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}
