use std::path::Path;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use shared::config::Secret;
use shared::dev_token::{self, MintError};

use super::*;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

fn hs256_config() -> ApiConfig {
    ApiConfig {
        auth: AuthMode::Jwt,
        jwt_secret: Some(Secret::new(SECRET)),
        ..ApiConfig::default()
    }
}

fn key_file_config(public_key: &str) -> ApiConfig {
    ApiConfig {
        auth: AuthMode::Jwt,
        jwt_public_key_file: Some(Path::new(FIXTURES).join(public_key)),
        ..ApiConfig::default()
    }
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &claims,
    )
}

/// Claims that pass every check of [`hs256_config`], for `sub`.
fn valid(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600})
}

fn caller(config: &ApiConfig, token: &str) -> Result<Caller, Rejection> {
    let auth = Auth::from_config(config).unwrap();
    auth.caller(Some(format!("Bearer {token}").as_bytes()))
}

#[test]
fn a_valid_token_names_the_customer() {
    let config = hs256_config();
    assert_eq!(
        caller(&config, &hs256(valid("ana"))),
        Ok(Caller::Customer("ana".into()))
    );
    // The scheme is case-insensitive; surrounding spaces are not part of the token.
    let auth = Auth::from_config(&config).unwrap();
    let header = format!("bearer   {}  ", hs256(valid("ana")));
    assert_eq!(
        auth.caller(Some(header.as_bytes())),
        Ok(Caller::Customer("ana".into()))
    );
}

#[test]
fn the_configured_role_makes_an_operator_and_nothing_else_does() {
    let config = hs256_config();
    let with_role = |role: Value| {
        let mut claims = valid("ops-1");
        claims["role"] = role;
        caller(&config, &hs256(claims))
    };
    let operator = Ok(Caller::Operator("ops-1".into()));
    let customer = Ok(Caller::Customer("ops-1".into()));
    assert_eq!(with_role(json!("ops")), operator);
    assert_eq!(with_role(json!(["reader", "ops"])), operator);
    assert_eq!(with_role(json!("OPS")), customer);
    assert_eq!(with_role(json!("admin")), customer);
    assert_eq!(with_role(json!(["reader"])), customer);
    assert_eq!(with_role(json!({"ops": true})), customer);
    assert_eq!(with_role(json!(1)), customer);

    let mut admins = hs256_config();
    admins.jwt_ops_role = "admin".into();
    let mut claims = valid("root");
    claims["role"] = json!("admin");
    assert_eq!(
        caller(&admins, &hs256(claims)),
        Ok(Caller::Operator("root".into()))
    );
}

#[test]
fn a_missing_or_non_bearer_header_is_refused() {
    let auth = Auth::from_config(&hs256_config()).unwrap();
    assert_eq!(auth.caller(None), Err(Rejection::Missing));
    for header in [
        &b"Basic YW5hOnNlbmhh"[..],
        b"Bearer",
        b"Bearer    ",
        b"Token abc",
        b"\xff\xfe",
    ] {
        assert_eq!(
            auth.caller(Some(header)),
            Err(Rejection::NotBearer),
            "{header:?}"
        );
    }
}

#[test]
fn time_claims_are_checked_with_a_small_leeway() {
    let config = hs256_config();
    let leeway = CLOCK_LEEWAY.as_secs() as i64;
    let expired = json!({"sub": "ana", "exp": now() - leeway - 5});
    assert_eq!(caller(&config, &hs256(expired)), Err(Rejection::Expired));
    let just_expired = json!({"sub": "ana", "exp": now() - leeway / 2});
    assert!(caller(&config, &hs256(just_expired)).is_ok());

    let early = json!({"sub": "ana", "exp": now() + 600, "nbf": now() + leeway + 60});
    assert_eq!(caller(&config, &hs256(early)), Err(Rejection::NotYetValid));
    let nearly = json!({"sub": "ana", "exp": now() + 600, "nbf": now() + leeway / 2});
    assert!(caller(&config, &hs256(nearly)).is_ok());

    let forever = json!({"sub": "ana"});
    assert_eq!(caller(&config, &hs256(forever)), Err(Rejection::Invalid));
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let mut config = hs256_config();
    config.jwt_issuer = Some("https://id.example".into());
    config.jwt_audience = Some("pedidos".into());
    let claims = |iss: Option<&str>, aud: Option<Value>| {
        let mut c = valid("ana");
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        caller(&config, &hs256(c))
    };
    let ana = Ok(Caller::Customer("ana".into()));
    assert_eq!(
        claims(Some("https://id.example"), Some(json!("pedidos"))),
        ana
    );
    assert_eq!(
        claims(
            Some("https://id.example"),
            Some(json!(["other", "pedidos"]))
        ),
        ana
    );
    for (iss, aud) in [
        (Some("https://evil.example"), Some(json!("pedidos"))),
        (None, Some(json!("pedidos"))),
        (Some("https://id.example"), Some(json!("other"))),
        (Some("https://id.example"), None),
    ] {
        assert_eq!(
            claims(iss, aud.clone()),
            Err(Rejection::Invalid),
            "{iss:?} {aud:?}"
        );
    }
    // Unconfigured, they are not checked: a token with any audience passes.
    let mut c = valid("ana");
    c["aud"] = json!("anything");
    c["iss"] = json!("anyone");
    assert_eq!(caller(&hs256_config(), &hs256(c)), ana);
}

#[test]
fn a_token_signed_with_another_secret_is_invalid() {
    let other = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!").unwrap();
    let token = sign(Algorithm::HS256, &other, &valid("ana"));
    assert_eq!(caller(&hs256_config(), &token), Err(Rejection::Invalid));
}

