//! The sweep of expired sessions: batches run until one comes back short,
//! and the background task that sweeps every `cleanup_interval` from
//! liftoff to shutdown.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::users::SessionAdmin;
use crate::Error;

/// What one sweep of expired sessions did
/// ([`SessionAdmin::sweep`](crate::SessionAdmin::sweep)).
///
/// For a scheduler of your own, with `cleanup_interval = 0`:
///
/// ```rust
/// use rocket_tessera::{Error, SessionAdmin};
///
/// async fn nightly(admin: &SessionAdmin) -> Result<(), Error> {
///     let sweep = admin.sweep().await?;
///     if sweep.skipped {
///         println!("another instance is sweeping");
///     } else {
///         println!("{} rows deleted in {} batches", sweep.deleted, sweep.batches);
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sweep {
    /// Rows deleted: expired sessions, and per-user revocation records
    /// older than any session can live (400 days).
    pub deleted: u64,
    /// Batches that ran, each in a transaction of its own.
    pub batches: u32,
    /// Another app instance held the sweep lock, so this sweep stopped
    /// there and left the rest to it.
    pub skipped: bool,
}

/// Runs batches until one deletes fewer rows than the batch size, another
/// instance holds the lock, or `stop` says so.
pub(crate) async fn sweep(admin: &SessionAdmin, stop: impl Fn() -> bool) -> Result<Sweep, Error> {
    let mut sweep = Sweep::default();
    loop {
        match admin.sweep_batch().await? {
            None => {
                sweep.skipped = true;
                return Ok(sweep);
            }
            Some(deleted) => {
                sweep.batches += 1;
                sweep.deleted += deleted;
                if deleted < admin.batch() || stop() {
                    return Ok(sweep);
                }
            }
        }
    }
}

/// The running background task.
pub(crate) struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Starts sweeping now and every `every` after that.
pub(crate) fn start(admin: SessionAdmin, every: Duration) -> Task {
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        loop {
            let result = sweep(&admin, || *stopped.borrow()).await;
            match result {
                Ok(s) if s.deleted > 0 => log::debug!(
                    "sessions: swept {} expired rows in {} batches",
                    s.deleted,
                    s.batches
                ),
                Ok(s) if s.skipped => {
                    log::debug!("sessions: another instance is sweeping; skipped")
                }
                Ok(_) => {}
                Err(Error::Unsupported) => {
                    log::info!("sessions: the store does not sweep; the cleanup task ends");
                    return;
                }
                Err(e) => log::warn!("sessions: sweeping expired sessions failed: {e}"),
            }

            // Either the pause ends, or shutdown (or a dropped sender)
            // wakes the task to end it.
            if *stopped.borrow() || tokio::time::timeout(every, stopped.changed()).await.is_ok() {
                return;
            }
        }
    });
    Task { stop, handle }
}

impl Task {
    /// Asks the task to end and waits for it: a batch in flight finishes
    /// first, so `bound` should exceed the operation timeout.
    pub(crate) async fn stop(self, bound: Duration) {
        let _ = self.stop.send(true);
        let abort = self.handle.abort_handle();
        if tokio::time::timeout(bound, self.handle).await.is_err() {
            log::warn!("sessions: the cleanup task did not end in time; aborting it");
            abort.abort();
        }
    }
}
