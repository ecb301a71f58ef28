//! The OpenAPI document and the Swagger UI page that shows it, both completed with what
//! poem-openapi cannot express: [`schema::forbid_other_fields`],
//! [`schema::constrain_idempotency_key`], [`describe_event_stream`], and under `api.auth = "jwt"`
//! the bearer scheme ([`require_bearer`]), which the gate in `http::auth` applies outside the
//! handlers.

use poem_openapi::OpenApiService;
use serde_json::{json, Value};

use super::paths::is_public;
use super::routes::OrdersApi;
use super::schema;

/// The name of the security scheme in the document.
const BEARER_SCHEME: &str = "bearerAuth";

/// The service with its title, version and description, as `/openapi.json` presents it.
pub(crate) fn service() -> OpenApiService<OrdersApi, ()> {
    // No `servers` entry: Swagger UI then calls whatever origin it was loaded from.
    OpenApiService::new(OrdersApi, "pedidos", env!("CARGO_PKG_VERSION")).description(
        "Orders in, verdicts out: the HTTP entry of the pedidos Kafka mesh. What travels on \
             its topics (channels, records, keys, headers, JSON Schemas) is described by the \
             [AsyncAPI document](/asyncapi.json).",
    )
}

/// The completed document, and the Swagger UI page embedding it.
pub(crate) fn documents(service: &OpenApiService<OrdersApi, ()>, bearer: bool) -> (Value, String) {
    let generated = service.spec();
    let mut spec: Value = serde_json::from_str(&generated).expect("poem-openapi writes JSON");
    schema::forbid_other_fields(&mut spec);
    schema::constrain_idempotency_key(&mut spec);
    describe_event_stream(&mut spec);
    if bearer {
        require_bearer(&mut spec);
    }
    let patched = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    // The page embeds the document as it was generated: swap in the completed one.
    let page = service.swagger_ui_html();
    assert!(page.contains(&generated), "Swagger UI embeds the document");
    (spec, page.replacen(&generated, &patched, 1))
}

/// poem-openapi documents an event stream as an array of its items; in OpenAPI 3.0 and 3.1 a
/// `text/event-stream` schema describes each event instead (`data`, `event`, `id`), so that is
/// what clients and Schemathesis are told: `data` is an `Evento` in JSON.
fn describe_event_stream(spec: &mut Value) {
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    let media_types = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(|operation| operation["responses"].as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response["content"].get_mut("text/event-stream"));
    for media_type in media_types {
        let Some(item) = media_type["schema"].get("items").cloned() else {
            continue;
        };
        media_type["schema"] = json!({
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": item,
                },
                "event": { "type": "string", "enum": ["status"] },
                "id": { "type": "string", "format": "uuid" },
            },
        });
    }
}

/// Declares the JWT bearer scheme and requires it on every operation outside the public paths,
/// so Swagger UI shows its *Authorize* button and sends the token.
fn require_bearer(spec: &mut Value) {
    spec["components"]["securitySchemes"][BEARER_SCHEME] = json!({
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT whose `sub` is the customer's `usuario`; the operator role may act for anyone.",
    });
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    for (path, operations) in paths {
        if is_public(path) {
            continue;
        }
        for operation in operations
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            operation["security"] = json!([{ BEARER_SCHEME: [] }]);
        }
    }
}

/// The documents, as the API serves them without `api.auth = "jwt"`.
#[cfg(test)]
pub(crate) fn test_document() -> (Value, String) {
    documents(&service(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the document to `$OPENAPI_OUT` and the page beside it (`.html`) when set
    /// (`OPENAPI_OUT=/tmp/openapi.json cargo test -p api --lib swagger_page`), to diff what
    /// clients see across a change.
    #[test]
    fn an_event_stream_is_described_event_by_event() {
        let (spec, _) = test_document();
        let stream = &spec["paths"]["/pedidos/{id}/eventos"]["get"]["responses"]["200"]["content"]
            ["text/event-stream"]["schema"];
        assert_eq!(stream["type"], "object", "{stream}");
        let data = &stream["properties"]["data"];
        assert_eq!(
            data["contentSchema"]["$ref"], "#/components/schemas/Evento",
            "{stream}"
        );
        assert_eq!(stream["properties"]["event"]["enum"][0], "status");
    }

    #[test]
    fn the_swagger_page_shows_the_completed_document() {
        let (spec, page) = test_document();
        let body = &spec["components"]["schemas"][schema::ORDER_REQUEST];
        assert_eq!(body["additionalProperties"], false, "{body}");
        assert!(page.contains(r#""additionalProperties": false"#));
        assert!(page.contains(r#""title": "pedidos""#));
        if let Some(out) = std::env::var_os("OPENAPI_OUT") {
            let text = serde_json::to_string_pretty(&spec).unwrap();
            let mut html = out.clone();
            html.push(".html");
            std::fs::write(out, text).expect("OPENAPI_OUT is writable");
            std::fs::write(html, page).expect("OPENAPI_OUT.html is writable");
        }
    }

    #[test]
    fn jwt_mode_requires_the_bearer_scheme_everywhere_but_the_public_paths() {
        let (open, _) = documents(&service(), false);
        assert!(open["components"].get("securitySchemes").is_none());
        let (spec, page) = documents(&service(), true);
        assert_eq!(
            spec["components"]["securitySchemes"][BEARER_SCHEME]["scheme"],
            "bearer"
        );
        assert!(page.contains(BEARER_SCHEME), "Swagger UI gets the scheme");
        let mut secured = Vec::new();
        for (path, operations) in spec["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let required = operation["security"] == json!([{ BEARER_SCHEME: [] }]);
                assert_eq!(required, !is_public(path), "{method} {path}");
                assert_eq!(
                    operation["responses"].get("401").is_some(),
                    required,
                    "{method} {path} documents its 401"
                );
                if required {
                    secured.push(format!("{method} {path}"));
                }
            }
        }
        secured.sort();
        assert_eq!(
            secured,
            [
                "get /pedidos",
                "get /pedidos/{id}",
                "get /pedidos/{id}/eventos",
                "post /pedidos"
            ]
        );
    }

    #[test]
    fn clients_see_the_portuguese_schema_names() {
        let (spec, _) = test_document();
        let mut names: Vec<&String> = spec["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        names.sort();
        let expected = [
            "ErrorBody",
            "Evento",
            "Health",
            "PaginaPedidos",
            "Pedido",
            "PedidoNovo",
            "PedidoStatus",
        ];
        assert_eq!(names, expected);
    }
}
