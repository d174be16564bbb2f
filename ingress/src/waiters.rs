//! Wakes run-and-wait requests when their dispatch changes, through one PostgreSQL `LISTEN`
//! connection per ingress (a trigger notifies `flyhook_dispatches` with the dispatch id on
//! every status change) instead of a polling loop per request.
//!
//! A waiter is an entry in a map from dispatch id to a `Notify`; it costs a few hundred bytes,
//! and it is removed as soon as the last request waiting on that id ends, including when the
//! client hangs up (actix drops the handler, which drops the guard).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::pg_listen::{Heard, follow};

/// The channel the `dispatch_changed` trigger notifies.
pub const CHANNEL: &str = "flyhook_dispatches";

type WaiterMap = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

#[derive(Debug, Clone, Default)]
pub struct Waiters {
    map: WaiterMap,
}

/// Held by a waiting request; wakes when its dispatch may have changed.
#[derive(Debug)]
pub struct WaitGuard {
    id: String,
    notify: Arc<Notify>,
    map: WaiterMap,
}

fn lock(map: &WaiterMap) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

impl Waiters {
    /// Starts the shared listener, which runs until `shutdown`.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Waiters {
        let waiters = Waiters::default();
        let map = waiters.map.clone();
        tokio::spawn(follow(pool, CHANNEL, None, shutdown, move |heard| {
            wake(
                &map,
                match heard {
                    Heard::Payload(id) => Some(id),
                    // Changes made while nobody listened went unheard: everyone looks again.
                    Heard::Anything => None,
                },
            )
        }));
        waiters
    }

    pub fn watch(&self, id: &str) -> WaitGuard {
        let notify = lock(&self.map).entry(id.to_string()).or_default().clone();
        WaitGuard {
            id: id.to_string(),
            notify,
            map: self.map.clone(),
        }
    }
}

impl WaitGuard {
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        // Ours and the map's are the last two references: nobody else waits on this id.
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.id);
        }
    }
}

fn wake(map: &WaiterMap, id: Option<&str>) {
    let map = lock(map);
    match id {
        Some(id) => map.get(id).iter().for_each(|n| n.notify_waiters()),
        None => map.values().for_each(|n| n.notify_waiters()),
    }
}

#[cfg(test)]
impl Waiters {
    /// How many dispatches are being waited on.
    fn len(&self) -> usize {
        lock(&self.map).len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_is_freed_when_the_last_request_on_its_id_ends() {
        let waiters = Waiters::default();
        let first = waiters.watch("a");
        let second = waiters.watch("a");
        let other = waiters.watch("b");
        assert_eq!(waiters.len(), 2);
        drop(first);
        assert_eq!(waiters.len(), 2, "another request still waits on a");
        drop(second);
        drop(other);
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn a_notification_wakes_every_request_on_that_id_only() {
        let waiters = Waiters::default();
        let a = waiters.watch("a");
        let b = waiters.watch("b");
        let woken_a = a.notify().notified();
        let woken_b = b.notify().notified();
        tokio::pin!(woken_a, woken_b);
        woken_a.as_mut().enable();
        woken_b.as_mut().enable();
        wake(&waiters.map, Some("a"));
        assert!(futures_util::poll!(woken_a.as_mut()).is_ready());
        assert!(futures_util::poll!(woken_b.as_mut()).is_pending());
        wake(&waiters.map, None);
        assert!(futures_util::poll!(woken_b.as_mut()).is_ready());
    }
}
