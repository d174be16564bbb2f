//! A completion callbacks' receiver: an HTTP server of the test's own that records every
//! request (headers and body) and answers each with the next status of its script, then with
//! its standing answer, which the test may change (a receiver that fails, then recovers).

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What it was answered.
    pub status: u16,
    /// When it came.
    pub at: std::time::SystemTime,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Debug, Default)]
struct Script {
    next: VecDeque<u16>,
    standing: u16,
    received: Vec<Received>,
}

/// A running receiver, stopped when dropped.
#[derive(Debug)]
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    handle: ServerHandle,
}

impl Receiver {
    /// Answers `first` in order, then `standing` to every request after.
    pub fn start(first: &[u16], standing: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        Receiver::listen(listener, first, standing)
    }

    /// As [`Receiver::start`], on `port` (a receiver that was down comes up where it was).
    pub fn start_on(port: u16, first: &[u16], standing: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        Receiver::listen(listener, first, standing)
    }

    fn listen(listener: TcpListener, first: &[u16], standing: u16) -> Receiver {
        let url = format!(
            "http://{}/flyte-done",
            listener.local_addr().expect("bound")
        );
        let script = Arc::new(Mutex::new(Script {
            next: first.iter().copied().collect(),
            standing,
            received: Vec::new(),
        }));
        let shared = web::Data::from(script.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("the receiver listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url,
            script,
            handle,
        }
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.script).received.clone()
    }

    /// How many requests came so far.
    pub fn count(&self) -> usize {
        lock(&self.script).received.len()
    }

    /// The answer to every request from now on (after the scripted ones).
    pub fn answer_from_now(&self, status: u16) {
        lock(&self.script).standing = status;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let stopping = self.handle.stop(false);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(stopping);
        }
    }
}

fn lock(script: &Mutex<Script>) -> std::sync::MutexGuard<'_, Script> {
    script.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    script: web::Data<Mutex<Script>>,
) -> HttpResponse {
    let mut script = lock(&script);
    let status = script.next.pop_front().unwrap_or(script.standing);
    script.received.push(Received {
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        status,
        at: std::time::SystemTime::now(),
    });
    HttpResponse::build(StatusCode::from_u16(status).expect("a status code")).finish()
}
