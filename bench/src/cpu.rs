//! Where the two cores went during a measurement: every process's user and system time from
//! `/proc`, before and after, grouped into the parts of a deployment. A row bound by CPU then
//! says by whom, which a throughput figure alone cannot.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;

use crate::scenarios::Figures;

/// `/proc` counts CPU time in ticks of 1/100 s (USER_HZ, fixed for Linux's user interface).
const TICKS_PER_SECOND: f64 = 100.0;

/// Each live process's name and CPU ticks at one moment.
#[derive(Debug)]
pub struct Snapshot {
    at: Instant,
    processes: HashMap<u32, (String, u64)>,
}

impl Snapshot {
    pub fn take() -> anyhow::Result<Snapshot> {
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc").context("reading /proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // A process may end between listing and reading: it is simply not counted.
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                && let Some(process) = parse_stat(&stat)
            {
                processes.insert(pid, process);
            }
        }
        Ok(Snapshot {
            at: Instant::now(),
            processes,
        })
    }

    /// CPU used since `before` by each part, in percent of one core (200 is both cores):
    /// `cpu_ingress` (the process `ingress_pid`), `cpu_workers` (flyhook's other processes),
    /// `cpu_flyte_sim`, `cpu_rabbitmq`, `cpu_postgres`, `cpu_load` (this process, the load
    /// generator) and `cpu_other`. Processes that started or ended in between count only if
    /// present at both ends.
    pub fn shares_since(&self, before: &Snapshot, ingress_pid: u32) -> Figures {
        let seconds = self.at.duration_since(before.at).as_secs_f64();
        let load_pid = std::process::id();
        let mut figures = Figures::new();
        for part in [
            "cpu_ingress",
            "cpu_workers",
            "cpu_flyte_sim",
            "cpu_rabbitmq",
            "cpu_postgres",
            "cpu_load",
            "cpu_other",
        ] {
            figures.insert(part.into(), 0.0);
        }
        for (pid, (name, ticks)) in &self.processes {
            let Some((_, earlier)) = before.processes.get(pid) else {
                continue;
            };
            let part = match name.as_str() {
                _ if *pid == ingress_pid => "cpu_ingress",
                _ if *pid == load_pid => "cpu_load",
                "flyhook" => "cpu_workers",
                "flyte-sim" => "cpu_flyte_sim",
                "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => "cpu_rabbitmq",
                "postgres" => "cpu_postgres",
                _ => "cpu_other",
            };
            let used = ticks.saturating_sub(*earlier) as f64 / TICKS_PER_SECOND;
            *figures.entry(part.into()).or_default() += 100.0 * used / seconds;
        }
        figures
    }
}

/// The name and user + system ticks from a `/proc/<pid>/stat` line. The name sits between the
/// first `(` and the last `)`, and may itself hold spaces or parentheses.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_name_and_both_times() {
        let line =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 200 0 0 0 37 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("tokio (rt) x".into(), 42)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
