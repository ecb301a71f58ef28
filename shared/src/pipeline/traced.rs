//! Each record handled inside a span of the trace it carries, shared by both loops: the
//! handler's log lines name the trace (`trace_id`), and every record produced for it (outputs
//! and dead letters alike) carries the trace on, as a child of this span. A record without
//! trace context (an old one, loadgen's raw mode) starts a new trace.

use super::dead_letter::DeadLetters;
use super::handler::{Handled, Handler, InRecord, Poison};
use crate::telemetry::trace_context;

/// [`DeadLetters::handle`] inside the record's span. Public for cost measurements
/// (`fraud/examples/trace_cost.rs`); daemons get it through the loops.
pub fn handle<H: Handler>(
    dead_letters: &mut DeadLetters,
    handler: &mut H,
    record: &InRecord<'_>,
) -> Handled {
    handle_or_refuse(dead_letters, handler, record, None)
}

/// [`handle`], or, for a record already `refused` (by the Schema Registry check), its
/// dead-letter copy without asking the handler.
pub(super) fn handle_or_refuse<H: Handler>(
    dead_letters: &mut DeadLetters,
    handler: &mut H,
    record: &InRecord<'_>,
    refused: Option<Poison>,
) -> Handled {
    let span = tracing::info_span!(
        "record",
        trace_id = tracing::field::Empty,
        topic = record.topic,
        partition = record.partition,
        offset = record.offset,
    );
    let trace = trace_context::continue_trace(&span, record.headers());
    let mut handled = span.in_scope(|| match refused {
        None => dead_letters.handle(handler, record),
        Some(poison) => dead_letters.refuse(record, poison),
    });
    for out in &mut handled.records {
        trace.apply(&mut out.headers);
    }
    handled
}
