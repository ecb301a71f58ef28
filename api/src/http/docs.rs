//! The OpenAPI document and the Swagger UI page that shows it, both completed with what
//! poem-openapi cannot express ([`schema::forbid_other_fields`]).

use poem_openapi::OpenApiService;
use serde_json::Value;

use super::routes::OrdersApi;
use super::schema;

/// The service with its title, version and description, as `/openapi.json` presents it.
pub(crate) fn service(api: OrdersApi) -> OpenApiService<OrdersApi, ()> {
    // No `servers` entry: Swagger UI then calls whatever origin it was loaded from.
    OpenApiService::new(api, "pedidos", env!("CARGO_PKG_VERSION"))
        .description("Orders in, verdicts out: the HTTP entry of the pedidos Kafka mesh.")
}

/// The completed document, and the Swagger UI page embedding it.
pub(crate) fn documents(service: &OpenApiService<OrdersApi, ()>) -> (Value, String) {
    let generated = service.spec();
    let mut spec: Value = serde_json::from_str(&generated).expect("poem-openapi writes JSON");
    schema::forbid_other_fields(&mut spec);
    let patched = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    // The page embeds the document as it was generated: swap in the completed one.
    let page = service.swagger_ui_html();
    assert!(page.contains(&generated), "Swagger UI embeds the document");
    (spec, page.replacen(&generated, &patched, 1))
}

/// The documents of an API whose producer points at no broker: building them needs an
/// `OrdersApi`, and never touches it.
#[cfg(test)]
pub(crate) fn test_document() -> (Value, String) {
    use std::sync::{Arc, RwLock};
    use std::time::Duration;

    let mut config = shared::Config::default();
    config.kafka.bootstrap_servers = "127.0.0.1:1".into();
    let deadline = Duration::from_secs(1);
    let producer = shared::kafka::producer(&config.kafka, deadline).expect("a producer");
    let api = OrdersApi {
        publisher: crate::publisher::Publisher::new(producer, "Pedidos", "Notificacoes", deadline),
        book: Arc::new(RwLock::new(crate::orders::OrderBook::new(1))),
    };
    documents(&service(api))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the document to `$OPENAPI_OUT` and the page beside it (`.html`) when set
    /// (`OPENAPI_OUT=/tmp/openapi.json cargo test -p api --lib swagger_page`), to diff what
    /// clients see across a change.
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
