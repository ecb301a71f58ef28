//! What a daemon's handler sees and answers: no Kafka client types.

use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use tokio::sync::oneshot;

use crate::events::OutRecord;

/// A consumed record, as the handler sees it: no Kafka client types.
#[derive(Clone, Copy)]
pub struct InRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// Milliseconds since the epoch, as stamped by the producer or broker.
    pub timestamp_ms: Option<i64>,
    headers: Option<&'a rdkafka::message::BorrowedHeaders>,
}

impl<'a> InRecord<'a> {
    /// A record built by hand (tests, or a handler reused outside Kafka).
    pub fn new(topic: &'a str, payload: Option<&'a [u8]>) -> Self {
        Self {
            topic,
            partition: 0,
            offset: 0,
            key: None,
            payload,
            timestamp_ms: None,
            headers: None,
        }
    }

    /// The same record with `headers` (built with `rdkafka::message::OwnedHeaders`).
    pub fn with_headers(self, headers: &'a rdkafka::message::BorrowedHeaders) -> Self {
        Self {
            headers: Some(headers),
            ..self
        }
    }

    pub(crate) fn from_message(m: &'a BorrowedMessage<'a>) -> Self {
        Self {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m.headers(),
        }
    }

    /// The headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        self.headers
            .into_iter()
            .flat_map(|h| h.iter().map(|h| (h.key, h.value)))
    }
}

/// What a handler wants done for one record before its offset may be stored.
#[derive(Debug, Default)]
pub struct Handled {
    /// Records to produce.
    pub records: Vec<OutRecord>,
    /// Extra work to wait for (e.g. an audit line reaching the file).
    pub ack: Option<oneshot::Receiver<()>>,
}

impl Handled {
    pub fn publish(records: Vec<OutRecord>) -> Self {
        Self { records, ack: None }
    }
    pub fn nothing() -> Self {
        Self::default()
    }
}

/// A record the handler cannot process: it goes to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Poison {
    pub reason: String,
}

impl Poison {
    pub fn new(reason: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

/// A daemon's logic for one record. Synchronous and cheap: the loop does all the waiting. A
/// handler may keep state (a dedup window, an audit writer); what it decides for a record must
/// not depend on anything but that record and the records before it, so a replay gets the same
/// answer.
pub trait Handler: Send + 'static {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison>;

    /// For a handler whose answers depend on the earlier records of a partition (a window):
    /// how far back before a record's timestamp its memory must reach. The loop then rebuilds
    /// that memory from the log whenever it may be stale (see `pipeline::history`), through
    /// [`Handler::forget`] and [`Handler::remember`]. `None`, the default: no memory to keep.
    fn history_span(&self) -> Option<std::time::Duration> {
        None
    }

    /// Drops what the handler knows of one partition, before it is rebuilt.
    fn forget(&mut self, _topic: &str, _partition: i32) {}

    /// An earlier record of a partition being rebuilt: update the memory exactly as
    /// [`Handler::handle`] would, and produce nothing.
    fn remember(&mut self, _record: &InRecord<'_>) {}
}
