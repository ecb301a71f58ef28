//! The Pedidos API: `POST /pedidos` places an order; `GET /pedidos/{id}` answers its status.
//!
//! The house, from the door in:
//!
//! - [`http`]: the HTTP surface and nothing else. Handlers (`http/routes.rs`) parse a request,
//!   call the domain below and map its answer or error onto a status; beside them the OpenAPI
//!   document and Swagger UI, the authentication gate, the JSON errors, the HTTP metrics and
//!   the connection guard against slow clients.
//! - [`orders`]: placing an order ([`orders::Orders::place`]): the request's rules,
//!   `Idempotency-Key`, publishing to the broker, recording the order in the view.
//! - [`view`]: the order view ([`view::ViewHandle`]): kept from `Pedidos` and `Notificacoes`
//!   by a reader and one writer, in a store (SQLite or PostgreSQL) that holds the SQL only;
//!   long-polls and event streams wait on it.
//! - [`auth`]: who the caller is (a JWT's subject, or anyone), pure.
//!
//! Imports run downwards only: `http` → `orders` → `view` → `auth`; nothing below imports
//! what is above it. [`Application`] wires them together.
//!
//! Naming: Rust names are English (`OrderRequest`, `OrderView`, `OrdersApi`); what crosses the
//! wire keeps the Portuguese domain words of the original project: JSON fields, topic names,
//! statuses, and the OpenAPI schema names clients see (`Pedido`, `PedidoNovo`). A struct whose
//! fields are JSON fields one to one names them as the JSON does (`usuario`, `valor`), so it
//! reads like its JSON; an English Rust type takes its wire name with `#[oai(rename = "...")]`.

pub mod auth;
pub mod http;
pub mod orders;
pub mod view;

use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use shared::config::{ApiConfig, Config};
use shared::kafka::{self, StartupError};
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, AuthSetupError};
use crate::http::GuardedAcceptor;
pub use crate::http::HttpTimeouts;
use crate::orders::{Orders, Publisher};
use crate::view::{OriginError, Store, StoreError, View, ViewError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "api.auth is \"none\" and api.listen is {addr}, which is not a loopback address: anyone \
         who reaches it could place and read every customer's orders. Set api.auth = \"jwt\" \
         (with api.jwt_secret or api.jwt_public_key_file), or api.allow_anonymous = true to \
         serve anonymously anyway"
    )]
    AnonymousExposed { addr: String },
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Kafka(#[from] StartupError),
    #[error(transparent)]
    SchemaRegistry(#[from] shared::schema_registry::RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Boxed: its messages carry several ids and names.
    #[error(transparent)]
    ViewOrigin(Box<OriginError>),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// The view's start-up fails as the API's own would: the same two kinds.
impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::Kafka(e) => ApiError::Kafka(e),
            ViewError::Store(e) => ApiError::Store(e),
            ViewError::Origin(e) => e.into(),
        }
    }
}

impl From<OriginError> for ApiError {
    fn from(e: OriginError) -> Self {
        ApiError::ViewOrigin(Box::new(e))
    }
}

/// A started API: connected to Kafka, its port bound (port 0 picks a free one), not yet serving.
pub struct Application {
    acceptor: TcpAcceptor,
    address: SocketAddr,
    state: http::State,
    auth: Auth,
    /// The topics' AsyncAPI document, for the names and servers this API is configured with.
    asyncapi: serde_json::Value,
    max_body_bytes: usize,
    timeouts: HttpTimeouts,
    /// How long in-flight requests may take to finish once `run_until` is told to stop.
    shutdown_timeout: Duration,
    view: View,
}

impl Application {
    /// Checks who may call it, opens the store, checks the cluster, creates missing topics,
    /// starts the order view and binds the port.
    pub async fn build(config: &Config) -> Result<Self, ApiError> {
        let auth = authentication(&config.api)?;
        let store = Store::open(&config.api).await?;
        kafka::check_connectivity(&config.kafka).await?;
        kafka::ensure_topics(&config.kafka, &config.topics).await?;
        // Frames what the API publishes when a Schema Registry is configured; the view's
        // reader takes framed records as they are.
        shared::schema_registry::start(config).await?;
        let deadline = config.api.publish_timeout();
        let producer = kafka::producer(&config.kafka, deadline)?;
        let publisher = Publisher::new(
            producer,
            &config.topics.pedidos,
            &config.topics.notificacoes,
            deadline,
        );
        let view = View::start(config, store).await?;
        let state = http::State {
            orders: Orders::new(publisher, view.handle(), &config.api),
            view: view.handle(),
        };
        let acceptor = TcpListener::bind(config.api.listen.clone())
            .into_acceptor()
            .await
            .map_err(|source| ApiError::Bind {
                addr: config.api.listen.clone(),
                source,
            })?;
        let address = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .expect("a TCP listener has a socket address");
        Ok(Self {
            acceptor,
            address,
            state,
            auth,
            asyncapi: shared::asyncapi::document(config),
            max_body_bytes: config.api.max_body_bytes,
            timeouts: HttpTimeouts::from_config(&config.api),
            shutdown_timeout: config.api.shutdown_timeout(),
            view,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How long the server waits on slow or silent clients, instead of the configured
    /// `api.head_timeout_ms`, `api.body_timeout_ms` and `api.write_timeout_ms`.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: HttpTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Serves until `shutdown`, then lets in-flight requests finish (up to
    /// `api.shutdown_timeout_ms`).
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        let url = format!("http://{}", self.address);
        tracing::info!(docs = %format!("{url}/docs"), "pedidos API listening on {url}");
        let app = http::app(
            self.state,
            self.auth,
            &self.asyncapi,
            self.max_body_bytes,
            self.timeouts.body,
        );
        let acceptor = GuardedAcceptor::new(self.acceptor, self.timeouts);
        // A topic that changes identity under the view stops the API as a shutdown does, and
        // is then its error.
        let changed = self.view.changed();
        let view_changed = changed.token();
        let stop = async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = view_changed.cancelled() => {}
            }
        };
        let served = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, stop, Some(self.shutdown_timeout))
            .await;
        self.view.stop().await;
        if let Some(e) = changed.take() {
            return Err(e.into());
        }
        served.map_err(ApiError::Serve)
    }
}

/// The verifier `api.auth` asks for. `none` is refused on an address other than loopback unless
/// `api.allow_anonymous` says so (as Redis's protected mode does), and warned about otherwise.
fn authentication(api: &ApiConfig) -> Result<Auth, ApiError> {
    let auth = Auth::from_config(api)?;
    if !auth.is_required() {
        let loopback = api.listen_addr().is_some_and(|a| a.ip().is_loopback());
        if !loopback && !api.allow_anonymous {
            return Err(ApiError::AnonymousExposed {
                addr: api.listen.clone(),
            });
        }
        tracing::warn!(
            listen = %api.listen,
            "api.auth is \"none\": anyone who reaches the API may place and read any customer's orders"
        );
    }
    Ok(auth)
}

/// Builds and serves until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ApiError> {
    Application::build(&config).await?.run_until(shutdown).await
}
