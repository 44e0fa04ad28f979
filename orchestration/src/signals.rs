//! SIGTERM and SIGINT, which every long-running command treats alike: a request to stop.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The stop requests a process receives (SIGTERM or SIGINT), one at a time.
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Starts listening (from now on, these signals no longer end the process by default).
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
