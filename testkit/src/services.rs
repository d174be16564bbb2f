//! Where the shared local services are (RabbitMQ in the tests' virtual host, PostgreSQL), and
//! the names and ports a deployment takes beside them without meeting another's.

/// The local PostgreSQL, as its superuser (trust authentication), without a database.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// The local PostgreSQL's address.
pub const POSTGRES_ADDR: &str = "127.0.0.1:5432";

/// The local RabbitMQ's address.
pub const RABBITMQ_ADDR: &str = "127.0.0.1:5672";

/// The local RabbitMQ at `host`, in the virtual host the tests use: `FLYHOOK_TEST_VHOST` when set
/// (`scripts/test` makes a fresh one per run and deletes it after, so queues a killed run left
/// behind never slow the next), else the default one.
pub fn amqp_url_at(host: &str) -> String {
    let vhost = std::env::var("FLYHOOK_TEST_VHOST").unwrap_or_else(|_| "%2f".into());
    format!("amqp://guest:guest@{host}/{vhost}")
}

/// The local RabbitMQ.
pub fn amqp_url() -> String {
    amqp_url_at(RABBITMQ_ADDR)
}

/// `database` on the local PostgreSQL.
pub fn postgres_url(database: &str) -> String {
    format!("{POSTGRES}/{database}")
}

/// A port nothing listens on (bound, then released): for a service to listen on, or for a
/// dependency that is not there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `{kind}-` and 16 random hex digits: a name no other deployment has (a queue prefix; with
/// `_` for `-`, a database).
pub fn unique(kind: &str) -> String {
    format!(
        "{kind}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}
