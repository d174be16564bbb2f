//! Where the two cores went during a measurement: every process's user and system time from
//! `/proc`, before and after, grouped into the parts of a deployment, and the machine's idle
//! time. A row bound by CPU then says by whom, and a row that is not says so, which a
//! throughput figure alone cannot.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use flyhook_testkit::Stack;

use crate::scenarios::Figures;

/// `/proc` counts CPU time in ticks of 1/100 s (USER_HZ, fixed for Linux's user interface).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Process {
    name: String,
    /// When it started, in ticks since boot: with the pid, what tells a process from a later
    /// one given the same pid.
    started: u64,
    /// User and system time, in ticks.
    used: u64,
}

/// Each live process, and the machine's idle ticks (all cores), at one moment.
#[derive(Debug)]
pub struct Snapshot {
    at: Instant,
    idle: u64,
    processes: HashMap<u32, Process>,
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
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Ok(Snapshot {
            at: Instant::now(),
            idle: idle_ticks(&stat).context("no cpu line in /proc/stat")?,
            processes,
        })
    }

    /// CPU used since `before`, in percent of one core (200 is both cores of this machine):
    /// `cpu_ingress`, `cpu_workers` and `cpu_flyte_sim` (the stack's processes, by pid),
    /// `cpu_rabbitmq` and `cpu_postgres` (the machine's shared brokers and database, by name:
    /// whatever else uses them counts too), `cpu_load` (this process: the load generator, and
    /// whatever the scenario serves from it), `cpu_other`, and `cpu_idle` (no process at all).
    /// A process that started in between counts from zero; one that ended is missed.
    pub fn shares_since(&self, before: &Snapshot, stack: &Stack) -> Figures {
        let seconds = self.at.duration_since(before.at).as_secs_f64();
        let percent = |ticks: u64| 100.0 * ticks as f64 / TICKS_PER_SECOND / seconds;
        let ingress = stack.ingress_pid();
        let (workers, sim) = stack.other_pids();
        let load = std::process::id();
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
        for (pid, process) in &self.processes {
            let earlier = before
                .processes
                .get(pid)
                .filter(|earlier| earlier.started == process.started)
                .map_or(0, |earlier| earlier.used);
            let part = match process.name.as_str() {
                _ if *pid == ingress => "cpu_ingress",
                _ if *pid == load => "cpu_load",
                _ if workers.contains(pid) => "cpu_workers",
                _ if Some(*pid) == sim => "cpu_flyte_sim",
                "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => "cpu_rabbitmq",
                "postgres" => "cpu_postgres",
                _ => "cpu_other",
            };
            *figures.entry(part.into()).or_default() +=
                percent(process.used.saturating_sub(earlier));
        }
        figures.insert(
            "cpu_idle".into(),
            percent(self.idle.saturating_sub(before.idle)),
        );
        figures
    }
}

/// A `/proc/<pid>/stat` line. The name sits between the first `(` and the last `)`, and may
/// itself hold spaces or parentheses.
fn parse_stat(stat: &str) -> Option<Process> {
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    // After the name: state is field 3 of proc(5); utime, stime and starttime are 14, 15, 22.
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Process {
        name,
        started: field(22)?,
        used: field(14)? + field(15)?,
    })
}

/// Idle and I/O-wait ticks of all cores, from the `cpu` line of `/proc/stat`.
fn idle_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    Some(ticks.get(3)? + ticks.get(4)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_name_the_start_and_both_times() {
        let line =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 200 0 0 0 37 5 0 0 20 0 3 0 9876 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Process {
                name: "tokio (rt) x".into(),
                started: 9876,
                used: 42,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn idle_is_idle_and_io_wait_of_all_cores() {
        let stat = "cpu  100 2 30 4000 50 0 6 0 0 0\ncpu0 50 1 15 2000 25 0 3 0 0 0\n";
        assert_eq!(idle_ticks(stat), Some(4050));
        assert_eq!(idle_ticks("intr 1 2 3"), None);
    }
}
