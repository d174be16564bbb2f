//! Building the ingress from the deployment and its own settings, exactly as `main` and the
//! tests do.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use flyhook_contract::broker::ConnectedNode;
use flyhook_contract::{Deployment, IdIssuer};
use flyhook_store::DispatchStore;
use flyhook_store::audit::AuditStore;
use flyte_client::FlyteClient;
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, AuditWriter};
use crate::auth::{Gatekeeper, keep_keys_current};
use crate::console::Console;
use crate::control::Control;
use crate::intake::Intake;
use crate::metrics::IngressMetrics;
use crate::observe::{RoutePattern, observe};
use crate::openapi;
use crate::publisher::{Publisher, PublisherMetrics};
use crate::routes::{
    Services, audit, console, dead_letters, dispatches, health, hooks, keys, overview, run_task,
    session, sources,
};
use crate::sessions::Sessions;
use crate::settings::Settings;
use crate::waiters::Waiters;
use flyhook_store::sessions::SessionStore;

/// A resource that carries its own pattern, so [`observe`] can label metrics and audit entries
/// with it without matching the path against every route a second time.
fn resource(pattern: &'static str) -> actix_web::Resource {
    web::resource(pattern).app_data(RoutePattern(pattern))
}

/// A bound, not yet running ingress.
pub struct Application {
    port: u16,
    server: Server,
    publisher: Publisher,
    audit_writer: AuditWriter,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// How long start-up waits for the broker to check its queues, beyond the time to connect (the
/// broker may be down: intake then starts anyway and connects later).
const TOPOLOGY_CHECK: Duration = Duration::from_secs(3);

/// Stops start-up when the broker's queues were declared with other arguments than these
/// settings give (a changed `max_queue_length`): every publish would fail, so say how to mend
/// it now instead of answering 503 forever.
async fn refuse_mismatched_topology(deployment: &Deployment) -> anyhow::Result<()> {
    let check = async {
        let (connection, _) = deployment.broker.connect("flyhook-ingress-check").await?;
        let declared = deployment.topology().declare(&connection).await;
        let _ = connection.close(200, "checked".into()).await;
        declared
    };
    // Every node may be tried, a silent one for as long as a connect may take.
    let nodes = deployment.broker.addresses().count() as u32;
    let within = TOPOLOGY_CHECK + flyhook_contract::broker::nodes::CONNECT_TIMEOUT * 2 * nodes;
    match tokio::time::timeout(within, check).await {
        Ok(Err(e)) if flyhook_contract::broker::is_topology_mismatch(&e) => Err(e),
        _ => Ok(()),
    }
}

impl Application {
    /// Binds `settings.listen` and wires everything. Neither RabbitMQ nor PostgreSQL has to be
    /// up: the publisher connects in the background (intake answers 503 until it has), and the
    /// database pool connects on first use (intake does not need it).
    pub async fn build(
        deployment: &Deployment,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Application> {
        anyhow::ensure!(
            !settings.keys.is_empty() || settings.id_secret_is_explicit,
            "no API keys configured and no FLYHOOK_ID_SECRET: set WEBHOOK_API_KEY, add [[api_keys]] \
             to the FLYHOOK_CONFIG file, or set FLYHOOK_ID_SECRET and create keys with `flyhook keys create`"
        );
        refuse_mismatched_topology(deployment).await?;
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();

        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(deployment.database_url.expose_secret())
            .context("DATABASE_URL")?;
        let mut registry = Registry::default();
        let metrics = IngressMetrics::register(&mut registry);
        let waiters = Waiters::start(pool.clone(), shutdown.clone());
        let gatekeeper = Arc::new(Gatekeeper::new(
            settings.keys.clone(),
            settings.ingress.rate_limit,
            metrics.api_keys.clone(),
        ));
        keep_keys_current(
            gatekeeper.clone(),
            pool.clone(),
            settings.ingress.key_refresh,
            shutdown.clone(),
        )
        .await;
        let audit_store = AuditStore::new(pool.clone());
        let (audit_log, audit_writer) = AuditLog::start(
            audit_store.clone(),
            &settings.audit,
            metrics.audit_written.clone(),
            metrics.audit_dropped.clone(),
            shutdown.clone(),
        );
        let sessions = web::Data::new(Sessions::new(
            SessionStore::new(pool.clone()),
            settings.ingress.console_session,
        ));
        let store = DispatchStore::new(pool);
        let publisher = Publisher::start(
            deployment.broker.clone(),
            deployment.topology(),
            settings.ingress.publish_channels,
            settings.ingress.publish_timeout,
            settings.ingress.max_in_flight_publishes,
            PublisherMetrics {
                confirm_latency: metrics.publish_confirm.clone(),
                on_node: ConnectedNode::register(&mut registry, &deployment.broker),
            },
            shutdown.clone(),
        );
        let flyte =
            FlyteClient::observed(deployment.flyte.clone(), Arc::new(metrics.flyte.clone()))
                .context("Flyte client")?;
        let services = web::Data::new(Services {
            control: Control::new(store.clone(), flyte.clone(), waiters),
            console: Console::new(
                store.clone(),
                audit_store.clone(),
                publisher.clone(),
                deployment.topology(),
            ),
            intake: Intake::new(
                IdIssuer::new(&settings.id_secret),
                publisher.clone(),
                flyte,
                store.clone(),
                settings.policies.clone(),
            ),
            store,
            audit_store,
            publisher: publisher.clone(),
            registry,
            settings: settings.ingress,
            sources: settings.sources,
        });
        let gatekeeper = web::Data::from(gatekeeper);
        let audit_log = web::Data::new(audit_log);
        let metrics = web::Data::new(metrics);

        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(observe))
                .app_data(services.clone())
                .app_data(audit_log.clone())
                .app_data(metrics.clone())
                .app_data(gatekeeper.clone())
                .app_data(sessions.clone())
                // Intake first: actix tries each resource in turn, and these take nearly every
                // request (seventeen misses before them were 4 % of an accepted request). No
                // other pattern overlaps them; where patterns do overlap, the first wins, so
                // `/dispatches/replay` stays before `/dispatches/{id}`.
                .service(
                    resource("/run-task/{project}/{domain}/{name}/{version}")
                        .route(web::post().to(run_task::run_task)),
                )
                .service(
                    resource("/run-task-and-wait/{project}/{domain}/{name}/{version}")
                        .route(web::post().to(run_task::run_task_and_wait)),
                )
                .service(resource("/hooks/{source}").route(web::post().to(hooks::receive)))
                .service(resource("/health").route(web::get().to(health::health)))
                .service(resource("/livez").route(web::get().to(health::livez)))
                .service(resource("/readyz").route(web::get().to(health::readyz)))
                .service(resource("/metrics").route(web::get().to(health::metrics)))
                .service(resource("/openapi.json").route(web::get().to(openapi::serve)))
                .service(resource("/audit").route(web::get().to(audit::list_audit)))
                .service(resource("/overview").route(web::get().to(overview::overview)))
                .service(resource("/sources").route(web::get().to(sources::list_sources)))
                .service(
                    resource("/dead-letters").route(web::get().to(dead_letters::list_dead_letters)),
                )
                .service(
                    resource("/dead-letters/replay")
                        .route(web::post().to(dead_letters::replay_dead_letters)),
                )
                .service(
                    resource("/keys")
                        .route(web::get().to(keys::list_keys))
                        .route(web::post().to(keys::create_key)),
                )
                .service(resource("/keys/{name}/revoke").route(web::post().to(keys::revoke_key)))
                .service(
                    resource("/ui/session")
                        .route(web::get().to(session::show))
                        .route(web::post().to(session::sign_in))
                        .route(web::delete().to(session::sign_out)),
                )
                .service(resource("/ui").route(web::get().to(console::to_page)))
                .service(resource("/ui/").route(web::get().to(console::page)))
                .service(resource("/ui/app.js").route(web::get().to(console::script)))
                .service(resource("/ui/app.css").route(web::get().to(console::styles)))
                .service(resource("/github-webhook").route(web::post().to(hooks::github_webhook)))
                .service(resource("/dispatches").route(web::get().to(dispatches::list_dispatches)))
                .service(
                    resource("/dispatches/replay")
                        .route(web::post().to(dispatches::replay_matching)),
                )
                .service(
                    resource("/dispatches/{id}").route(web::get().to(dispatches::get_dispatch)),
                )
                .service(
                    resource("/dispatches/{id}/history")
                        .route(web::get().to(dispatches::dispatch_history)),
                )
                .service(
                    resource("/dispatches/{id}/cancel")
                        .route(web::post().to(dispatches::cancel_dispatch)),
                )
                .service(
                    resource("/dispatches/{id}/replay")
                        .route(web::post().to(dispatches::replay_dispatch)),
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
            audit_writer,
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
        self.audit_writer.close().await;
        result
    }
}
