//! Serving an HTTP API from the command line (`registry serve`, `catalog serve`).

use std::io::Write;

use anyhow::Context;

/// Binds `addr` and announces `WHAT listening on URL` on stdout, so that scripts can use port
/// 0 and read the port taken.
pub async fn listen(addr: &str, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what}: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{what} listening on http://{local}")?;
    stdout.flush()?;
    tracing::info!(%local, "{what} serving");
    Ok(listener)
}

/// Serves `router` on `addr` until SIGTERM or SIGINT, announcing `WHAT listening on URL` on
/// stdout (so `--addr 127.0.0.1:0` can be used by scripts); open requests finish first.
pub async fn serve_until_signal(
    addr: &str,
    router: axum::Router,
    what: &str,
) -> anyhow::Result<()> {
    let mut signals = crate::signals::StopSignals::listen()?;
    let listener = listen(addr, what).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            signals.recv().await;
            tracing::info!("signal received: finishing open requests");
        })
        .await?;
    Ok(())
}
