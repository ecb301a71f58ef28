//! W3C trace context (`traceparent`, `tracestate`) in Kafka record headers and HTTP headers,
//! through OpenTelemetry's [`TraceContextPropagator`]: a span continues the trace its input
//! carries (or starts one when the input has none, or a malformed one), and its outputs carry
//! the span's context on. With export off no OpenTelemetry span is built: the outputs get a
//! span id of their own in the same trace, so the context goes on at a fraction of the cost.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header names of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The trace context headers among a record's (or a request's) headers: all the propagator
/// reads, picked in one pass without copying.
#[derive(Debug, Default, Clone, Copy)]
struct Carried<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl<'a> Carried<'a> {
    fn pick(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Self {
        let mut carried = Carried::default();
        for (name, value) in headers {
            // A value that is not text cannot be a trace context: as if absent.
            let text = || value.and_then(|v| std::str::from_utf8(v).ok());
            if name.eq_ignore_ascii_case(TRACEPARENT) {
                carried.traceparent = text().filter(|t| well_formed(t));
            } else if name.eq_ignore_ascii_case(TRACESTATE) {
                carried.tracestate = text();
            }
        }
        carried
    }
}

/// Whether `traceparent` has the W3C shape: `vv-<32 hex>-<16 hex>-<2 hex>`, lowercase, and for
/// a version above 00 possibly more after a further `-`. The propagator checks the values but
/// not the lengths (it would take a 31-digit trace id), so the shape is checked here first.
fn well_formed(traceparent: &str) -> bool {
    let bytes = traceparent.as_bytes();
    let hex = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let shaped = bytes.len() >= 55
        && (bytes[2], bytes[35], bytes[52]) == (b'-', b'-', b'-')
        && hex(0..2)
        && hex(3..35)
        && hex(36..52)
        && hex(53..55);
    shaped
        && match &bytes[..2] {
            b"00" => bytes.len() == 55,
            b"ff" => false,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        }
}

impl Extractor for Carried<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        [
            self.traceparent.map(|_| TRACEPARENT),
            self.tracestate.map(|_| TRACESTATE),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Headers of an outgoing record: a header the propagator sets replaces one of that name (a
/// dead-letter copy keeps its input's headers, whose `traceparent` names the input's span).
struct Outgoing<'a>(&'a mut Vec<(String, Vec<u8>)>);

impl Outgoing<'_> {
    fn set_bytes(&mut self, key: &str, value: &[u8]) {
        // The propagator sets an empty `tracestate` for a span without one: no header then.
        if value.is_empty() {
            self.0.retain(|(k, _)| k != key);
            return;
        }
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => value.clone_into(v),
            None => self.0.push((key.to_string(), value.to_vec())),
        }
    }
}

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.set_bytes(key, value.as_bytes());
    }
}

/// The context carried by `headers` (record or HTTP headers: name, value), or an empty one
/// when they carry none or a malformed one, under which a span starts a new trace.
pub fn extract<'a>(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Context {
    TraceContextPropagator::new().extract(&Carried::pick(headers))
}

/// Writes `cx`'s span as `traceparent` (and `tracestate` when it has one) into `headers`;
/// nothing when `cx` has no valid span.
pub fn inject(cx: &Context, headers: &mut Vec<(String, Vec<u8>)>) {
    TraceContextPropagator::new().inject_context(cx, &mut Outgoing(headers));
}

/// A span's trace context as record headers, formatted once for all of its outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `traceparent` and `tracestate` (empty when the span has none); nothing without a valid
    /// span.
    headers: Vec<(String, Vec<u8>)>,
}

impl TraceHeaders {
    /// The headers of `cx`'s span.
    pub fn of(cx: &Context) -> Self {
        let mut collected = TraceHeaders {
            headers: Vec::with_capacity(2),
        };
        TraceContextPropagator::new().inject_context(cx, &mut collected);
        collected
    }

    /// Writes them into a record's headers, replacing ones of the same name.
    pub fn apply(&self, headers: &mut Vec<(String, Vec<u8>)>) {
        let mut outgoing = Outgoing(headers);
        for (key, value) in &self.headers {
            outgoing.set_bytes(key, value);
        }
    }

    /// The trace id, as `traceparent` spells it (`00-<trace id>-…`).
    pub fn trace_id(&self) -> Option<&str> {
        let (_, traceparent) = self.headers.iter().find(|(k, _)| k == TRACEPARENT)?;
        std::str::from_utf8(traceparent.get(3..35)?).ok()
    }
}

/// As the propagator sets them: an empty `tracestate` included, which [`TraceHeaders::apply`]
/// turns into removing an older one.
impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        self.headers.push((key.to_string(), value.into_bytes()));
    }
}

