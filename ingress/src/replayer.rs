//! `flyhook replay` outside a running ingress: the same intake path `POST /dispatches/{id}/replay`
//! takes (one publisher, ids signed by this deployment's secret), opened for one batch of
//! replays under one request id, so their runs can be found together.

use std::time::Duration;

use flyhook_contract::broker::ConnectedNode;
use flyhook_contract::scopes::Scopes;
use flyhook_contract::{Deployment, DispatchId, IdIssuer};
use flyhook_store::DispatchStore;
use flyte_client::FlyteClient;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::intake::{Accepted, Intake};
use crate::observe::RequestId;
use crate::publisher::{Publisher, PublisherMetrics};
use crate::settings::Settings;

/// How long opening waits for RabbitMQ.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Replayer {
    intake: Intake,
    publisher: Publisher,
    store: DispatchStore,
    request_id: RequestId,
}

impl Replayer {
    /// Connects a publisher (waiting for RabbitMQ) and opens the intake.
    pub async fn open(
        deployment: &Deployment,
        settings: &Settings,
        store: DispatchStore,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Replayer> {
        let publisher = Publisher::start(
            deployment.broker.clone(),
            deployment.topology(),
            1,
            settings.ingress.publish_timeout,
            settings.ingress.max_in_flight_publishes,
            PublisherMetrics {
                confirm_latency: flyhook_contract::metrics::latency_histogram(),
                on_node: ConnectedNode::default(),
            },
            shutdown,
        );
        anyhow::ensure!(
            publisher.wait_connected(CONNECT_TIMEOUT).await,
            "RabbitMQ is not reachable"
        );
        let intake = Intake::new(
            IdIssuer::new(&settings.id_secret),
            publisher.clone(),
            FlyteClient::new(deployment.flyte.clone())?,
            store.clone(),
            settings.policies.clone(),
        );
        Ok(Replayer {
            intake,
            publisher,
            store,
            request_id: RequestId::fresh(),
        })
    }

    /// The request id every replay of this batch carries.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// Replays one dispatch, as an unrestricted key would.
    pub async fn replay(&self, id: &DispatchId, new_run: bool) -> Result<Accepted, ApiError> {
        self.intake
            .replay(
                &self.store,
                id,
                new_run,
                &Scopes::unrestricted(),
                &self.request_id,
            )
            .await
    }

    /// Waits for the outstanding confirms and closes the connection.
    pub async fn close(self) {
        self.publisher.close().await;
    }
}
