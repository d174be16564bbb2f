//! Why a status-store call failed, in the two kinds a caller must tell apart: the store is
//! unavailable (connection, timeout, serialization conflict, shutdown: the same call will
//! succeed later, so hold on and retry), or the data was refused (SQLSTATE classes 22, data
//! exceptions, 23, constraint violations, and 54, program limits such as an index entry too
//! large: retrying the same data can never succeed, so the one dispatch it belongs to ends
//! visibly and the rest go on).

/// What a failed store call means for the dispatch it was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// Retry later; nothing is wrong with the data.
    Unavailable,
    /// This data can never be stored as it is.
    Refused,
}

impl StoreFault {
    pub fn of(error: &sqlx::Error) -> StoreFault {
        match error {
            sqlx::Error::Database(db) => match db.code().as_deref().map(|code| &code[..2]) {
                Some("22" | "23" | "54") => StoreFault::Refused,
                _ => StoreFault::Unavailable,
            },
            // Our side could not encode the value: the same value never will.
            sqlx::Error::Encode(_) => StoreFault::Refused,
            _ => StoreFault::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_are_outages() {
        assert_eq!(
            StoreFault::of(&sqlx::Error::PoolTimedOut),
            StoreFault::Unavailable
        );
        assert_eq!(
            StoreFault::of(&sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into()
            )),
            StoreFault::Unavailable
        );
        assert_eq!(
            StoreFault::of(&sqlx::Error::Encode("bad".into())),
            StoreFault::Refused
        );
    }
}
