//! HTTP handlers: each translates a request into one domain call and its result into a
//! response, nothing more.

use crate::settings::IngressSettings;
use crate::sources::Sources;
use actix_web::{HttpRequest, web};

use crate::control::Control;
use crate::error::ApiError;
use crate::intake::Intake;

pub mod audit;
pub mod dispatches;
pub mod health;
pub mod hooks;
pub mod run_task;

/// A query string as parsed by actix, its failure as a problem naming the query.
pub fn parsed_query<T>(query: Result<web::Query<T>, actix_web::Error>) -> Result<T, ApiError> {
    query
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::InvalidQuery {
            field: "query",
            reason: e.to_string(),
        })
}

/// A page size from `?limit=`: `default` when absent, else within 1..=`max`.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidQuery {
            field: "limit",
            reason: format!("must be between 1 and {max}"),
        })
    }
}

/// Pages are read one row longer than asked, which tells whether there is a next page: drops
/// that row, and returns the last row kept when there is a next page (its cursor).
pub fn trim_page<T>(rows: &mut Vec<T>, limit: i64) -> Option<&T> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
    } else {
        None
    }
}

/// The application's services, extracted together by handlers that need several.
#[derive(Debug)]
pub struct Services {
    pub intake: web::Data<Intake>,
    pub control: web::Data<Control>,
    pub settings: web::Data<IngressSettings>,
    pub sources: web::Data<Sources>,
}

impl actix_web::FromRequest for Services {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Services, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let services = (|| {
            Some(Services {
                intake: req.app_data::<web::Data<Intake>>()?.clone(),
                control: req.app_data::<web::Data<Control>>()?.clone(),
                settings: req.app_data::<web::Data<IngressSettings>>()?.clone(),
                sources: req.app_data::<web::Data<Sources>>()?.clone(),
            })
        })();
        std::future::ready(
            services.ok_or_else(|| {
                ApiError::Unexpected(anyhow::anyhow!("services missing from app data"))
            }),
        )
    }
}
