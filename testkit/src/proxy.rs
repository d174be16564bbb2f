//! A TCP proxy in front of a shared service, whose connections a test cuts, pauses or refuses
//! to simulate a crash, a hang or an outage without touching the service itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::services::{POSTGRES_ADDR, RABBITMQ_ADDR, amqp_url_at};

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
    paused: watch::Sender<bool>,
}

impl Proxy {
    /// A proxy in front of the local RabbitMQ.
    pub async fn to_rabbitmq() -> Proxy {
        Proxy::start(RABBITMQ_ADDR.parse().expect("an address")).await
    }

    /// A proxy in front of the local PostgreSQL.
    pub async fn to_postgres() -> Proxy {
        Proxy::start(POSTGRES_ADDR.parse().expect("an address")).await
    }

    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, _) = watch::channel(0u64);
        let cuts = cut.clone();
        let refusing = Arc::new(AtomicBool::new(false));
        let refuse = refusing.clone();
        let (paused, _) = watch::channel(false);
        let pauses = paused.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut cut_rx = cuts.subscribe();
                let (up_paused, down_paused) = (pauses.subscribe(), pauses.subscribe());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_service, to_service) = outbound.into_split();
                    tokio::select! {
                        _ = pump(from_client, to_service, up_paused) => {}
                        _ = pump(from_service, to_client, down_paused) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            refusing,
            paused,
        }
    }

    /// Bytes stop flowing both ways (connections stay open): a service that hangs.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Bytes flow again, the held ones first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// The service goes away: open connections are cut and new ones refused.
    pub fn go_down(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// The service is back.
    pub fn come_back(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    /// Closes every connection open through the proxy.
    pub fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// `postgres://…` through this proxy.
    pub fn postgres_url(&self, database: &str) -> String {
        format!("postgres://postgres@{}/{database}", self.addr)
    }

    /// `host:port` of the proxy, as flyhook names a broker node it is on.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// `amqp://…` through this proxy.
    pub fn amqp_url(&self) -> String {
        amqp_url_at(&self.addr.to_string())
    }
}

/// Copies one direction of a proxied connection, holding bytes while the proxy is paused.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut paused: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|paused| !paused).await.is_err()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
}
