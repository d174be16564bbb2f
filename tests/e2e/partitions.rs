//! Work sharded over several queues (`[broker] partitions`): spread by dispatch id, consumed
//! whole or in part by each worker, and nothing lost when the count is lowered.

use std::time::Duration;

use flyhook::Settings;
use flyhook_testkit::{TestEnv, broker};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

async fn ready_in(settings: &Settings, partition: u16) -> u32 {
    let topology = settings.deployment.topology();
    broker::queue_length(&settings.deployment.broker, &topology.work_queue(partition))
        .await
        .expect("the partition's queue")
}

async fn remove_queues(settings: &Settings) {
    broker::delete_topology(&settings.deployment.broker, &settings.deployment.topology())
        .await
        .expect("the partitions removed");
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn dispatches_spread_over_the_partitions_and_a_lowered_count_drains_them_all(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let four = env.settings_with_file("[broker]\npartitions = 4\n");
    let ingress = env.start_ingress(four.clone()).await;
    let ids = ingress.sender().send_hellos(40).await;

    let mut spread = Vec::new();
    for partition in 0..4 {
        spread.push(ready_in(&four, partition).await);
    }
    assert_eq!(spread.iter().sum::<u32>(), 40, "{spread:?}");
    assert!(
        spread.iter().all(|n| *n > 0),
        "every partition took some: {spread:?}"
    );

    // The deployment goes back to one partition: its workers drain the three left over.
    let one = env.settings();
    assert_eq!(one.deployment.topology().partitions(), 1);
    env.start_worker(&one);
    ingress.sender().wait_all(&ids, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 40);
    for partition in 0..4 {
        assert_eq!(ready_in(&four, partition).await, 0, "partition {partition}");
    }
    env.finish().await;
    remove_queues(&four).await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_given_some_partitions_consumes_only_those(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = |worker: &str| {
        env.settings_with_file(&format!(
            "[broker]\npartitions = 2\n[worker]\npartitions = [{worker}]\n"
        ))
    };
    let second_only = settings("1");
    let sender = env.start_ingress(second_only.clone()).await.sender();
    let ids = sender.send_hellos(20).await;
    let topology = second_only.deployment.topology();
    let (second, first): (Vec<String>, Vec<String>) = ids.iter().cloned().partition(|id| {
        topology.partition_of(&flyhook_contract::DispatchId::parse(id).unwrap()) == 1
    });
    assert!(
        !first.is_empty() && !second.is_empty(),
        "{first:?} {second:?}"
    );
    assert_eq!(ready_in(&second_only, 0).await as usize, first.len());

    env.start_worker(&second_only);
    sender.wait_all(&second, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), second.len());
    assert_eq!(
        ready_in(&second_only, 0).await as usize,
        first.len(),
        "partition 0 untouched"
    );

    env.start_worker(&settings("0"));
    sender.wait_all(&ids, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 20);
    env.finish().await;
    remove_queues(&second_only).await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_refuses_a_partition_beyond_the_count(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.settings_with_file("[broker]\npartitions = 2\n[worker]\npartitions = [2]\n");
    let error = flyhook_worker::Worker::build(&settings.deployment, &settings.worker).unwrap_err();
    assert!(format!("{error:#}").contains("partition 2"), "{error:#}");
    env.finish().await;
}
