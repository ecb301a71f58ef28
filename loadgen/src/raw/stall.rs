//! Telling a consumer that is slow from one that stopped.

use std::time::Instant;

use shared::kafka::Consumer;

use super::STALL;

/// Receives records until none arrived for `STALL`. Consumer errors are logged and are not
/// progress: a client that keeps failing the same fetch (e.g. a response over
/// `receive.message.max.bytes`, which noida-db sends for a big catch-up read) would otherwise
/// retry forever without a word.
pub struct StallWatch {
    progress: Instant,
    last_error: Option<String>,
}

impl StallWatch {
    pub fn new() -> Self {
        Self {
            progress: Instant::now(),
            last_error: None,
        }
    }

    /// The next record, or the last consumer error seen once `STALL` passed without one.
    pub async fn next(&mut self, consumer: &Consumer) -> Result<(), Option<String>> {
        loop {
            let deadline = tokio::time::Instant::from_std(self.progress + STALL);
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(_)) => {
                    self.progress = Instant::now();
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    self.last_error = Some(e.to_string());
                }
                Err(_) => return Err(self.last_error.take()),
            }
        }
    }
}
