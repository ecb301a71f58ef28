//! `api.auth = "jwt"` over HTTP, on a real broker: who may place and read which orders, and
//! what a bad token gets (a 401 JSON, and nothing published).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::config::{AuthMode, Secret};
use shared::dev_token;
use shared::Config;
use testkit::read_topic;

mod support;

use support::TestApi;

const SECRET: &str = "an-http-test-secret-of-32-bytes-or-more";
const HOUR: Duration = Duration::from_secs(3_600);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn hs256_config() -> Config {
    let mut config = support::config();
    config.api.auth = AuthMode::Jwt;
    config.api.jwt_secret = Some(Secret::new(SECRET));
    config
}

fn order_for(usuario: &str) -> Value {
    json!({"usuario": usuario, "produto": "livro", "quantidade": 1, "valor": "12.50"})
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Places an order for `usuario` with `token`, which must be accepted; returns its id.
async fn place(api: &TestApi, token: &str, usuario: &str) -> String {
    let response = api.post_json_as(token, &order_for(usuario)).await;
    assert_eq!(response.status(), 202, "{usuario}");
    json_of(response).await["id"].as_str().unwrap().to_string()
}

/// The ids a listing answers, and its total.
async fn listing(api: &TestApi, token: &str, query: &str) -> (Vec<String>, u64) {
    let response = api.get_as(token, &format!("/pedidos{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let page = json_of(response).await;
    let ids = page["pedidos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    (ids, page["total"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_act_only_for_themselves_and_operators_for_anyone() {
    let config = hs256_config();
    let api = TestApi::start(&config).await;
    let token = |usuario: &str, operator: bool| {
        dev_token::mint(&config.api, usuario, operator, HOUR).unwrap()
    };
    let (ana, bia, ops) = (
        token("ana", false),
        token("bia", false),
        token("ops-1", true),
    );

    let ana_order = place(&api, &ana, "ana").await;
    let bia_order = place(&api, &bia, "bia").await;

    // ana cannot post as bia: 403 naming usuario.
    let response = api.post_json_as(&ana, &order_for("bia")).await;
    assert_eq!(response.status(), 403);
    let error = json_of(response).await;
    assert_eq!(error["error"], "forbidden", "{error}");
    assert_eq!(error["field"], "usuario", "{error}");

    // ana cannot read bia's order: the same 404 as an id nobody has.
    assert_eq!(
        api.get_as(&ana, &format!("/pedidos/{ana_order}"))
            .await
            .status(),
        200
    );
    let hidden = api.get_as(&ana, &format!("/pedidos/{bia_order}")).await;
    assert_eq!(hidden.status(), 404);
    let hidden = json_of(hidden).await;
    let nobody = "00000000-0000-4000-8000-000000000000";
    let unknown = json_of(api.get_as(&ana, &format!("/pedidos/{nobody}")).await).await;
    assert_eq!(hidden["error"], unknown["error"]);
    assert_eq!(
        hidden["message"]
            .as_str()
            .unwrap()
            .replace(&bia_order, nobody),
        unknown["message"]
    );

    // An operator may do both.
    let for_bia = place(&api, &ops, "bia").await;
    for id in [&ana_order, &bia_order, &for_bia] {
        let response = api.get_as(&ops, &format!("/pedidos/{id}")).await;
        assert_eq!(response.status(), 200, "{id}");
    }

    // Listings: a customer sees their own; an operator everyone's, and may filter.
    assert_eq!(listing(&api, &ana, "").await, (vec![ana_order.clone()], 1));
    assert_eq!(
        listing(&api, &ana, "?usuario=ana").await,
        (vec![ana_order.clone()], 1)
    );
    let response = api.get_as(&ana, "/pedidos?usuario=bia").await;
    assert_eq!(response.status(), 403);
    assert_eq!(json_of(response).await["field"], "usuario");
    assert_eq!(
        listing(&api, &bia, "").await,
        (vec![for_bia.clone(), bia_order.clone()], 2)
    );
    let (all, total) = listing(&api, &ops, "").await;
    assert_eq!(total, 3);
    assert_eq!(
        all,
        vec![for_bia.clone(), bia_order.clone(), ana_order.clone()]
    );
    assert_eq!(
        listing(&api, &ops, "?usuario=bia").await,
        (vec![for_bia, bia_order], 2)
    );

    // Liveness and the documentation need no token; the document declares the scheme.
    assert_eq!(api.get("/health").await.status(), 200);
    assert_eq!(api.get("/docs").await.status(), 200);
    let spec = json_of(api.get("/openapi.json").await).await;
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    api.stop().await;
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_a_401_json_and_publish_nothing() {
    // RS256 with a public key file, an issuer and an audience: every check is on.
    let mut config = support::config();
    config.api.auth = AuthMode::Jwt;
    config.api.jwt_public_key_file = Some(fixture("rsa-public.pem"));
    config.api.jwt_issuer = Some("https://id.example".into());
    config.api.jwt_audience = Some("pedidos".into());
    let api = TestApi::start(&config).await;

    let private = std::fs::read(fixture("rsa-private.pem")).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&private).unwrap();
    let sign = |alg: Algorithm, key: &EncodingKey, claims: &Value| {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    };
    let claims = |change: &dyn Fn(&mut Value)| {
        let mut c = json!({
            "sub": "ana", "iss": "https://id.example", "aud": "pedidos",
            "exp": now() + 600, "nbf": now() - 10,
        });
        change(&mut c);
        c
    };
    let rs256 = |change: &dyn Fn(&mut Value)| sign(Algorithm::RS256, &rsa, &claims(change));
    let valid = rs256(&|_| {});

    // A well-formed 2048-bit RS256 signature that the issuer's key did not make.
    let forged_signature = {
        let (head, _) = valid.rsplit_once('.').unwrap();
        format!("{head}.{}", "A".repeat(342))
    };
    let public = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public).unwrap(),
        &claims(&|c| c["role"] = json!("ops")),
    );
    let payload = valid.split('.').nth(1).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("no Authorization header", String::new()),
        ("not a bearer scheme", "Basic YW5hOnNlbmhh".into()),
        (
            "expired",
            format!("Bearer {}", rs256(&|c| c["exp"] = json!(now() - 3_600))),
        ),
        (
            "not yet valid",
            format!("Bearer {}", rs256(&|c| c["nbf"] = json!(now() + 3_600))),
        ),
        (
            "wrong issuer",
            format!(
                "Bearer {}",
                rs256(&|c| c["iss"] = json!("https://evil.example"))
            ),
        ),
        (
            "wrong audience",
            format!("Bearer {}", rs256(&|c| c["aud"] = json!("other-api"))),
        ),
        ("wrong signature", format!("Bearer {forged_signature}")),
        (
            "alg=none",
            format!("Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
        ),
        (
            "HS256 signed with the public key",
            format!("Bearer {confused}"),
        ),
        ("truncated", format!("Bearer {}", &valid[..valid.len() / 2])),
        (
            "100 KB header",
            format!("Bearer {}", "x".repeat(100 * 1024)),
        ),
    ];
    for (what, authorization) in &cases {
        for (method, path) in [("POST", "/pedidos"), ("GET", "/pedidos")] {
            let mut request = api
                .client
                .request(method.parse().unwrap(), format!("{}{path}", api.url))
                .json(&order_for("ana"));
            if !authorization.is_empty() {
                request = request.header("authorization", authorization);
            }
            let response = request.send().await.expect("answered");
            assert_eq!(response.status(), 401, "{what}: {method} {path}");
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with("Bearer realm=\"pedidos\""),
                "{what}: {challenge}"
            );
            let error = json_of(response).await;
            assert_eq!(error["error"], "unauthorized", "{what}: {error}");
            let message = error["message"].as_str().unwrap();
            for secret in ["rsa-public.pem", "id.example", "BEGIN"] {
                assert!(
                    !message.contains(secret),
                    "{what}: leaks {secret}: {message}"
                );
            }
        }
    }

    // One good order after all the bad ones: the only record on Pedidos.
    assert_eq!(
        api.post_json_as(&valid, &order_for("ana")).await.status(),
        202
    );
    let pedidos = read_topic(
        &config.kafka,
        &config.topics.pedidos,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(pedidos.len(), 1, "refused requests published nothing");
    assert_eq!(pedidos[0].key_str().as_deref(), Some("ana"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_serving_off_loopback_needs_allow_anonymous() {
    let mut config = support::config();
    config.api.listen = "0.0.0.0:0".into();
    let refused = api::Application::build(&config)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(refused, api::ApiError::AnonymousExposed { .. }),
        "{refused}"
    );
    config.api.allow_anonymous = true;
    let api = TestApi::start(&config).await;
    assert_eq!(api.post_json(&order_for("ana")).await.status(), 202);
    api.stop().await;
}
