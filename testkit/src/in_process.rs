//! The ingress and worker started inside a test (the same `Application` and `Worker` that
//! `flyhook` runs), each stoppable on its own, and all of a test's still running stopped by one
//! call at its end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flyhook::Settings;
use flyhook_ingress::Application;
use flyhook_worker::Worker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::Sender;

/// One started component: how to ask it to stop, and its task until someone awaited it.
#[derive(Debug)]
struct Task {
    is_worker: bool,
    shutdown: CancellationToken,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Task {
    fn take(&self) -> Option<JoinHandle<()>> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Graceful: asks it to stop and waits until it has.
    async fn stop(&self) {
        self.shutdown.cancel();
        if let Some(handle) = self.take() {
            let _ = handle.await;
        }
    }

    /// Dead at once, as `kill -9` would.
    async fn kill(&self) {
        if let Some(handle) = self.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

/// Everything started through it, until [`Running::stop_all`].
#[derive(Debug, Default)]
pub struct Running {
    tasks: Mutex<Vec<Arc<Task>>>,
}

impl Running {
    fn register(
        &self,
        is_worker: bool,
        shutdown: CancellationToken,
        handle: JoinHandle<()>,
    ) -> Arc<Task> {
        let task = Arc::new(Task {
            is_worker,
            shutdown,
            handle: Mutex::new(Some(handle)),
        });
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.clone());
        task
    }

    pub async fn start_ingress(&self, settings: Settings) -> Ingress {
        let shutdown = CancellationToken::new();
        let app = Application::build(&settings.deployment, settings.ingress, shutdown.clone())
            .await
            .expect("ingress builds");
        let connected = app
            .publisher()
            .wait_connected(Duration::from_secs(10))
            .await;
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        Ingress {
            base,
            connected,
            task: self.register(false, shutdown, handle),
        }
    }

    pub fn start_worker(&self, settings: &Settings) -> RunningWorker {
        let shutdown = CancellationToken::new();
        let worker = Worker::build(&settings.deployment, &settings.worker).expect("worker builds");
        let ops_base = format!("http://127.0.0.1:{}", worker.ops_port());
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            let _ = worker.run_until_stopped(token).await;
        });
        RunningWorker {
            ops_base,
            task: self.register(true, shutdown, handle),
        }
    }

    /// Stops, gracefully, whatever is still running: the workers first (their in-flight
    /// dispatches finish and are acked), then the ingresses, each kind newest first.
    pub async fn stop_all(&self) {
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        tasks.reverse();
        tasks.sort_by_key(|task| !task.is_worker);
        for task in tasks {
            task.stop().await;
        }
    }
}

/// A running ingress.
#[derive(Debug)]
pub struct Ingress {
    pub base: String,
    /// Whether the publisher reached RabbitMQ at start.
    pub connected: bool,
    task: Arc<Task>,
}

impl Ingress {
    /// A sender calling this ingress.
    pub fn sender(&self) -> Sender {
        Sender::at(&self.base)
    }

    pub async fn stop(self) {
        self.task.stop().await;
    }
}

/// A running worker.
#[derive(Debug)]
pub struct RunningWorker {
    /// Where the worker serves `/metrics`, `/livez` and `/readyz`.
    pub ops_base: String,
    task: Arc<Task>,
}

impl RunningWorker {
    /// Graceful stop: in-flight dispatches finish and are acked.
    pub async fn stop(self) {
        self.task.stop().await;
    }

    /// Stops the worker dead, as `kill -9` would; pair with a cut of its broker connection.
    pub async fn kill(self) {
        self.task.kill().await;
    }
}
