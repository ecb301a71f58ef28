//! The one JSON error body every failure answers with, and the mapping of poem's and
//! poem-openapi's own errors (raised before a handler runs) onto it.

use poem::http::{header, HeaderValue, StatusCode};
use poem::{IntoResponse, Response};
use poem_openapi::types::ToJSON;
use poem_openapi::Object;
use shared::validation::FieldError;

use super::auth::Unauthorized;
use crate::auth::Rejection;

/// Every error the API answers has this body.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Machine-readable kind: `validation_failed`, `malformed_json`, `unsupported_media_type`,
    /// `payload_too_large`, `unauthorized`, `forbidden`, `not_found`, `broker_unavailable`, ...
    pub error: String,
    /// A sentence for humans.
    pub message: String,
    /// The offending field, when there is one (`body` for the body as a whole).
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
    /// The rule the field broke.
    #[oai(skip_serializing_if_is_none)]
    pub rule: Option<String>,
}

impl ErrorBody {
    pub(crate) fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
            field: None,
            rule: None,
        }
    }

    pub(crate) fn field(mut self, field: &str, rule: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self.rule = Some(rule.into());
        self
    }

    /// A 422's body: the field and the rule it broke.
    pub(crate) fn from_field_error(e: &FieldError) -> Self {
        Self::new("validation_failed", e.to_string()).field(e.field, e.rule.clone())
    }
}

/// Maps any error poem or poem-openapi raises before a handler runs into a JSON body.
pub(crate) fn json_error(e: poem::Error) -> Response {
    use poem_openapi::error::{
        ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
    };
    if let Some(Unauthorized(rejection)) = e.downcast_ref::<Unauthorized>() {
        return unauthorized(*rejection);
    }
    let status = e.status();
    let body = if let Some(p) = e.downcast_ref::<ParseRequestPayloadError>() {
        ErrorBody::new(
            "malformed_json",
            format!("the body is not valid JSON: {}", p.reason),
        )
        .field("body", "must be a valid JSON document")
    } else if let Some(c) = e.downcast_ref::<ContentTypeError>() {
        ErrorBody::new("unsupported_media_type", c.to_string())
            .field("content-type", "must be application/json")
    } else if let Some(p) = e.downcast_ref::<ParseParamError>() {
        ErrorBody::new("invalid_parameter", p.to_string()).field(p.name, p.reason.clone())
    } else if let Some(p) = e.downcast_ref::<ParsePathError>() {
        ErrorBody::new("invalid_parameter", p.to_string()).field(p.name, p.reason.clone())
    } else if status == StatusCode::REQUEST_TIMEOUT {
        ErrorBody::new("request_timeout", "the request body did not arrive in time")
            .field("body", "must arrive within the body timeout")
    } else if status == StatusCode::BAD_REQUEST {
        ErrorBody::new(
            "malformed_body",
            format!("the request body is malformed: {e}"),
        )
        .field("body", "must be well-formed")
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorBody::new("payload_too_large", "the request body is too large")
            .field("body", "must be at most api.max_body_bytes")
    } else if status == StatusCode::NOT_FOUND {
        ErrorBody::new("not_found", "no such resource")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        ErrorBody::new("method_not_allowed", "method not allowed on this resource")
    } else {
        ErrorBody::new(
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_")
                .as_str(),
            e.to_string(),
        )
    };
    (status, poem::web::Json(body.to_json())).into_response()
}

