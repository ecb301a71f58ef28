//! Who is calling, and what they may do: `api.auth` turned into a [`Caller`] per request.
//!
//! Pure: an `Authorization` header in, a caller or a [`Rejection`] out. The HTTP layer
//! (`http::auth`) applies it before any handler runs, and the handlers ask the caller
//! [`Caller::may_act_for`]. Tokens are verified by `jsonwebtoken`, never parsed by hand.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use shared::config::{ApiConfig, AuthMode};

/// Clock skew tolerated on `exp` and `nbf` between the issuer and this host.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(30);

/// Longest accepted token. Real ones are well under 2 KB; anything much larger is refused before
/// it is decoded, so a 100 KB header costs nothing but its read.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "pedidos";

/// The party behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `api.auth = "none"`: anyone may do anything, as on the local run.
    Anyone,
    /// A customer: the token's `sub`, which is their `usuario`.
    Customer(String),
    /// A token carrying the operator role (`api.jwt_ops_role`): may act for every customer.
    Operator(String),
}

impl Caller {
    /// Whether this caller may place an order for `usuario`, or read one of theirs.
    pub fn may_act_for(&self, usuario: &str) -> bool {
        match self {
            Self::Anyone | Self::Operator(_) => true,
            Self::Customer(sub) => sub == usuario,
        }
    }

    /// The one customer whose orders a listing shows this caller, or `None` for everyone's.
    pub fn own_orders_only(&self) -> Option<&str> {
        match self {
            Self::Customer(sub) => Some(sub),
            Self::Anyone | Self::Operator(_) => None,
        }
    }
}

/// Why a request's credentials were refused: answered 401 with `WWW-Authenticate: Bearer`.
/// The sentences tell a client what to fix and nothing about the key or the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("this resource needs an `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the bearer token is too large")]
    TooLarge,
    #[error("the bearer token is malformed")]
    Malformed,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    #[error("the bearer token has no subject (`sub`)")]
    NoSubject,
    /// Wrong signature, algorithm, issuer or audience: deliberately not told apart.
    #[error("the bearer token is not valid for this API")]
    Invalid,
}

impl Rejection {
    /// The RFC 6750 error code, or `None` when the request carried no credentials at all (the
    /// RFC's advice for that case).
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::NotBearer => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }

    /// The `WWW-Authenticate` value that goes with this rejection.
    pub fn challenge(self) -> String {
        match self.error_code() {
            None => format!("Bearer realm=\"{REALM}\""),
            Some(code) => {
                format!("Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{self}\"")
            }
        }
    }

    fn from_jwt(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => Self::NoSubject,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_)
            | ErrorKind::InvalidClaimFormat(_) => Self::Malformed,
            _ => Self::Invalid,
        }
    }
}

/// A key or secret that cannot verify tokens: a start-up error.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read api.jwt_public_key_file {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api.jwt_public_key_file {path} holds no RSA or EC public key in PEM")]
    NotAPublicKey { path: PathBuf },
    #[error("api.auth is \"jwt\" but neither api.jwt_secret nor api.jwt_public_key_file is set")]
    NoKey,
}

/// How requests are authenticated: the verifying half of `api.auth`.
pub enum Auth {
    None,
    Jwt(Box<Verifier>),
}

impl Auth {
    /// From a validated `[api]` section: reads and parses the public key file, if one is named.
    pub fn from_config(api: &ApiConfig) -> Result<Self, AuthSetupError> {
        match api.auth {
            AuthMode::None => Ok(Self::None),
            AuthMode::Jwt => Ok(Self::Jwt(Box::new(Verifier::from_config(api)?))),
        }
    }

    pub fn is_required(&self) -> bool {
        matches!(self, Self::Jwt(_))
    }

    /// The caller behind a request with this `Authorization` header value (raw bytes).
    pub fn caller(&self, authorization: Option<&[u8]>) -> Result<Caller, Rejection> {
        match self {
            Self::None => Ok(Caller::Anyone),
            Self::Jwt(verifier) => verifier.caller(authorization),
        }
    }
}

/// Checks JWTs: one algorithm, one key, the configured `iss` and `aud`.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    ops_role: String,
}

/// The claims read from a verified token. `exp`, `nbf`, `iss` and `aud` are checked by
/// `jsonwebtoken` itself, before these are looked at.
#[derive(Deserialize)]
struct Claims {
    /// Required (`MissingRequiredClaim`); optional here so that its absence is reported as such
    /// rather than as a malformed token.
    #[serde(default)]
    sub: Option<String>,
    /// A string or an array of strings; anything else grants nothing.
    #[serde(default)]
    role: Value,
}

impl Verifier {
    fn from_config(api: &ApiConfig) -> Result<Self, AuthSetupError> {
        let (key, algorithm) = match (&api.jwt_secret, &api.jwt_public_key_file) {
            (Some(secret), _) if !secret.is_empty() => (
                DecodingKey::from_secret(secret.expose().as_bytes())
                    .map_err(|_| AuthSetupError::NoKey)?,
                Algorithm::HS256,
            ),
            (_, Some(path)) if !path.as_os_str().is_empty() => public_key(path)?,
            _ => return Err(AuthSetupError::NoKey),
        };
        // One algorithm, fixed by the key: a token naming another (HS256 signed with the public
        // key, `none`) is refused before its signature is looked at.
        let mut validation = Validation::new(algorithm);
        validation.leeway = CLOCK_LEEWAY.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &api.jwt_issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &api.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            ops_role: api.jwt_ops_role.clone(),
        })
    }

    fn caller(&self, authorization: Option<&[u8]>) -> Result<Caller, Rejection> {
        let header = authorization.ok_or(Rejection::Missing)?;
        let token = bearer_token(header)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::TooLarge);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                tracing::debug!(reason = ?e.kind(), "bearer token refused");
                Rejection::from_jwt(e.kind())
            })?
            .claims;
        let sub = match claims.sub {
            Some(sub) if !sub.trim().is_empty() => sub,
            _ => return Err(Rejection::NoSubject),
        };
        let is_operator = match &claims.role {
            Value::String(role) => *role == self.ops_role,
            Value::Array(roles) => roles.iter().any(|r| r.as_str() == Some(&self.ops_role)),
            _ => false,
        };
        Ok(if is_operator {
            Caller::Operator(sub)
        } else {
            Caller::Customer(sub)
        })
    }
}

/// The token of a `Bearer <token>` header value (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer_token(header: &[u8]) -> Result<&[u8], Rejection> {
    let text = std::str::from_utf8(header).map_err(|_| Rejection::NotBearer)?;
    let (scheme, token) = text.trim().split_once(' ').ok_or(Rejection::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Rejection::NotBearer);
    }
    Ok(token.as_bytes())
}

/// The issuer's public key and the algorithm it implies: RSA is RS256, EC is ES256.
fn public_key(path: &PathBuf) -> Result<(DecodingKey, Algorithm), AuthSetupError> {
    let pem = std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
        path: path.clone(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    Err(AuthSetupError::NotAPublicKey { path: path.clone() })
}

#[cfg(test)]
mod tests;
