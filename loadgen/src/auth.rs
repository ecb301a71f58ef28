//! The credentials loadgen sends with every order: the `--token` it was given, or, when its own
//! configuration says the API runs `api.auth = "jwt"` with an HS256 secret, an operator token it
//! mints itself. Operator, because loadgen posts for hundreds of random customers and a customer
//! token may only post for its own `usuario`. Tokens are minted by `shared::dev_token::mint`,
//! the development minter the API's verifier accepts, never by hand.

use std::time::Duration;

use reqwest::header::HeaderValue;
use shared::config::{ApiConfig, AuthMode};

/// The `sub` of a token loadgen mints for itself.
pub const SELF_MINTED_SUBJECT: &str = "loadgen";

/// How long a self-minted token is valid: longer than any bounded run (a `--forever` run past it
/// gets 401s, counted as errors like any other refusal).
pub const SELF_MINTED_TTL: Duration = Duration::from_secs(24 * 3600);

/// What goes into the `Authorization` header of every request.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No header: the API runs `api.auth = "none"` (as far as loadgen's configuration says).
    Anonymous,
    /// `--token` / `LOADGEN_TOKEN`.
    Given(HeaderValue),
    /// Minted from loadgen's configuration, with the operator role.
    SelfMinted(HeaderValue),
}

impl Credentials {
    /// The header value, built once for the whole run (sensitive: its `Debug` hides it).
    pub fn header(&self) -> Option<&HeaderValue> {
        match self {
            Self::Anonymous => None,
            Self::Given(v) | Self::SelfMinted(v) => Some(v),
        }
    }

    /// For the report: `none`, `given` or `self-minted`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Anonymous => "none",
            Self::Given(_) => "given",
            Self::SelfMinted(_) => "self-minted",
        }
    }

    /// For messages: what was sent.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Anonymous => "no token",
            Self::Given(_) => "the token given",
            Self::SelfMinted(_) => "a self-minted operator token",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("--token must be the token alone: printable ASCII, no spaces, no `Bearer ` prefix")]
    InvalidToken,
    #[error(
        "api.auth is \"jwt\" in loadgen's configuration but it cannot mint a token ({0}): \
         pass --token (or LOADGEN_TOKEN)"
    )]
    CannotMint(shared::dev_token::MintError),
}

/// The credentials for a run: `token` when given (an empty one counts as none, as an empty
/// `LOADGEN_TOKEN` would), else a self-minted operator token when `api` says `auth = "jwt"`,
/// else none.
pub fn credentials(token: Option<&str>, api: &ApiConfig) -> Result<Credentials, CredentialsError> {
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        return bearer(token).map(Credentials::Given);
    }
    if api.auth != AuthMode::Jwt {
        return Ok(Credentials::Anonymous);
    }
    let token = shared::dev_token::mint(api, SELF_MINTED_SUBJECT, true, SELF_MINTED_TTL)
        .map_err(CredentialsError::CannotMint)?;
    bearer(&token).map(Credentials::SelfMinted)
}

/// `Bearer <token>` as a header value marked sensitive.
pub fn bearer(token: &str) -> Result<HeaderValue, CredentialsError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialsError::InvalidToken);
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| CredentialsError::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::Secret;

    fn jwt_api(secret: Option<&str>) -> ApiConfig {
        ApiConfig {
            auth: AuthMode::Jwt,
            jwt_secret: secret.map(Secret::new),
            jwt_issuer: Some("pedidos-test".into()),
            ..ApiConfig::default()
        }
    }

    #[test]
    fn a_given_token_is_sent_as_a_sensitive_bearer_header() {
        let c = credentials(Some("aaa.bbb.ccc"), &ApiConfig::default()).unwrap();
        assert_eq!(c.label(), "given");
        let header = c.header().unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer aaa.bbb.ccc");
        assert!(header.is_sensitive());
        assert!(!format!("{c:?}").contains("aaa.bbb.ccc"), "{c:?}");
    }

    #[test]
    fn a_given_token_wins_over_the_configuration() {
        let c = credentials(Some("aaa.bbb.ccc"), &jwt_api(Some(&"s".repeat(32)))).unwrap();
        assert!(matches!(c, Credentials::Given(_)));
    }

    #[test]
    fn tokens_with_spaces_or_a_scheme_are_refused() {
        for bad in ["Bearer aaa.bbb.ccc", "aaa bbb", "aaa\nbbb", "tête"] {
            assert!(bearer(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_token_and_no_auth_sends_nothing() {
        let c = credentials(None, &ApiConfig::default()).unwrap();
        assert!(c.header().is_none());
        assert_eq!(c.label(), "none");
        let c = credentials(Some(""), &ApiConfig::default()).unwrap();
        assert!(c.header().is_none());
    }

    #[test]
    fn jwt_mode_with_a_secret_mints_an_operator_token_the_api_accepts() {
        let api = jwt_api(Some(&"s".repeat(40)));
        let c = credentials(None, &api).unwrap();
        assert_eq!(c.label(), "self-minted");
        // Signed with the configured secret, for the configured issuer, as the operator (the
        // API's own tests check that such a token passes its verifier).
        let header = c.header().unwrap().to_str().unwrap();
        let token = header.strip_prefix("Bearer ").unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&["pedidos-test"]);
        let key = jsonwebtoken::DecodingKey::from_secret("s".repeat(40).as_bytes()).unwrap();
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .expect("a valid token")
            .claims;
        assert_eq!(claims["sub"], SELF_MINTED_SUBJECT);
        assert_eq!(claims["role"], api.jwt_ops_role.as_str());
    }

    #[test]
    fn jwt_mode_without_a_secret_is_an_error_not_anonymous() {
        let err = credentials(None, &jwt_api(None)).unwrap_err();
        assert!(matches!(err, CredentialsError::CannotMint(_)), "{err}");
        assert!(err.to_string().contains("--token"), "{err}");
    }
}