/// A 401: the JSON body says what to fix; `WWW-Authenticate` says how to authenticate.
fn unauthorized(rejection: Rejection) -> Response {
    let body = ErrorBody::new("unauthorized", rejection.to_string());
    let mut response = (StatusCode::UNAUTHORIZED, poem::web::Json(body.to_json())).into_response();
    let challenge = HeaderValue::from_str(&rejection.challenge())
        .expect("a challenge is built from ASCII sentences");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

#[cfg(test)]
mod tests {
    use poem_openapi::error::{
        ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
    };
    use serde_json::{json, Value};

    use super::*;

    /// What a client receives for `e`: the status, the content type and the parsed body.
    async fn answer(e: impl Into<poem::Error>) -> (u16, String, Value) {
        let response = json_error(e.into());
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = response.into_body().into_string().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, content_type, body)
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_a_400_naming_the_body() {
        let (status, content_type, body) = answer(ParseRequestPayloadError {
            reason: "EOF while parsing an object at line 1 column 19".into(),
        })
        .await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/json; charset=utf-8")
        );
        assert_eq!(
            body,
            json!({
                "error": "malformed_json",
                "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 19",
                "field": "body",
                "rule": "must be a valid JSON document",
            })
        );
    }

    #[tokio::test]
    async fn a_wrong_or_missing_content_type_is_a_415_naming_the_header() {
        for e in [
            ContentTypeError::NotSupported {
                content_type: "text/plain".into(),
            },
            ContentTypeError::ExpectContentType,
        ] {
            let (status, _, body) = answer(e).await;
            assert_eq!(status, 415, "{body}");
            assert_eq!(body["error"], "unsupported_media_type", "{body}");
            assert_eq!(body["field"], "content-type", "{body}");
            assert_eq!(body["rule"], "must be application/json", "{body}");
        }
    }

    #[tokio::test]
    async fn a_bad_query_or_path_parameter_is_a_400_naming_it() {
        let (status, _, body) = answer(ParseParamError {
            name: "limit",
            reason: "verification failed. maximum(200, exclusive: false)".into(),
        })
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_parameter");
        assert_eq!(body["field"], "limit");
        assert_eq!(
            body["rule"],
            "verification failed. maximum(200, exclusive: false)"
        );
        let (status, _, body) = answer(ParsePathError {
            name: "id",
            reason: "not a UUID".into(),
        })
        .await;
        assert_eq!((status, &body["field"]), (400, &json!("id")), "{body}");
    }

    #[tokio::test]
    async fn statuses_raised_by_the_body_reader_say_what_about_the_body_went_wrong() {
        let cases = [
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "must be at most api.max_body_bytes",
            ),
            (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "must arrive within the body timeout",
            ),
        ];
        for (status, error, rule) in cases {
            let (got, _, body) = answer(poem::Error::from_status(status)).await;
            assert_eq!(got, status.as_u16());
            assert_eq!(body["error"], error, "{body}");
            assert_eq!(body["field"], "body", "{body}");
            assert_eq!(body["rule"], rule, "{body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // A broken chunked framing: the reader's own words are kept in the message.
        let framing = poem::Error::from_string("invalid chunk size", StatusCode::BAD_REQUEST);
        let (status, _, body) = answer(framing).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "malformed_body");
        assert_eq!(body["field"], "body");
        assert_eq!(
            body["message"],
            "the request body is malformed: invalid chunk size"
        );
    }

    #[tokio::test]
    async fn routing_errors_have_no_field() {
        let (status, _, body) = answer(poem::Error::from_status(StatusCode::NOT_FOUND)).await;
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"error": "not_found", "message": "no such resource"})
        );
        let (status, _, body) =
            answer(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED)).await;
        assert_eq!(status, 405);
        assert_eq!(body["error"], "method_not_allowed");
        assert!(body.get("field").is_none(), "{body}");
    }

    #[tokio::test]
    async fn any_other_status_is_named_after_its_reason_phrase() {
        let (status, _, body) = answer(poem::Error::from_string(
            "boom",
            StatusCode::SERVICE_UNAVAILABLE,
        ))
        .await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({"error": "service_unavailable", "message": "boom"})
        );
    }

    #[tokio::test]
    async fn a_refused_token_is_a_401_with_a_bearer_challenge() {
        for rejection in [Rejection::Missing, Rejection::Expired, Rejection::Invalid] {
            let response = json_error(Unauthorized(rejection).into());
            assert_eq!(response.status(), 401);
            assert_eq!(
                response.headers()["www-authenticate"],
                rejection.challenge().as_str()
            );
            let text = response.into_body().into_string().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                body,
                json!({"error": "unauthorized", "message": rejection.to_string()})
            );
        }
    }

    #[test]
    fn a_broken_rule_names_the_field_and_the_rule() {
        let body = ErrorBody::from_field_error(&FieldError::new("valor", "must be greater than 0"));
        assert_eq!(
            body.to_json(),
            Some(json!({
                "error": "validation_failed",
                "message": "valor: must be greater than 0",
                "field": "valor",
                "rule": "must be greater than 0",
            }))
        );
    }
}
