//! `flyhook-bench`: see BENCHMARKS.md, or `flyhook-bench --help`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flyhook_bench::load::{self, Load};
use flyhook_bench::report;
use flyhook_bench::scenarios::{self, NAMES, Options};
use flyhook_bench::workloads::{GithubPush, RunTask};
use serde_json::Value;

/// Load flyhook and measure it.
#[derive(Debug, Parser)]
#[command(name = "flyhook-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send load to a running flyhook ingress and print what came back.
    Load {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Requests per second; without it, as fast as answers come back.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1024)]
        body_size: usize,
        /// The bearer key for `/run-task`.
        #[arg(long, env = "WEBHOOK_API_KEY", default_value = "flyhook-dev-key")]
        key: String,
        /// Send signed GitHub pushes to `/hooks/<source>` with this secret instead.
        #[arg(long, requires = "github_secret")]
        github_source: Option<String>,
        #[arg(long, env = "GITHUB_WEBHOOK_SECRET")]
        github_secret: Option<String>,
    },
    /// Run scenarios on a throwaway deployment each, `runs` times, and write their medians.
    Scenario {
        /// One or more of the scenarios, or `all`.
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Length of each measured load (the pipeline scenario runs at least 60 s).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Print the Markdown tables of every result, and draw the plots beside them.
    Report {
        #[arg(long, default_value = "bench/results")]
        results: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load {
            url,
            rate,
            connections,
            seconds,
            body_size,
            key,
            github_source,
            github_secret,
        } => {
            let workload: Arc<dyn load::Workload> = match (github_source, github_secret) {
                (Some(source), Some(secret)) => {
                    Arc::new(GithubPush::new(&url, &source, &secret, body_size))
                }
                _ => Arc::new(RunTask::new(&url, &key, body_size)),
            };
            let load = Load {
                rate,
                connections,
                duration: Duration::from_secs(seconds),
            };
            println!("{}", load::run(load, workload).await?.summary());
        }
        Command::Scenario {
            names,
            runs,
            seconds,
            out,
        } => {
            let names: Vec<String> = if names.iter().any(|n| n == "all") {
                NAMES.iter().map(|n| n.to_string()).collect()
            } else {
                names
            };
            std::fs::create_dir_all(&out)?;
            for name in names {
                let mut results = Vec::new();
                for run in 1..=runs.max(1) {
                    eprintln!("{name}: run {run} of {runs}");
                    results.push(scenarios::run_once(&name, Options { seconds }).await?);
                }
                let result = scenarios::to_json(&name, &results);
                let path = out.join(format!("{name}.json"));
                std::fs::write(&path, serde_json::to_string_pretty(&result)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", report::table(&result));
            }
        }
        Command::Report { results } => write_report(&results)?,
    }
    Ok(())
}

fn write_report(dir: &Path) -> anyhow::Result<()> {
    let read = |name: &str| -> Option<Value> {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    };
    for name in NAMES {
        if let Some(result) = read(name) {
            println!("{}", report::table(&result));
        }
    }
    for chart in CHARTS {
        let Some(result) = read(chart.scenario) else {
            continue;
        };
        let series: Vec<report::Series> = chart
            .lines
            .iter()
            .map(|&(name, y)| report::series(&result, name, chart.x.1, y))
            .collect();
        let svg = report::line_chart(chart.title, chart.x.0, chart.y_label, &series);
        let path = dir.join(chart.file);
        std::fs::write(&path, svg)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A plot of BENCHMARKS.md: one scenario's figures against one of its figures.
struct Chart {
    file: &'static str,
    scenario: &'static str,
    title: &'static str,
    /// The axis label and the figure along x.
    x: (&'static str, &'static str),
    y_label: &'static str,
    /// Each line's name and figure.
    lines: &'static [(&'static str, &'static str)],
}

const CHARTS: [Chart; 4] = [
    Chart {
        file: "overload-rate.svg",
        scenario: "overload",
        title: "Overload: answers per second against offered load",
        x: ("offered requests/s", "offered_per_s"),
        y_label: "answers/s",
        lines: &[
            ("202 accepted/s", "ok_per_s"),
            ("503 refused/s", "503_per_s"),
        ],
    },
    Chart {
        file: "overload-latency.svg",
        scenario: "overload",
        title: "Overload: p99 latency against offered load",
        x: ("offered requests/s", "offered_per_s"),
        y_label: "p99 ms",
        lines: &[("p99 of 202s", "p99_ms"), ("p99 of 503s", "503_p99_ms")],
    },
    Chart {
        file: "body-size.svg",
        scenario: "body-size",
        title: "Saturated /run-task against body size",
        x: ("body KiB", "body_kib"),
        y_label: "accepted/s",
        lines: &[("accepted/s", "ok_per_s")],
    },
    Chart {
        file: "workers.svg",
        scenario: "workers",
        title: "Backlog drained into started runs against worker processes",
        x: ("worker processes", "workers"),
        y_label: "runs started/s",
        lines: &[("runs started/s", "started_per_s")],
    },
];