/// Makes `span` a child of the context `headers` carry (a new trace's root when they carry
/// none), records its `trace_id` field (for the log lines inside it), and returns its context
/// as headers for the outputs. Without an OpenTelemetry layer ([`super::init`] installs one
/// only to export) or for a span it does not trace, the outputs still carry the trace on, as
/// [`child_of`] the input's context.
pub fn continue_trace<'a>(
    span: &tracing::Span,
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> TraceHeaders {
    let parent = extract(headers);
    let headers = match span.set_parent(parent.clone()) {
        Ok(()) => TraceHeaders::of(&span.context()),
        Err(_) => TraceHeaders::of(&child_of(&parent)),
    };
    if let Some(trace_id) = headers.trace_id() {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    headers
}

/// The context of a new span under `parent`'s, as the SDK's default sampler (the parent's
/// decision, else sampled) would start it: the same trace, flags and state with a new span id,
/// or a new sampled trace when `parent` has no valid span.
fn child_of(parent: &Context) -> Context {
    let ids = RandomIdGenerator::default();
    let parent = parent.span();
    let parent = parent.span_context();
    let child = if parent.is_valid() {
        SpanContext::new(
            parent.trace_id(),
            ids.new_span_id(),
            parent.trace_flags(),
            false,
            parent.trace_state().clone(),
        )
    } else {
        SpanContext::new(
            ids.new_trace_id(),
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    };
    Context::new().with_remote_span_context(child)
}

/// The trace id of `cx`'s span (`TraceId::INVALID` for none).
pub fn trace_id(cx: &Context) -> TraceId {
    cx.span().span_context().trace_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::SpanId;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers_of(
        pairs: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, Option<&'static [u8]>)> {
        pairs
            .iter()
            .map(|(k, v)| (*k, Some(v.as_bytes())))
            .collect()
    }

    fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn a_traceparent_survives_extraction_and_injection_unchanged() {
        let cx = extract(headers_of(&[
            ("event-type", "pedido.criado"),
            (TRACEPARENT, PARENT),
            (TRACESTATE, "vendor=abc"),
        ]));
        let span = cx.span().span_context().clone();
        assert!(span.is_remote());
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_sampled());

        let mut out = vec![("event-type".to_string(), b"pedido.avaliado".to_vec())];
        inject(&cx, &mut out);
        assert_eq!(header(&out, TRACEPARENT), Some(PARENT));
        assert_eq!(header(&out, TRACESTATE), Some("vendor=abc"));
        assert_eq!(header(&out, "event-type"), Some("pedido.avaliado"));
    }

    #[test]
    fn injection_writes_the_exact_w3c_format_and_replaces_an_older_traceparent() {
        let child = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let cx = Context::new().with_remote_span_context(child);
        let mut out = vec![(TRACEPARENT.to_string(), PARENT.as_bytes().to_vec())];
        inject(&cx, &mut out);
        assert_eq!(out.len(), 1, "replaced, not added: {out:?}");
        let headers = TraceHeaders::of(&cx);
        assert_eq!(headers.trace_id(), Some("0af7651916cd43dd8448eb211c80319c"));
        let mut applied = vec![
            (TRACEPARENT.to_string(), PARENT.as_bytes().to_vec()),
            (TRACESTATE.to_string(), b"old=1".to_vec()),
        ];
        headers.apply(&mut applied);
        assert_eq!(applied, out, "the same headers, the old tracestate gone");
        assert_eq!(
            header(&out, TRACEPARENT),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(header(&out, TRACESTATE), None, "no empty tracestate");
    }

    #[test]
    fn malformed_or_missing_trace_context_is_no_context() {
        for bad in [
            "",
            "garbage",
            // Wrong lengths, non-hex, all-zero ids, an unknown version ff.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Upper case, a longer version 00, a missing dash.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7001",
        ] {
            let cx = extract(headers_of(&[(TRACEPARENT, bad)]));
            assert_eq!(trace_id(&cx), TraceId::INVALID, "{bad:?} was accepted");
            let mut out = Vec::new();
            inject(&cx, &mut out);
            assert!(out.is_empty(), "{bad:?} produced {out:?}");
        }
        let not_text: Vec<(&str, Option<&[u8]>)> = vec![(TRACEPARENT, Some(&[0xff, 0xfe]))];
        assert_eq!(trace_id(&extract(not_text)), TraceId::INVALID);
        assert_eq!(trace_id(&extract(Vec::new())), TraceId::INVALID);
        assert_eq!(
            trace_id(&extract(vec![(TRACEPARENT, None)])),
            TraceId::INVALID
        );
    }

    #[test]
    fn without_a_span_to_follow_the_outputs_go_on_in_the_input_trace_under_a_new_span_id() {
        let sampled = extract(headers_of(&[
            (TRACEPARENT, PARENT),
            (TRACESTATE, "vendor=abc"),
        ]));
        let child = TraceHeaders::of(&child_of(&sampled));
        let mut out = Vec::new();
        child.apply(&mut out);
        let traceparent = header(&out, TRACEPARENT).unwrap();
        let (head, span_and_flags) = traceparent.split_at(36);
        assert_eq!(head, "00-4bf92f3577b34da6a3ce929d0e0e4736-");
        assert_ne!(&span_and_flags[..16], "00f067aa0ba902b7", "{traceparent}");
        assert_eq!(&span_and_flags[16..], "-01", "{traceparent}");
        assert_eq!(header(&out, TRACESTATE), Some("vendor=abc"));

        let unsampled = extract(headers_of(&[(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]));
        let child = child_of(&unsampled);
        assert!(
            !child.span().span_context().is_sampled(),
            "the parent's decision stands"
        );

        let first = child_of(&Context::new());
        let second = child_of(&Context::new());
        for new in [&first, &second] {
            assert!(new.span().span_context().is_valid());
            assert!(new.span().span_context().is_sampled());
        }
        assert_ne!(
            trace_id(&first),
            trace_id(&second),
            "each a trace of its own"
        );
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let cx = extract(headers_of(&[(
            TRACEPARENT,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever",
        )]));
        assert_eq!(
            trace_id(&cx).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn http_header_names_match_whatever_their_case() {
        let cx = extract(headers_of(&[("Traceparent", PARENT)]));
        assert_eq!(
            trace_id(&cx).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
