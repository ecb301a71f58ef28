//! What wraps every route: the body is read whole, within a size and a time, before any handler
//! runs; and a 405 says which methods its resource does answer.

use std::sync::Arc;
use std::time::Duration;

use poem::error::ReadBodyError;
use poem::http::{header, HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

/// Which methods each documented path answers, for the `Allow` header of a 405.
pub(crate) struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    /// The paths of the OpenAPI document, plus the two documentation routes.
    pub(crate) fn from_spec(spec: &Value) -> Self {
        let mut routes = vec![
            (segments("/docs"), "GET, HEAD".to_string()),
            (segments("/openapi.json"), "GET, HEAD".to_string()),
        ];
        for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
            let mut methods: Vec<String> = operations
                .as_object()
                .into_iter()
                .flatten()
                .map(|(method, _)| method.to_uppercase())
                .collect();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into()); // poem answers HEAD wherever GET is routed
            }
            routes.push((segments(path), methods.join(", ")));
        }
        Self(routes)
    }

    /// The methods of the route matching `path` (a `{parameter}` matches any one segment).
    fn of(&self, path: &str) -> Option<&str> {
        let wanted = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template.iter().zip(&wanted).all(|(t, w)| {
                        (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_string)
        .collect()
}

/// A 405 says which methods the resource does answer (RFC 9110 requires `Allow`).
pub(crate) async fn allow_header<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    allowed: Arc<AllowedMethods>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_string();
    let mut response = ep.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(methods) = allowed.of(&path) {
            if let Ok(value) = HeaderValue::from_str(methods) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
    }
    Ok(response)
}

/// Reads the whole body before any handler runs, within `max` bytes and `timeout`: 413 when
/// it is larger, whether announced by `Content-Length` or streamed chunked (poem's `SizeLimit`
/// only looks at the header, and demands it even on GET); 408 when the client is too slow;
/// 400 when the chunked framing is broken.
pub(crate) async fn read_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max: usize,
    timeout: Duration,
) -> poem::Result<Response> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let body = req.take_body();
    let bytes = match tokio::time::timeout(timeout, body.into_bytes_limit(max)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadBodyError::PayloadTooLarge)) => {
            return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Ok(Err(e)) => {
            return Err(poem::Error::from_string(
                e.to_string(),
                StatusCode::BAD_REQUEST,
            ))
        }
        Err(_) => return Err(poem::Error::from_status(StatusCode::REQUEST_TIMEOUT)),
    };
    req.set_body(bytes);
    ep.call(req).await.map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use poem::endpoint::make;
    use poem::{Body, EndpointExt};
    use serde_json::json;
    use tokio::io::{AsyncRead, ReadBuf};

    use super::*;
    use crate::http::error::json_error;

    const MAX: usize = 16;
    const TIMEOUT: Duration = Duration::from_millis(200);

    /// A handler answering how many body bytes it got, behind `read_body` and the JSON errors.
    async fn send(req: Request) -> (u16, String) {
        let ep = make(|mut req: Request| async move {
            req.take_body()
                .into_bytes()
                .await
                .unwrap()
                .len()
                .to_string()
        })
        .around(|ep, req| read_body(ep, req, MAX, TIMEOUT))
        .catch_all_error(|e| async move { json_error(e) });
        let response = ep.call(req).await.unwrap().into_response();
        let status = response.status().as_u16();
        (status, response.into_body().into_string().await.unwrap())
    }

    fn post(body: Body) -> Request {
        Request::builder()
            .method(poem::http::Method::POST)
            .body(body)
    }

    /// A body whose bytes come from a stream, so without a `Content-Length` (like a chunked one).
    fn streamed(reader: impl AsyncRead + Send + 'static) -> Request {
        post(Body::from_async_read(reader))
    }

    fn error_of(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_handler_whole() {
        assert_eq!(
            send(post(Body::from("x".repeat(MAX)))).await,
            (200, MAX.to_string())
        );
        let reader = io::Cursor::new(vec![b'x'; MAX]);
        assert_eq!(send(streamed(reader)).await, (200, MAX.to_string()));
        assert_eq!(send(Request::default()).await, (200, "0".into()));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413_announced_or_streamed() {
        let announced = post(Body::from("x".repeat(MAX + 1)));
        let (status, text) = send(announced).await;
        assert_eq!(status, 413);
        assert_eq!(error_of(&text)["error"], "payload_too_large");
        // Only the header is read: a huge announced length is refused without its body.
        let mut lying = post(Body::empty());
        lying
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1000000"));
        assert_eq!(send(lying).await.0, 413);
        let (status, text) = send(streamed(io::Cursor::new(vec![b'x'; MAX + 1]))).await;
        assert_eq!(status, 413);
        assert_eq!(error_of(&text)["field"], "body");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_a_408() {
        let (_writer, reader) = tokio::io::duplex(64); // the writer never writes
        let started = std::time::Instant::now();
        let (status, text) = send(streamed(reader)).await;
        assert_eq!(status, 408);
        assert!(started.elapsed() >= TIMEOUT);
        assert_eq!(
            error_of(&text),
            json!({
                "error": "request_timeout",
                "message": "the request body did not arrive in time",
                "field": "body",
                "rule": "must arrive within the body timeout",
            })
        );
    }

    /// What a broken chunked framing looks like from here: the body stream fails.
    struct Broken;

    impl AsyncRead for Broken {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context,
            _: &mut ReadBuf,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid chunk size",
            )))
        }
    }

    #[tokio::test]
    async fn a_body_stream_that_fails_is_a_400_naming_the_body() {
        let (status, text) = send(streamed(Broken)).await;
        assert_eq!(status, 400);
        let error = error_of(&text);
        assert_eq!(error["error"], "malformed_body", "{error}");
        assert_eq!(error["field"], "body", "{error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("invalid chunk size"),
            "{error}"
        );
    }

    #[test]
    fn allow_lists_the_documented_methods_of_the_matching_path() {
        let spec = json!({"paths": {
            "/pedidos": {"get": {}, "post": {}},
            "/pedidos/{id}": {"get": {}},
            "/health": {"get": {}},
        }});
        let allowed = AllowedMethods::from_spec(&spec);
        assert_eq!(allowed.of("/pedidos"), Some("GET, POST, HEAD"));
        assert_eq!(allowed.of("/pedidos/"), Some("GET, POST, HEAD"));
        assert_eq!(allowed.of("/pedidos/0e3bb516"), Some("GET, HEAD"));
        assert_eq!(allowed.of("/docs"), Some("GET, HEAD"));
        assert_eq!(allowed.of("/openapi.json"), Some("GET, HEAD"));
        assert_eq!(allowed.of("/pedidos/a/b"), None);
        assert_eq!(allowed.of("/nowhere"), None);
    }
}
