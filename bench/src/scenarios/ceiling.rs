//! The broker's ceiling: the most confirmed, persistent, `mandatory` publishes per second a
//! minimal publisher gets from this RabbitMQ into quorum queues (one, and three as the
//! partitions of a cluster would spread them), with flyhook's saturated intake measured in the
//! same run (at the default log level and with the access log off, which is what the access log
//! costs), so intake is stated as a fraction of what the broker takes at all.
//!
//! The publisher does only what intake must: 1 KiB bodies to the default exchange, each publish
//! awaited until its confirm, as many in flight as the ingress allows itself
//! (`max_in_flight_publishes`, 512), spread over one or four connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stack::{self, Spec};

use super::{Figures, Options, Rows, figures, measure, run_task, warm};

/// Publishes in flight at once: the ingress's own bound.
const IN_FLIGHT: usize = 512;
const BODY: [u8; 1024] = [b'x'; 1024];
/// A publish unconfirmed this long means the broker stopped taking them (an alarm): the
/// scenario fails instead of hanging.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn broker_ceiling(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    let mut ceiling: f64 = 0.0;
    for queues in [1, 3] {
        for connections in [1, 4] {
            let label = format!("{queues} quorum queue(s), {connections} connection(s)");
            eprintln!("  {label}");
            let per_second =
                measure_publishing(queues, connections, Duration::from_secs(options.seconds))
                    .await?;
            eprintln!("    {per_second:.0} confirmed/s");
            if queues == 1 {
                ceiling = ceiling.max(per_second);
            }
            let mut f = Figures::new();
            f.insert("confirmed_per_s".into(), per_second);
            rows.push((label, f));
        }
    }
    // flyhook's intake into its one work queue, as `intake` measures it: as a user runs it (an
    // access line per request), and with the access log off.
    for (logs, label) in [
        (stack::default_logs(), "default logs (info)"),
        (("RUST_LOG".into(), "warn".into()), "warn logs"),
    ] {
        let stack = stack::start(&Spec {
            vars: vec![logs],
            ..Spec::default()
        })
        .await?;
        let workload = run_task(&stack, 1024);
        let load = options.load(None, 128);
        measure(workload.clone(), warm(load)).await?;
        let report = measure(workload, load).await?;
        stack.stop().await?;
        let mut f = figures(&report);
        f.insert(
            "fraction_of_ceiling".into(),
            report.ok_per_second() / ceiling.max(f64::MIN_POSITIVE),
        );
        rows.push((format!("flyhook /run-task, saturated, {label}"), f));
    }
    Ok(rows)
}

/// Confirmed publishes per second into `queues` fresh quorum queues (round robin) over
/// `connections` connections, for `duration` after 2 s of warm-up into the same queues; the
/// queues are deleted afterwards, whatever happened.
async fn measure_publishing(
    queues: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let admin = flyhook_testkit::broker::connect().await?;
    let setup = admin.create_channel().await?;
    let names: Vec<String> = (0..queues)
        .map(|i| format!("bench-ceiling-{}-{i}", uuid::Uuid::new_v4()))
        .collect();
    let measured = publish_into(&setup, &names, connections, duration).await;
    for name in &names {
        if let Err(e) = setup
            .queue_delete(name.as_str().into(), Default::default())
            .await
        {
            eprintln!("could not delete the queue {name}: {e}");
        }
    }
    let _ = admin.close(200, "done".into()).await;
    measured
}

async fn publish_into(
    setup: &Channel,
    names: &[String],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    for name in names {
        setup
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                quorum.clone(),
            )
            .await
            .with_context(|| format!("declaring {name}"))?;
    }
    let mut open: Vec<(Connection, Channel)> = Vec::new();
    for _ in 0..connections {
        let connection = flyhook_testkit::broker::connect().await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        open.push((connection, channel));
    }
    let names = Arc::new(names.to_vec());
    let channels: Vec<Channel> = open.iter().map(|(_, channel)| channel.clone()).collect();
    let publishing = async {
        publish_for(&channels, &names, Duration::from_secs(2)).await?;
        publish_for(&channels, &names, duration).await
    }
    .await;
    for (connection, _) in open {
        let _ = connection.close(200, "done".into()).await;
    }
    publishing
}

/// Confirmed publishes per second on `channels`, `IN_FLIGHT` at once, for `duration`. A
/// publish the broker does not take (a nack, a return) fails the measurement: a ceiling must be
/// of stored messages.
async fn publish_for(
    channels: &[Channel],
    names: &Arc<Vec<String>>,
    duration: Duration,
) -> anyhow::Result<f64> {
    let confirmed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut publishers = JoinSet::new();
    for channel in channels {
        for slot in 0..IN_FLIGHT / channels.len() {
            let (channel, names, confirmed) = (channel.clone(), names.clone(), confirmed.clone());
            publishers.spawn(async move {
                let mut n = slot;
                while Instant::now() < deadline {
                    let queue = &names[n % names.len()];
                    tokio::time::timeout(CONFIRM_TIMEOUT, publish(&channel, queue))
                        .await
                        .context("no confirm within 30 s")??;
                    confirmed.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                anyhow::Ok(())
            });
        }
    }
    while let Some(done) = publishers.join_next().await {
        done??;
    }
    Ok(confirmed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// One persistent, mandatory publish awaited until its confirm; an error unless the broker
/// stored it.
async fn publish(channel: &Channel, queue: &str) -> anyhow::Result<()> {
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &BODY,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    anyhow::ensure!(
        confirmation.is_ack() && confirmation.take_message().is_none(),
        "the broker did not store a publish into {queue}"
    );
    Ok(())
}
