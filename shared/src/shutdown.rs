//! Graceful shutdown: Ctrl-C or SIGTERM cancels a token; daemons stop intake, finish in-flight
//! work, flush and commit, then return. A second signal ends the process at once.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first Ctrl-C or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // Cancel before logging: shutting down must not depend on the log being writable.
        cancel.cancel();
        tracing::info!("shutdown requested: finishing in-flight work (again to quit at once)");
        wait_for_signal().await;
        tracing::warn!("second signal: quitting without finishing in-flight work");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("cannot install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
