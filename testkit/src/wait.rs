//! Waiting until something holds: one polling loop, failing with what was awaited (and what
//! was seen last) once its time is up.

use std::future::Future;
use std::time::Duration;

/// What a probe found: `Some`/`Ok` ends the wait; `None`, or `Err` with what was seen instead.
pub trait Found<T> {
    fn found(self) -> Result<T, String>;
}

impl<T> Found<T> for Option<T> {
    fn found(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Found<T> for Result<T, String> {
    fn found(self) -> Result<T, String> {
        self
    }
}

/// Calls `probe` every `every` until it finds something; after `within`, fails naming `what`
/// (and what the probe saw last, if it said).
pub async fn wait_until<T, P, F>(
    within: Duration,
    every: Duration,
    what: &str,
    mut probe: impl FnMut() -> F,
) -> anyhow::Result<T>
where
    P: Found<T>,
    F: Future<Output = P>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = match probe().await.found() {
            Ok(found) => return Ok(found),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            let last = if seen.is_empty() {
                String::new()
            } else {
                format!("; last: {seen}")
            };
            anyhow::bail!("{what}: not within {within:?}{last}");
        }
        tokio::time::sleep(every).await;
    }
}

/// [`wait_until`] for tests: every 25 ms, and a panic (the test's failure) after `within`.
pub async fn eventually<T, P: Found<T>, F: Future<Output = P>>(
    within: Duration,
    what: &str,
    probe: impl FnMut() -> F,
) -> T {
    wait_until(within, Duration::from_millis(25), what, probe)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}
