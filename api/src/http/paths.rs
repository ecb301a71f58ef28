//! The API's paths, said once. The OpenAPI operations' paths come from the document itself;
//! the paths served beside them, all public, are [`PUBLIC`]. From the two: the templates the
//! metrics label requests with (never an order id), and which requests skip the token check.

use serde_json::Value;

/// Paths anyone may call, under every mode: liveness, readiness and metrics (probes and
/// Prometheus carry no customer token), and the documentation, HTTP and Kafka (Swagger UI must load before its
/// *Authorize* button can be used). All but `/health` are served beside the OpenAPI operations.
pub(crate) const PUBLIC: [&str; 6] = [
    "/health",
    "/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/asyncapi.json",
];

/// The label of a request whose path matches no template.
const OTHER: &str = "other";

/// The path of `POST /pedidos`, whose refusals are counted by reason.
const ORDERS: &str = "/pedidos";

pub(crate) fn is_public(path: &str) -> bool {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    PUBLIC.contains(&path)
}

/// Every path the application serves, as templates (`/pedidos/{id}`), plus `other`.
pub(crate) struct RouteTemplates {
    templates: Vec<String>,
}

impl RouteTemplates {
    /// The document's paths, then the public ones it does not list.
    pub(crate) fn new(spec: &Value) -> Self {
        let mut templates: Vec<String> = spec["paths"]
            .as_object()
            .map(|paths| paths.keys().cloned().collect())
            .unwrap_or_default();
        for path in PUBLIC {
            if !templates.iter().any(|t| t == path) {
                templates.push(path.to_string());
            }
        }
        templates.push(OTHER.to_string());
        Self { templates }
    }

    pub(crate) fn len(&self) -> usize {
        self.templates.len()
    }

    /// The index of the template `path` matches (a `{param}` segment matches any one
    /// non-empty segment), or of `other`.
    pub(crate) fn index(&self, path: &str) -> usize {
        let path = path.trim_end_matches('/');
        let last = self.templates.len() - 1;
        self.templates[..last]
            .iter()
            .position(|template| matches(template, path))
            .unwrap_or(last)
    }

    pub(crate) fn label(&self, index: usize) -> &str {
        &self.templates[index]
    }

    pub(crate) fn is_orders(&self, index: usize) -> bool {
        self.templates[index] == ORDERS
    }
}

fn matches(template: &str, path: &str) -> bool {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::docs::test_document;

    #[test]
    fn only_health_readiness_metrics_and_the_documentation_are_public() {
        for path in [
            "/health",
            "/health/",
            "/ready",
            "/metrics",
            "/docs",
            "/openapi.json",
            "/asyncapi.json",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/",
            "/pedidos",
            "/pedidos/x",
            "/healthz",
            "/docs/x",
            "/nowhere",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn labels_are_the_served_templates_and_never_hold_an_id() {
        let (spec, _) = test_document();
        let routes = RouteTemplates::new(&spec);
        let label = |path: &str| routes.label(routes.index(path));
        let mut labels: Vec<&str> = (0..routes.len()).map(|i| routes.label(i)).collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                "/asyncapi.json",
                "/docs",
                "/health",
                "/metrics",
                "/openapi.json",
                "/pedidos",
                "/pedidos/{id}",
                "/pedidos/{id}/eventos",
                "/ready",
                "other"
            ]
        );
        assert_eq!(label("/pedidos/4b3c0e52-7f2e"), "/pedidos/{id}");
        assert_eq!(label("/pedidos/"), "/pedidos");
        assert_eq!(label("/pedidos/x/y"), "other");
        assert_eq!(label("/pedidos//eventos"), "other");
        assert_eq!(label("/pedidos/4b3c/eventos"), "/pedidos/{id}/eventos");
        assert_eq!(label("/wp-admin.php"), "other");
        assert!(routes.is_orders(routes.index("/pedidos")));
        assert!(!routes.is_orders(routes.index("/pedidos/1")));
    }
}
