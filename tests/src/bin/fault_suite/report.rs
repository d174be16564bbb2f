//! RELIABILITY.md: every scenario's figures in one table, what each column means, and the
//! hostile classes tried.

use crate::hostile;
use crate::run::Outcome;
use crate::scenario::Scenario;

/// The text of RELIABILITY.md for these results.
pub fn reliability(rows: &[(Scenario, Outcome)]) -> String {
    let mut text = String::from(
        "# Reliability under faults\n\nMeasured by `scripts/fault-suite --report` (the fault-injection suite, \
         `tests/src/bin/fault_suite/`) on this 2-core machine: one `flyhook ingress` and three \
         `flyhook worker` processes (debug build), the local RabbitMQ 3.10 and PostgreSQL 15 (the \
         `cluster-*` rows: a three-node RabbitMQ 3.10 cluster on this machine instead, from \
         `scripts/rabbitmq-cluster`, with `[broker] partitions = 3`), an \
         in-process flyte-sim (runs last 200 ms), 32 concurrent senders that resend on any non-202 with \
         the same Idempotency-Key, every 50th request malformed JSON.\n\n\
         | scenario | fault | accepted | lost | duplicated runs | left queued/starting | dead letters unrecorded | terminal | load time | drain after load | 5xx to senders (retried) | seconds with a 5xx or no answer | 5xx to bad input | hostile misanswered | final statuses |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (which, o) in rows {
        let mut statuses: Vec<String> =
            o.statuses.iter().map(|(s, n)| format!("{s} {n}")).collect();
        statuses.sort();
        text.push_str(&format!(
            "| {} | {}{} | {} | **{}** | **{}** | **{}** | **{}** | {} | {:.1} s | {:.1} s | {} | {} | {} | {} | {} |\n",
            which.name(),
            which.describe(),
            if o.kills > 0 {
                format!(" ({} kills)", o.kills)
            } else {
                String::new()
            },
            o.accepted,
            o.lost,
            o.duplicated_runs,
            o.unfinished,
            o.unrecorded_dead_letters,
            o.terminal,
            o.load.as_secs_f64(),
            o.drain.as_secs_f64(),
            o.refused_5xx,
            o.refused_seconds,
            o.bad_input_5xx,
            o.misanswered,
            statuses.join(", ")
        ));
    }
    text.push_str(
        "\nLost: accepted (`202`) dispatches without a terminal status or without their run in the \
         stand-in. Duplicated runs: runs beyond one per accepted dispatch. 5xx to senders are `503`s \
         during an outage, each retried by the sender until accepted; the seconds with a 5xx or \
         no answer count the seconds of the load (from its start) in which any sender got one. Left queued/starting: accepted \
         dispatches whose record never got further. Dead letters unrecorded: messages in the \
         dead-letter queue beyond the dispatches recorded `failed` or `dead_lettered` (the broker \
         gave up on them and nobody recorded it). Hostile misanswered: hostile requests that got \
         another answer than the table below promises. Any of these above 0 fails the suite, and so \
         does a cluster scenario whose senders saw a 5xx or no answer in more than 8 seconds (a node \
         lost must cost seconds, not the node's whole absence).\n\n\
         During both PostgreSQL outages intake keeps answering `202` (the broker is the durable \
         store of intake) and the workers hold their deliveries unsettled until they can record, so \
         no delivery counts towards the broker's delivery limit; the load time of those rows is the \
         outage itself, and the backlog drains within seconds of PostgreSQL's return.\n",
    );
    text.push_str(hostile::CLASSES);
    text
}
