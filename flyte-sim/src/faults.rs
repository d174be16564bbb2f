//! Fault injection: make chosen RPCs slow, fail with a Connect code, or answer like a broken
//! proxy, at a rate or for the next N calls. Set from the command line or at run time through
//! `PUT /_sim/faults`, so tests can break Flyte and mend it without restarting anything.

use std::time::Duration;

use anyhow::{Context, bail};
use flyte_client::Code;
use serde::{Deserialize, Serialize};

/// One fault rule. `rpc` is `Service/Method` (`RunService/CreateRun`) or `*` for all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub rpc: String,
    /// The Connect code to answer with (`unavailable`); absent for latency only.
    #[serde(default)]
    pub code: Option<String>,
    /// Answer a non-Connect body with this HTTP status instead (a proxy's `502`).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Share of matching calls that fail, 0 to 1.
    #[serde(default = "always")]
    pub rate: f64,
    /// Fail only this many more calls, then stop (counts down).
    #[serde(default)]
    pub count: Option<u32>,
    /// Added before handling the call, failing or not.
    #[serde(default)]
    pub latency_ms: u64,
    /// Added after handling the call, before answering: the work is done but the caller does
    /// not know yet (to catch a client that crashes between a call's effect and its answer).
    #[serde(default)]
    pub latency_after_ms: u64,
    /// Sent as `Retry-After` with a failure.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

fn always() -> f64 {
    1.0
}

/// What to do with one call.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) delay: Duration,
    pub(crate) delay_after: Duration,
    pub(crate) failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    Connect {
        code: Code,
        retry_after_secs: Option<u64>,
    },
    Http(u16),
}

impl Fault {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.rate) {
            bail!("rate must be between 0 and 1, not {}", self.rate);
        }
        if let Some(code) = &self.code {
            Code::parse(code).with_context(|| format!("{code:?} is not a Connect code"))?;
        }
        if self.code.is_some() && self.http_status.is_some() {
            bail!("a fault has a code or an http_status, not both");
        }
        Ok(())
    }

    /// `RPC:CODE[:RATE]`, e.g. `RunService/CreateRun:unavailable:0.3` or `*:internal`.
    pub fn parse_error_rule(text: &str) -> anyhow::Result<Fault> {
        let mut parts = text.split(':');
        let (Some(rpc), Some(code)) = (parts.next(), parts.next()) else {
            bail!("{text:?}: expected RPC:CODE[:RATE]");
        };
        let rate = match parts.next() {
            Some(r) => r.parse().with_context(|| format!("{text:?}: bad rate"))?,
            None => 1.0,
        };
        let fault = Fault {
            rpc: rpc.into(),
            code: Some(code.into()),
            http_status: None,
            rate,
            count: None,
            latency_ms: 0,
            latency_after_ms: 0,
            retry_after_secs: None,
        };
        fault.validate().with_context(|| text.to_string())?;
        Ok(fault)
    }

    /// `RPC:DURATION`, e.g. `RunService/CreateRun:200ms`.
    pub fn parse_latency_rule(text: &str) -> anyhow::Result<Fault> {
        let Some((rpc, latency)) = text.rsplit_once(':') else {
            bail!("{text:?}: expected RPC:DURATION");
        };
        let latency = crate::catalogue::parse_duration(latency)?;
        Ok(Fault {
            rpc: rpc.into(),
            code: None,
            http_status: None,
            rate: 1.0,
            count: None,
            latency_ms: latency.as_millis() as u64,
            latency_after_ms: 0,
            retry_after_secs: None,
        })
    }

    fn matches(&self, rpc_name: &str) -> bool {
        self.rpc == "*" || self.rpc == rpc_name
    }
}

/// Decides the fate of a call to `rpc_name` and counts down `count` rules it fires.
pub(crate) fn judge(faults: &mut [Fault], rpc_name: &str) -> Verdict {
    let mut verdict = Verdict::default();
    for fault in faults.iter_mut().filter(|f| f.matches(rpc_name)) {
        verdict.delay += Duration::from_millis(fault.latency_ms);
        verdict.delay_after += Duration::from_millis(fault.latency_after_ms);
        if verdict.failure.is_some() || (fault.code.is_none() && fault.http_status.is_none()) {
            continue;
        }
        let fires = match &mut fault.count {
            Some(0) => false,
            Some(remaining) => {
                *remaining -= 1;
                true
            }
            None => fastrand::f64() < fault.rate,
        };
        if fires {
            verdict.failure = match (&fault.code, fault.http_status) {
                (Some(code), _) => Code::parse(code).map(|code| Failure::Connect {
                    code,
                    retry_after_secs: fault.retry_after_secs,
                }),
                (None, Some(status)) => Some(Failure::Http(status)),
                (None, None) => None,
            };
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_fire_exactly_that_many_times() {
        let mut faults = vec![Fault {
            count: Some(2),
            ..Fault::parse_error_rule("RunService/CreateRun:unavailable").unwrap()
        }];
        let fired = (0..5)
            .filter(|_| judge(&mut faults, "RunService/CreateRun").failure.is_some())
            .count();
        assert_eq!(fired, 2);
        assert!(
            judge(&mut faults, "RunService/GetRunDetails")
                .failure
                .is_none()
        );
    }

    #[test]
    fn latency_adds_up_and_rates_bound_the_share_of_failures() {
        let mut faults = vec![
            Fault::parse_latency_rule("*:20ms").unwrap(),
            Fault::parse_error_rule("*:internal:0").unwrap(),
        ];
        let v = judge(&mut faults, "RunService/CreateRun");
        assert_eq!(v.delay, Duration::from_millis(20));
        assert_eq!(v.failure, None);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(Fault::parse_error_rule("RunService/CreateRun:teapot").is_err());
        assert!(Fault::parse_error_rule("RunService/CreateRun:internal:2").is_err());
        assert!(Fault::parse_error_rule("nocode").is_err());
        assert!(Fault::parse_latency_rule("*:soon").is_err());
    }
}
