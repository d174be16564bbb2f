//! One PostgreSQL `LISTEN` connection kept up for as long as the ingress runs. Notifications are
//! lost while the connection is down, so after every (re)connect, and on every `also_every`
//! tick, the follower is told that anything may have changed.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// What the follower heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// A notification with this payload.
    Payload(&'a str),
    /// Something may have changed unheard: look at everything again.
    Anything,
}

/// Listens on `channel` until `shutdown`, calling `on_heard` for each notification.
pub async fn follow(
    pool: PgPool,
    channel: &'static str,
    also_every: Option<Duration>,
    shutdown: CancellationToken,
    mut on_heard: impl FnMut(Heard<'_>),
) {
    let mut backoff = Duration::from_millis(100);
    // Without a period, the tick never fires.
    let period = also_every.unwrap_or(Duration::from_secs(365 * 86_400));
    while !shutdown.is_cancelled() {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(channel, error = %e, "cannot listen yet");
                if also_every.is_some() {
                    on_heard(Heard::Anything);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        on_heard(Heard::Anything);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => on_heard(Heard::Anything),
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => on_heard(Heard::Payload(notification.payload())),
                    // The connection dropped; the next call reconnects.
                    Ok(None) => on_heard(Heard::Anything),
                    Err(e) => {
                        tracing::debug!(channel, error = %e, "listener failed; reconnecting");
                        on_heard(Heard::Anything);
                        break;
                    }
                },
            }
        }
    }
}
