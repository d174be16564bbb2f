//! One error type for every way a Flyte call can fail, classified so callers know what to do:
//! retry later, give up, or treat the run as already started (FLYTE_API.md §2.3).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

/// What a caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: try again later, with backoff.
    Retry,
    /// Retrying the same request cannot succeed.
    Permanent,
    /// `CreateRun` found a run with our name: the work was already started.
    AlreadyExists,
}

impl Code {
    pub const ALL: [Code; 16] = [
        Code::Canceled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code's name on the wire (`"not_found"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    pub fn parse(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The HTTP status a Connect server answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Canceled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        }
    }

    /// The code for an answer that is not a Connect error body (a proxy's HTML 502, say),
    /// mapped as connect-python does.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The default handling of each code. `not_found` is permanent here; a caller that just
    /// created the run it is looking up may choose to retry it briefly.
    pub fn disposition(self) -> Disposition {
        match self {
            Code::AlreadyExists => Disposition::AlreadyExists,
            Code::Canceled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unavailable
            // The client already refreshed its token once; another try later may find the
            // identity provider or its clock fixed.
            | Code::Unauthenticated => Disposition::Retry,
            Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::DataLoss => Disposition::Permanent,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Flyte call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Flyte {rpc} failed: {code}: {message}")]
pub struct FlyteError {
    /// The RPC that failed (`RunService/CreateRun`).
    pub rpc: &'static str,
    pub code: Code,
    pub message: String,
    /// How long the server asked us to wait (`Retry-After`), if it said.
    pub retry_after: Option<Duration>,
}

impl FlyteError {
    pub fn new(rpc: &'static str, code: Code, message: impl Into<String>) -> Self {
        FlyteError {
            rpc,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn disposition(&self) -> Disposition {
        self.code.disposition()
    }

    pub fn is_retryable(&self) -> bool {
        self.disposition() == Disposition::Retry
    }

    /// Builds the error for a non-200 answer from its status, headers and body.
    pub(crate) fn from_response(
        rpc: &'static str,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        #[derive(Deserialize)]
        struct ConnectError {
            code: String,
            #[serde(default)]
            message: String,
        }
        let (code, message) = match serde_json::from_slice::<ConnectError>(body) {
            Ok(e) => match Code::parse(&e.code) {
                Some(code) => (code, e.message),
                None => (Code::from_http_status(status), e.message),
            },
            Err(_) => {
                let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
                (
                    Code::from_http_status(status),
                    format!("HTTP {status} without a Connect error body: {snippet}"),
                )
            }
        };
        FlyteError {
            rpc,
            code,
            message,
            retry_after,
        }
    }

    /// Maps a transport failure (connect refused, timeout, broken body) to a code.
    pub(crate) fn from_transport(rpc: &'static str, err: &reqwest::Error) -> Self {
        let code = if err.is_timeout() {
            Code::DeadlineExceeded
        } else {
            Code::Unavailable
        };
        // reqwest's Display names the URL and the cause, never headers: no secrets leak.
        FlyteError::new(rpc, code, format!("{err:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_name() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::parse("teapot"), None);
    }

    #[test]
    fn classification_follows_the_flyte_api_table() {
        use Disposition::*;
        let expected = [
            (Code::Canceled, Retry),
            (Code::Unknown, Retry),
            (Code::InvalidArgument, Permanent),
            (Code::DeadlineExceeded, Retry),
            (Code::NotFound, Permanent),
            (Code::AlreadyExists, AlreadyExists),
            (Code::PermissionDenied, Permanent),
            (Code::ResourceExhausted, Retry),
            (Code::FailedPrecondition, Permanent),
            (Code::Aborted, Retry),
            (Code::OutOfRange, Permanent),
            (Code::Unimplemented, Permanent),
            (Code::Internal, Retry),
            (Code::Unavailable, Retry),
            (Code::DataLoss, Permanent),
            (Code::Unauthenticated, Retry),
        ];
        assert_eq!(expected.len(), Code::ALL.len());
        for (code, disposition) in expected {
            assert_eq!(code.disposition(), disposition, "{code}");
        }
    }

    #[test]
    fn connect_bodies_give_their_code_and_message() {
        let e = FlyteError::from_response(
            "RunService/CreateRun",
            404,
            None,
            br#"{"code":"not_found","message":"project \"x\" not found"}"#,
        );
        assert_eq!(e.code, Code::NotFound);
        assert_eq!(e.message, "project \"x\" not found");
    }

    #[test]
    fn non_connect_answers_are_classified_by_status() {
        for (status, code) in [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
        ] {
            let e = FlyteError::from_response(
                "RunService/CreateRun",
                status,
                None,
                b"<html><body>Bad Gateway</body></html>",
            );
            assert_eq!(e.code, code, "status {status}");
            assert!(e.message.contains("without a Connect error body"));
        }
    }
}