#[test]
fn unsigned_truncated_or_garbled_tokens_are_refused() {
    let config = hs256_config();
    let good = hs256(valid("ana"));
    let payload = good.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"}: jsonwebtoken knows no such algorithm.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    assert_eq!(caller(&config, &unsigned), Err(Rejection::Malformed));
    let truncated = &good[..good.len() - 10];
    assert_eq!(caller(&config, truncated), Err(Rejection::Malformed));
    let resigned = format!("{}.{}", good.rsplit_once('.').unwrap().0, "AAAA");
    assert_eq!(caller(&config, &resigned), Err(Rejection::Invalid));
    let two_parts = good.rsplit_once('.').unwrap().0;
    assert_eq!(caller(&config, two_parts), Err(Rejection::Malformed));
    assert_eq!(caller(&config, "not-a-jwt"), Err(Rejection::Malformed));
    assert_eq!(caller(&config, "a.b.c"), Err(Rejection::Malformed));
}

#[test]
fn a_token_without_a_subject_is_refused() {
    let config = hs256_config();
    let no_sub = json!({"exp": now() + 600});
    assert_eq!(caller(&config, &hs256(no_sub)), Err(Rejection::NoSubject));
    assert_eq!(
        caller(&config, &hs256(valid("  "))),
        Err(Rejection::NoSubject)
    );
}

#[test]
fn an_oversized_token_is_refused_before_it_is_decoded() {
    let mut claims = valid("ana");
    claims["padding"] = json!("x".repeat(100 * 1024));
    let token = hs256(claims);
    assert_eq!(caller(&hs256_config(), &token), Err(Rejection::TooLarge));
}

#[test]
fn rs256_and_es256_tokens_verify_against_their_public_key_files() {
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    let token = sign(Algorithm::RS256, &rsa, &valid("ana"));
    let rs256 = key_file_config("rsa-public.pem");
    assert_eq!(caller(&rs256, &token), Ok(Caller::Customer("ana".into())));

    let ec = EncodingKey::from_ec_pem(&fixture("ec-private.pem")).unwrap();
    let token = sign(Algorithm::ES256, &ec, &valid("bia"));
    let es256 = key_file_config("ec-public.pem");
    assert_eq!(caller(&es256, &token), Ok(Caller::Customer("bia".into())));
    // Each key verifies its own algorithm only.
    assert_eq!(caller(&rs256, &token), Err(Rejection::Invalid));
    assert_eq!(
        caller(&es256, &hs256(valid("bia"))),
        Err(Rejection::Invalid)
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // Algorithm confusion: a verifier that let the token pick its algorithm would take the
    // public key, known to anyone, as an HMAC secret.
    let public = fixture("rsa-public.pem");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public).unwrap(),
        &json!({"sub": "ana", "exp": now() + 600, "role": "ops"}),
    );
    assert_eq!(
        caller(&key_file_config("rsa-public.pem"), &forged),
        Err(Rejection::Invalid)
    );
}

#[test]
fn a_missing_or_unusable_key_file_is_a_setup_error_naming_it() {
    let missing = key_file_config("no-such-key.pem");
    let e = Auth::from_config(&missing).err().unwrap().to_string();
    assert!(e.contains("api.jwt_public_key_file"), "{e}");
    assert!(e.contains("no-such-key.pem"), "{e}");
    let private = key_file_config("README.md");
    let e = Auth::from_config(&private).err().unwrap().to_string();
    assert!(e.contains("no RSA or EC public key"), "{e}");
}

#[test]
fn none_mode_lets_anyone_act_for_anyone() {
    let auth = Auth::from_config(&ApiConfig::default()).unwrap();
    assert!(!auth.is_required());
    assert_eq!(auth.caller(None), Ok(Caller::Anyone));
    assert_eq!(auth.caller(Some(b"Bearer junk")), Ok(Caller::Anyone));
}

#[test]
fn customers_act_for_themselves_and_operators_for_everyone() {
    let ana = Caller::Customer("ana".into());
    assert!(ana.may_act_for("ana"));
    assert!(!ana.may_act_for("bia"));
    assert!(!ana.may_act_for("Ana"));
    assert_eq!(ana.own_orders_only(), Some("ana"));
    for everyone in [Caller::Anyone, Caller::Operator("ops-1".into())] {
        assert!(everyone.may_act_for("ana") && everyone.may_act_for("bia"));
        assert_eq!(everyone.own_orders_only(), None);
    }
}

#[test]
fn challenges_follow_rfc_6750() {
    assert_eq!(Rejection::Missing.challenge(), "Bearer realm=\"pedidos\"");
    assert_eq!(
        Rejection::Expired.challenge(),
        "Bearer realm=\"pedidos\", error=\"invalid_token\", \
         error_description=\"the bearer token has expired\""
    );
    assert_eq!(Rejection::NotBearer.error_code(), Some("invalid_request"));
}

#[test]
fn a_minted_development_token_passes_the_verifier() {
    let mut config = hs256_config();
    config.jwt_issuer = Some("pedidos-dev".into());
    config.jwt_audience = Some("pedidos".into());
    let ttl = Duration::from_secs(60);
    let token = dev_token::mint(&config, "ana", false, ttl).unwrap();
    assert_eq!(caller(&config, &token), Ok(Caller::Customer("ana".into())));
    let token = dev_token::mint(&config, "ops-1", true, ttl).unwrap();
    assert_eq!(
        caller(&config, &token),
        Ok(Caller::Operator("ops-1".into()))
    );
    let public_key_only = key_file_config("rsa-public.pem");
    assert!(matches!(
        dev_token::mint(&public_key_only, "ana", false, ttl),
        Err(MintError::NoSecret)
    ));
}
