//! A minimal OTLP/HTTP trace receiver for the trace tests: `POST /v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf, decoded with the OpenTelemetry project's own
//! message types and kept for the test to inspect. (No OpenTelemetry Collector or Jaeger
//! installs from the registries the CI machines reach without a long Go build.)

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use poem::http::StatusCode;
use poem::{handler, post, web::Data, Body, EndpointExt, Response, Route, Server};
use prost::Message;

/// One span as received: who sent it and where it sits in its trace (ids in lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a trace's root.
    pub parent_span_id: String,
}

type Store = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver, listening on 127.0.0.1 until dropped.
pub struct Receiver {
    /// The base URL to give as `telemetry.otlp_endpoint`.
    pub endpoint: String,
    spans: Store,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let port = testkit::free_port();
        let spans = Store::default();
        let app = Route::new()
            .at("/v1/traces", post(export))
            .data(Arc::clone(&spans));
        let listener = poem::listener::TcpListener::bind(format!("127.0.0.1:{port}"));
        let server = tokio::spawn(async move {
            if let Err(e) = Server::new(listener).run(app).await {
                panic!("the OTLP receiver stopped: {e}");
            }
        });
        let endpoint = format!("http://127.0.0.1:{port}");
        // Listening once a connection is taken (the task starts asynchronously).
        crate::eventually("the OTLP receiver to listen", crate::mesh::WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .await;
        Receiver {
            endpoint,
            spans,
            server,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[handler]
async fn export(body: Body, store: Data<&Store>) -> Response {
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("unreadable body: {e}")),
    };
    let request = match ExportTraceServiceRequest::decode(bytes) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not OTLP protobuf: {e}")),
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let attributes = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let service = string_attribute(&attributes, "service.name").unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    store.lock().unwrap().extend(received);
    Response::builder()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn error(status: StatusCode, message: String) -> Response {
    Response::builder().status(status).body(message)
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
