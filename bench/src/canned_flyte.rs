//! A canned Flyte for the seed app: every Connect call is answered `{}` after a fixed latency,
//! nothing checked, nothing kept. flyte-sim checks every request against Flyte's schema; the
//! seed app should not pay for that, so the comparison measures its design alone.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};

/// A running canned Flyte, on one thread of its own; stopped when dropped.
#[derive(Debug)]
pub struct CannedFlyte {
    pub url: String,
    handle: ServerHandle,
}

impl CannedFlyte {
    pub fn start(latency: Duration) -> anyhow::Result<CannedFlyte> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = HttpServer::new(move || {
            App::new().default_service(web::to(move |_body: web::Bytes| async move {
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body("{}")
            }))
        })
        .workers(1)
        // The benchmark's process keeps its own Ctrl-C.
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(CannedFlyte { url, handle })
    }
}

impl Drop for CannedFlyte {
    fn drop(&mut self) {
        let stopping = self.handle.stop(false);
        tokio::spawn(stopping);
    }
}
