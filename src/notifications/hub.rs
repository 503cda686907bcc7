//! This instance's registry of open event streams, by user: wakes them, closes the oldest when a
//! user opens too many, and (SQLite) remembers the highest id raised so the tailer knows what to
//! wait for. Holds no notification data: streams read that from the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Hub {
    streams: Mutex<HashMap<String, Vec<Slot>>>,
    next_slot: AtomicU64,
    /// SQLite: the highest notification id raised in this process (committed or not yet).
    raised: AtomicI64,
    /// SQLite: tells the tailer that something was raised.
    pub(crate) nudge: Notify,
    /// A few connections of its own for the streams and the tailer, so deliveries do not queue
    /// behind the request traffic for the main pool (set once the fan-out has started).
    pub(crate) reads: std::sync::OnceLock<sqlx::AnyPool>,
}

struct Slot {
    id: u64,
    wake: Arc<Notify>,
    close: CancellationToken,
}

/// One open stream's place in the hub; leaving it (drop) unregisters the stream.
pub struct Registration {
    hub: Arc<crate::app::App>,
    user_id: String,
    id: u64,
    pub wake: Arc<Notify>,
    /// Cancelled when this stream must end (the user opened one too many).
    pub close: CancellationToken,
}

impl Hub {
    /// Registers a stream for `user_id`, closing the user's oldest streams beyond `max`.
    pub fn register(app: &Arc<crate::app::App>, user_id: &str, max: usize) -> Registration {
        let hub = &app.notifications;
        let id = hub.next_slot.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let close = CancellationToken::new();
        let mut streams = hub.streams.lock().expect("hub lock");
        let list = streams.entry(user_id.to_string()).or_default();
        // Slots are appended, so the front is the oldest.
        while !list.is_empty() && list.len() >= max.max(1) {
            let old = list.remove(0);
            old.close.cancel();
        }
        list.push(Slot {
            id,
            wake: wake.clone(),
            close: close.clone(),
        });
        drop(streams);
        Registration {
            hub: app.clone(),
            user_id: user_id.to_string(),
            id,
            wake,
            close,
        }
    }

    /// Tells every stream of `user_id` on this instance to read what is new.
    pub fn wake(&self, user_id: &str) {
        let streams = self.streams.lock().expect("hub lock");
        if let Some(list) = streams.get(user_id) {
            for s in list {
                // A stored permit: a stream busy elsewhere reads as soon as it comes back.
                s.wake.notify_one();
            }
        }
    }

    /// Wakes every stream on this instance (after the fan-out may have missed something).
    pub fn wake_all(&self) {
        let streams = self.streams.lock().expect("hub lock");
        for s in streams.values().flatten() {
            s.wake.notify_one();
        }
    }

    /// Open streams on this instance (for the benchmark and metrics).
    pub fn open_streams(&self) -> usize {
        self.streams
            .lock()
            .expect("hub lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// The pool deliveries read from.
    pub(crate) fn pool<'a>(&'a self, main: &'a sqlx::AnyPool) -> &'a sqlx::AnyPool {
        self.reads.get().unwrap_or(main)
    }

    pub(crate) fn raised(&self, id: i64) {
        self.raised.fetch_max(id, Ordering::SeqCst);
        self.nudge.notify_one();
    }

    pub(crate) fn highest_raised(&self) -> i64 {
        self.raised.load(Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut streams = self.hub.notifications.streams.lock().expect("hub lock");
        if let Some(list) = streams.get_mut(&self.user_id) {
            list.retain(|s| s.id != self.id);
            if list.is_empty() {
                streams.remove(&self.user_id);
            }
        }
    }
}
