//! The load generator. It sends at a fixed arrival rate (open loop) or as fast as answers come
//! back (closed loop, "saturated"), over a fixed number of connections, and keeps latency in
//! HDR histograms.
//!
//! At a fixed rate every request has a due time (`start + index / rate`) and its latency is
//! counted from that due time, not from when a free connection got round to sending it: a
//! server that stalls cannot hide the queue it built (coordinated omission, as wrk2 and oha
//! correct it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What to send. `index` counts requests from 0 within one load.
pub trait Workload: Send + Sync + 'static {
    fn request(&self, client: &reqwest::Client, index: u64) -> reqwest::RequestBuilder;

    /// Sees every answer with the wall-clock time its request was due; most workloads ignore
    /// answers.
    fn observe(&self, _due: SystemTime, _status: u16, _body: &[u8]) {}
}

/// How much to send.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests per second; `None`: each connection sends its next request as soon as the last
    /// was answered.
    pub rate: Option<f64>,
    pub connections: usize,
    pub duration: Duration,
}

/// Latencies in microseconds, 1 µs to 2 minutes, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// What one load saw.
#[derive(Debug)]
pub struct Report {
    pub elapsed: Duration,
    /// Answers by HTTP status, plus `timeout` and `io` for requests that got none.
    pub by_status: BTreeMap<String, u64>,
    /// Latency of 2xx answers.
    pub ok: Histogram<u64>,
    /// Latency of every other answer.
    pub refused: Histogram<u64>,
}

impl Report {
    pub fn ok_count(&self) -> u64 {
        self.ok.len()
    }

    pub fn ok_per_second(&self) -> f64 {
        self.ok.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    /// The `quantile` (0.5, 0.99, …) of 2xx latency, in milliseconds.
    pub fn ok_ms(&self, quantile: f64) -> f64 {
        self.ok.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn refused_ms(&self, quantile: f64) -> f64 {
        self.refused.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// One line for people: rate, percentiles and statuses.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        format!(
            "{:.0} ok/s over {:.1} s; ok latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}; answers {}",
            self.ok_per_second(),
            self.elapsed.as_secs_f64(),
            self.ok_ms(0.5),
            self.ok_ms(0.9),
            self.ok_ms(0.99),
            self.ok_ms(0.999),
            self.ok.max() as f64 / 1000.0,
            statuses.join(", ")
        )
    }
}

/// One connection's share, merged at the end (no locks on the hot path).
struct Tally {
    by_status: BTreeMap<String, u64>,
    ok: Histogram<u64>,
    refused: Histogram<u64>,
}

pub async fn run(load: Load, workload: Arc<dyn Workload>) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(load.connections)
        .timeout(Duration::from_secs(120))
        .build()
        .context("HTTP client")?;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let wall_start = SystemTime::now() + Duration::from_millis(20);
    let end = start + load.duration;
    let mut connections = JoinSet::new();
    for _ in 0..load.connections.max(1) {
        let (client, next, workload) = (client.clone(), next.clone(), workload.clone());
        connections.spawn(async move {
            let mut tally = Tally {
                by_status: BTreeMap::new(),
                ok: histogram(),
                refused: histogram(),
            };
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let due = match load.rate {
                    Some(rate) => start + Duration::from_secs_f64(index as f64 / rate),
                    None => Instant::now().max(start),
                };
                if due >= end {
                    return tally;
                }
                tokio::time::sleep_until(due).await;
                let answer = match workload.request(&client, index).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(body) => {
                                workload.observe(wall_start + (due - start), status, &body);
                                Ok(status)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                let latency = (due.elapsed().as_micros() as u64).max(1);
                let (key, histogram) = match answer {
                    Ok(status) if (200..300).contains(&status) => {
                        (status.to_string(), &mut tally.ok)
                    }
                    Ok(status) => (status.to_string(), &mut tally.refused),
                    Err(e) if e.is_timeout() => ("timeout".to_string(), &mut tally.refused),
                    Err(_) => ("io".to_string(), &mut tally.refused),
                };
                histogram.saturating_record(latency);
                *tally.by_status.entry(key).or_default() += 1;
            }
        });
    }
    let mut report = Report {
        elapsed: Duration::ZERO,
        by_status: BTreeMap::new(),
        ok: histogram(),
        refused: histogram(),
    };
    while let Some(tally) = connections.join_next().await {
        let tally = tally.context("a load connection panicked")?;
        for (status, n) in tally.by_status {
            *report.by_status.entry(status).or_default() += n;
        }
        report.ok.add(&tally.ok).context("merging histograms")?;
        report
            .refused
            .add(&tally.refused)
            .context("merging histograms")?;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    //! A seconds-long smoke of the generator against a real HTTP server (the stand-in), so the
    //! harness cannot rot. Nothing here is timed: only counts are checked.

    use super::*;
    use flyte_sim::{SimConfig, Simulator};

    struct Stats(String);

    impl Workload for Stats {
        fn request(&self, client: &reqwest::Client, _index: u64) -> reqwest::RequestBuilder {
            client.get(&self.0)
        }
    }

    async fn stand_in() -> Arc<dyn Workload> {
        let sim = Simulator::build(SimConfig {
            listen: "127.0.0.1:0".into(),
            workers: 1,
            ..SimConfig::default()
        })
        .expect("flyte-sim starts");
        let url = format!("http://127.0.0.1:{}/_sim/stats", sim.port());
        tokio::spawn(sim.run_until_stopped());
        Arc::new(Stats(url))
    }

    #[tokio::test]
    async fn a_fixed_rate_sends_exactly_the_requests_due_in_the_window() {
        let load = Load {
            rate: Some(200.0),
            connections: 4,
            duration: Duration::from_secs(1),
        };
        let report = run(load, stand_in().await).await.unwrap();
        assert_eq!(report.by_status, BTreeMap::from([("200".to_string(), 200)]));
        assert_eq!(report.ok_count(), 200);
        assert!(report.ok_ms(0.5) <= report.ok_ms(0.99));
        assert!(report.summary().contains("200×200"), "{}", report.summary());
    }

    #[tokio::test]
    async fn closed_loop_counts_every_answer_and_a_dead_server_as_io_errors() {
        let load = Load {
            rate: None,
            connections: 2,
            duration: Duration::from_millis(300),
        };
        let report = run(load, stand_in().await).await.unwrap();
        assert!(report.ok_count() > 0);
        assert_eq!(report.ok_count(), report.count("200"));

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let nobody: Arc<dyn Workload> = Arc::new(Stats(format!("http://{closed}/")));
        let report = run(load, nobody).await.unwrap();
        assert_eq!(report.ok_count(), 0);
        assert!(report.count("io") > 0, "{:?}", report.by_status);
    }
}
