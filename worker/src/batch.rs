//! Batched status writes. Each PostgreSQL statement costs a round trip, planning, and a commit
//! with its WAL flush; a worker with dozens of dispatches in hand writes all the claims (or all
//! the `running` records) waiting at that moment as one statement instead of one each, which is
//! what lets the status store keep up with the broker (BENCHMARKS.md, `workers`).
//!
//! Nothing waits to fill a batch: a batch is whatever queued up while the previous one was
//! being written, so a lone dispatch is written at once and a busy worker writes big batches.
//! A batch never holds the same key twice (a multi-row upsert cannot touch a row twice); a
//! repeated key waits for the next batch.
//!
//! A batch may hold dispatches of every tenant, so one member's data must never fail the
//! others: when the store refuses a batch's data (SQLSTATE 22 or 23, see [`StoreFault`]), each
//! member is written again on its own, and only the offender gets the error. An outage fails
//! the whole batch (every member retries when the store is back).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use flyhook_store::StoreFault;
use tokio::sync::{mpsc, oneshot};

/// The error every member of a failed batch gets.
pub type WriteError = Arc<sqlx::Error>;

type Reply<O> = oneshot::Sender<Result<O, WriteError>>;

/// Submits single writes, performs them in batches; cheap to clone.
#[derive(Debug)]
pub struct Batcher<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<I: Clone + Send + Sync + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the writing task (call within a Tokio runtime); it ends when the last clone is
    /// dropped. `write` gets distinct-keyed inputs and returns one output per input, in order.
    pub fn start<W, F>(max_batch: usize, key: fn(&I) -> String, write: W) -> Batcher<I, O>
    where
        W: Fn(Arc<[I]>) -> F + Send + 'static,
        F: Future<Output = Result<Vec<O>, sqlx::Error>> + Send,
    {
        let (queue, mut pending) = mpsc::channel::<(I, Reply<O>)>(max_batch * 4);
        tokio::spawn(async move {
            let mut held_over = None;
            loop {
                let first = match held_over.take() {
                    Some(item) => item,
                    None => match pending.recv().await {
                        Some(item) => item,
                        None => return,
                    },
                };
                let mut keys = HashSet::from([key(&first.0)]);
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    let Ok(item) = pending.try_recv() else { break };
                    if keys.insert(key(&item.0)) {
                        batch.push(item);
                    } else {
                        held_over = Some(item);
                        break;
                    }
                }
                let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
                let inputs: Arc<[I]> = inputs.into();
                match counted(inputs.len(), write(inputs.clone()).await) {
                    Err(e) if StoreFault::of(&e) == StoreFault::Refused && inputs.len() > 1 => {
                        // Someone's data was refused: find whose, one member at a time.
                        for (input, reply) in inputs.iter().zip(replies) {
                            let answer = counted(1, write(Arc::from([input.clone()])).await);
                            let _ = reply.send(answer.map_err(Arc::new).map(|mut outputs| {
                                outputs.pop().expect("one output for one input")
                            }));
                        }
                    }
                    Ok(outputs) => {
                        for (reply, output) in replies.into_iter().zip(outputs) {
                            let _ = reply.send(Ok(output));
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        replies
                            .into_iter()
                            .for_each(|r| drop(r.send(Err(e.clone()))));
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Writes `input` with whatever else is waiting, and returns its output.
    pub async fn write(&self, input: I) -> Result<O, WriteError> {
        let (reply, answer) = oneshot::channel();
        let closed = || Arc::new(sqlx::Error::PoolClosed);
        self.queue
            .send((input, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// A write's answer, checked to hold one output per input.
fn counted<O>(
    expected: usize,
    written: Result<Vec<O>, sqlx::Error>,
) -> Result<Vec<O>, sqlx::Error> {
    let outputs = written?;
    if outputs.len() != expected {
        return Err(sqlx::Error::Protocol(format!(
            "a batch write of {expected} returned {} results",
            outputs.len()
        )));
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn writes_queued_together_share_a_batch_and_repeated_keys_wait_for_the_next() {
        let batches: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let seen = batches.clone();
        let batcher: Batcher<u32, u32> = Batcher::start(
            8,
            |n| (n % 10).to_string(),
            move |inputs: Arc<[u32]>| {
                seen.lock().unwrap().push(inputs.to_vec());
                async move { Ok(inputs.iter().map(|n| n * 2).collect()) }
            },
        );
        // Submitted together before the writer runs (current-thread runtime): one batch,
        // except 11, whose key (1) is already in it.
        let answers = tokio::join!(
            batcher.write(1),
            batcher.write(2),
            batcher.write(3),
            batcher.write(11)
        );
        assert_eq!(
            (
                answers.0.unwrap(),
                answers.1.unwrap(),
                answers.2.unwrap(),
                answers.3.unwrap()
            ),
            (2, 4, 6, 22)
        );
        assert_eq!(*batches.lock().unwrap(), vec![vec![1, 2, 3], vec![11]]);
    }

    #[tokio::test]
    async fn refused_data_fails_only_its_own_write() {
        // 13 is data the store refuses; it must not fail 1 and 2 in its batch.
        let batcher: Batcher<u32, u32> = Batcher::start(
            8,
            |n| n.to_string(),
            |inputs: Arc<[u32]>| async move {
                if inputs.contains(&13) {
                    Err(sqlx::Error::Encode("unstorable".into()))
                } else {
                    Ok(inputs.to_vec())
                }
            },
        );
        let (one, bad, two) = tokio::join!(batcher.write(1), batcher.write(13), batcher.write(2));
        assert_eq!((one.unwrap(), two.unwrap()), (1, 2));
        assert!(bad.is_err_and(|e| StoreFault::of(&e) == StoreFault::Refused));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_writes() {
        let batcher: Batcher<u32, u32> = Batcher::start(
            8,
            |n| n.to_string(),
            |_| async { Err(sqlx::Error::PoolTimedOut) },
        );
        let (first, second) = tokio::join!(batcher.write(1), batcher.write(2));
        for answer in [first, second] {
            assert!(answer.is_err_and(|e| matches!(*e, sqlx::Error::PoolTimedOut)));
        }
    }
}
