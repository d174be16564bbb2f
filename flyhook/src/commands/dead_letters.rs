//! `flyhook dead-letters`: the dead-letter queue read and replayed from RabbitMQ itself, so it
//! works while PostgreSQL is away.

use clap::Subcommand;
use flyhook_contract::{Deployment, dead_letters};

#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// What is there and why, oldest first; the queue is left as it was.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the work queue as replays; the workers record their outcome
    /// (once PostgreSQL is reachable). Under their own ids they cannot start a second run.
    Replay {
        /// Only the dead letters of these dispatch ids (repeat); every readable one when absent.
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

impl DeadLetters {
    pub async fn run(self, deployment: &Deployment) -> anyhow::Result<()> {
        let (connection, _) = deployment.broker.connect("flyhook-cli").await?;
        let topology = deployment.topology();
        match self {
            DeadLetters::List { limit, json } => {
                let letters = dead_letters::list(&connection, &topology, limit).await?;
                for letter in &letters {
                    if json {
                        println!("{}", serde_json::to_string(letter)?);
                    } else {
                        println!(
                            "{:<40}  {:<10}  {:<14}  {}",
                            letter.id.as_deref().unwrap_or("-"),
                            letter.kind,
                            letter.reason.as_deref().unwrap_or("-"),
                            letter.task.as_deref().unwrap_or("-"),
                        );
                    }
                }
                if !json {
                    println!("{} dead letter(s) listed", letters.len());
                }
            }
            DeadLetters::Replay { ids } => {
                let replayed = dead_letters::replay(&connection, &topology, |letter| {
                    ids.is_empty() || letter.id.as_ref().is_some_and(|id| ids.contains(id))
                })
                .await?;
                println!(
                    "{} replayed, {} left in the dead-letter queue",
                    replayed.sent, replayed.kept
                );
            }
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }
}
