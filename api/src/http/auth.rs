//! The authentication gate: every request but the public paths gets its [`Caller`] here, before
//! its body is read or any handler runs; a refused one is answered 401 by `error::json_error`.

use std::sync::Arc;

use poem::http::header;
use poem::{Endpoint, IntoResponse, Request, Response};

use super::paths::is_public;
use crate::auth::{Auth, Caller, Rejection};

/// A refused request, carried as a `poem::Error` to the JSON error mapping.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unauthorized(pub Rejection);

impl poem::error::ResponseError for Unauthorized {
    fn status(&self) -> poem::http::StatusCode {
        poem::http::StatusCode::UNAUTHORIZED
    }
}

/// Puts the request's [`Caller`] in its extensions (the handlers take it as `Data<&Caller>`), or
/// refuses it.
pub(crate) async fn authenticate<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    auth: Arc<Auth>,
) -> poem::Result<Response> {
    let caller = if is_public(req.uri().path()) {
        Caller::Anyone
    } else {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        auth.caller(authorization).map_err(Unauthorized)?
    };
    req.extensions_mut().insert(caller);
    ep.call(req).await.map(IntoResponse::into_response)
}
