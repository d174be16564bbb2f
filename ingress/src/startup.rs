//! Building the ingress from settings, exactly as `main` and the tests do.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use flyhook_common::{DispatchStore, IdIssuer, Settings};
use flyte_client::FlyteClient;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::auth::Gatekeeper;
use crate::control::Control;
use crate::intake::Intake;
use crate::publisher::Publisher;
use crate::routes::{dispatches, health, hooks, run_task};
use crate::waiters::Waiters;

/// A bound, not yet running ingress.
pub struct Application {
    port: u16,
    server: Server,
    publisher: Publisher,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds `settings.listen` and wires everything. Neither RabbitMQ nor PostgreSQL has to be
    /// up: the publisher connects in the background (intake answers 503 until it has), and the
    /// database pool connects on first use (intake does not need it).
    pub async fn build(
        settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Application> {
        anyhow::ensure!(
            !settings.keys.is_empty(),
            "no API keys configured: set WEBHOOK_API_KEY or add [[api_keys]] to the FLYHOOK_CONFIG file"
        );
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();

        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(settings.database_url.expose_secret())
            .context("DATABASE_URL")?;
        let waiters = Waiters::start(pool.clone(), shutdown.clone());
        let store = DispatchStore::new(pool);
        let publisher = Publisher::start(
            settings.amqp_url.clone(),
            settings.topology(),
            settings.ingress.publish_channels,
            settings.ingress.publish_timeout,
            settings.ingress.max_in_flight_publishes,
            shutdown.clone(),
        );
        let flyte = FlyteClient::new(settings.flyte.clone()).context("Flyte client")?;
        let control = web::Data::new(Control::new(store.clone(), flyte.clone(), waiters));
        let store = web::Data::new(store);
        let intake = web::Data::new(Intake::new(
            IdIssuer::new(&settings.id_secret),
            publisher.clone(),
            flyte,
        ));
        let gatekeeper = web::Data::new(Gatekeeper::new(
            settings.keys.clone(),
            settings.ingress.rate_limit,
        ));
        let ingress_settings = web::Data::new(settings.ingress.clone());
        let publisher_data = web::Data::new(publisher.clone());
        let sources = web::Data::new(settings.sources.clone());

        let server = HttpServer::new(move || {
            App::new()
                .wrap(
                    actix_web::middleware::Logger::new("%a \"%r\" %s %T")
                        .log_target("flyhook::access"),
                )
                .app_data(store.clone())
                .app_data(control.clone())
                .app_data(intake.clone())
                .app_data(gatekeeper.clone())
                .app_data(ingress_settings.clone())
                .app_data(publisher_data.clone())
                .app_data(sources.clone())
                .route("/health", web::get().to(health::health))
                .route("/livez", web::get().to(health::health))
                .route("/readyz", web::get().to(health::readyz))
                .route(
                    "/run-task/{project}/{domain}/{name}/{version}",
                    web::post().to(run_task::run_task),
                )
                .route(
                    "/run-task-and-wait/{project}/{domain}/{name}/{version}",
                    web::post().to(run_task::run_task_and_wait),
                )
                .route("/hooks/{source}", web::post().to(hooks::receive))
                .route("/github-webhook", web::post().to(hooks::github_webhook))
                .route("/dispatches", web::get().to(dispatches::list_dispatches))
                .route("/dispatches/{id}", web::get().to(dispatches::get_dispatch))
                .route(
                    "/dispatches/{id}/cancel",
                    web::post().to(dispatches::cancel_dispatch),
                )
                .route(
                    "/dispatches/{id}/replay",
                    web::post().to(dispatches::replay_dispatch),
                )
        })
        .listen(listener)?
        .shutdown_signal(shutdown.clone().cancelled_owned())
        .shutdown_timeout(10)
        .run();
        Ok(Application {
            port,
            server,
            publisher,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Serves until the shutdown token is cancelled, lets in-flight requests (and their
    /// publishes) finish, then closes the broker connection.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.shutdown.cancel();
        self.publisher.close().await;
        result
    }
}
