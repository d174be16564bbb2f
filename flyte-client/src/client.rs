//! The Flyte 2 client: unary Connect calls as JSON POSTs, with auth, a deadline on every call,
//! typed errors, idempotent run creation and a cache of task interfaces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{ApiKey, ApiKeyError, Authenticator, FlyteAuth};
use crate::error::{Code, FlyteError};
use crate::messages::*;
use crate::run_name::RunName;

/// One Connect RPC: its path on the server and a short name for errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpc {
    /// `flyteidl2.workflow.RunService/CreateRun`
    pub path: &'static str,
}

impl Rpc {
    /// `RunService/CreateRun`: the path without its proto package.
    pub fn name(&self) -> &'static str {
        let service_start = self.path[..self.path.find('/').unwrap_or(0)]
            .rfind('.')
            .map_or(0, |dot| dot + 1);
        &self.path[service_start..]
    }
}

pub const GET_TASK_DETAILS: Rpc = Rpc {
    path: "flyteidl2.task.TaskService/GetTaskDetails",
};
pub const CREATE_RUN: Rpc = Rpc {
    path: "flyteidl2.workflow.RunService/CreateRun",
};
pub const GET_RUN_DETAILS: Rpc = Rpc {
    path: "flyteidl2.workflow.RunService/GetRunDetails",
};
pub const ABORT_RUN: Rpc = Rpc {
    path: "flyteidl2.workflow.RunService/AbortRun",
};
pub const GET_ACTION_DATA: Rpc = Rpc {
    path: "flyteidl2.dataproxy.DataProxyService/GetActionData",
};
pub const GET_OAUTH2_METADATA: Rpc = Rpc {
    path: "flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata",
};
pub const GET_PUBLIC_CLIENT_CONFIG: Rpc = Rpc {
    path: "flyteidl2.auth.AuthMetadataService/GetPublicClientConfig",
};

/// Every RPC this client sends.
pub const ALL_RPCS: [Rpc; 7] = [
    GET_TASK_DETAILS,
    CREATE_RUN,
    GET_RUN_DETAILS,
    ABORT_RUN,
    GET_ACTION_DATA,
    GET_OAUTH2_METADATA,
    GET_PUBLIC_CLIENT_CONFIG,
];

/// Where Flyte is and how to talk to it.
#[derive(Debug, Clone)]
pub struct FlyteConfig {
    /// Base URL: `https://acme.hosted.unionai.cloud`, `http://localhost:8090`.
    pub endpoint: String,
    /// The tenant on hosted Flyte; empty for open-source Flyte, which ignores it.
    pub org: String,
    pub auth: FlyteAuth,
    /// Base of run links; derived from the endpoint when not set.
    pub console_url: Option<String>,
    /// Bound on every call, connection included.
    pub timeout: Duration,
    /// How long a task's interface is trusted before it is fetched again.
    pub task_cache_ttl: Duration,
}

impl FlyteConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        FlyteConfig {
            endpoint: endpoint.into(),
            org: String::new(),
            auth: FlyteAuth::None,
            console_url: None,
            timeout: Duration::from_secs(10),
            task_cache_ttl: Duration::from_secs(300),
        }
    }

    /// Endpoint, org and credentials from a Flyte 2 API key.
    pub fn from_api_key(encoded: &str) -> Result<Self, ApiKeyError> {
        let key = ApiKey::parse(encoded)?;
        let mut config = FlyteConfig::new(key.endpoint());
        config.org = key.org().unwrap_or_default().to_string();
        config.auth = key.into_auth();
        Ok(config)
    }
}

/// A run that exists in Flyte after [`FlyteClient::create_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct StartedRun {
    pub id: RunId,
    pub status: ActionStatus,
    /// Flyte answered `already_exists`: an earlier attempt created it.
    pub already_existed: bool,
}

/// Told of every RPC the client makes (after a token refresh, the retried call is one call):
/// how metrics see Flyte without this crate knowing of any metrics library.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// `rpc` is a short name (`RunService/CreateRun`); `error` the code when the call failed.
    fn observe(&self, rpc: &'static str, elapsed: Duration, error: Option<Code>);
}

/// A cheap-to-clone handle on one Flyte deployment.
#[derive(Debug, Clone)]
pub struct FlyteClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    observer: Option<Arc<dyn CallObserver>>,
    transport: Transport,
    org: String,
    console_url: String,
    auth: Authenticator,
    task_cache_ttl: Duration,
    task_cache: Mutex<HashMap<TaskId, (Instant, Arc<TaskSpec>)>>,
}

/// Sends one JSON request and reads one JSON answer.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl Transport {
    pub(crate) async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        request: &Req,
        auth: Option<(HeaderName, HeaderValue)>,
    ) -> Result<Resp, FlyteError> {
        let mut builder = self
            .http
            .post(format!("{}/{}", self.base, rpc.path))
            .header(CONTENT_TYPE, "application/json")
            .header("connect-protocol-version", "1")
            .header("connect-timeout-ms", self.timeout.as_millis().to_string())
            .json(request);
        if let Some((name, value)) = auth {
            builder = builder.header(name, value);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| FlyteError::from_transport(rpc.name(), &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| FlyteError::from_transport(rpc.name(), &e))?;
        if !status.is_success() {
            return Err(FlyteError::from_response(
                rpc.name(),
                status.as_u16(),
                retry_after,
                &body,
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            FlyteError::new(
                rpc.name(),
                Code::Internal,
                format!("unreadable response: {e}"),
            )
        })
    }
}

impl FlyteClient {
    pub fn new(config: FlyteConfig) -> Result<Self, FlyteError> {
        FlyteClient::build(config, None)
    }

    /// A client that tells `observer` of every call.
    pub fn observed(
        config: FlyteConfig,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, FlyteError> {
        FlyteClient::build(config, Some(observer))
    }

    fn build(
        config: FlyteConfig,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, FlyteError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| FlyteError::new("client", Code::Internal, format!("HTTP client: {e}")))?;
        let base = config.endpoint.trim_end_matches('/').to_string();
        let console_url = config
            .console_url
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| console_from_endpoint(&base));
        Ok(FlyteClient {
            inner: Arc::new(Inner {
                observer,
                transport: Transport {
                    http,
                    base,
                    timeout: config.timeout,
                },
                org: config.org,
                console_url,
                auth: Authenticator::new(config.auth),
                task_cache_ttl: config.task_cache_ttl,
                task_cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn org(&self) -> &str {
        &self.inner.org
    }

    pub fn endpoint(&self) -> &str {
        &self.inner.transport.base
    }

    /// The id of the run `name` in `project`/`domain` of this client's org.
    pub fn run_id(&self, project: &str, domain: &str, name: &RunName) -> RunId {
        RunId {
            org: self.inner.org.clone(),
            project: project.into(),
            domain: domain.into(),
            name: name.as_ref().into(),
        }
    }

    /// The id of a deployed task in this client's org.
    pub fn task_id(&self, project: &str, domain: &str, name: &str, version: &str) -> TaskId {
        TaskId {
            org: self.inner.org.clone(),
            project: project.into(),
            domain: domain.into(),
            name: name.into(),
            version: version.into(),
        }
    }

    /// The console page of a run, as the Flyte SDK builds it.
    pub fn run_url(&self, run: &RunId) -> String {
        format!(
            "{}/v2/domain/{}/project/{}/runs/{}",
            self.inner.console_url, run.domain, run.project, run.name
        )
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        request: &Req,
    ) -> Result<Resp, FlyteError> {
        let started = Instant::now();
        let result = self.call_unobserved(rpc, request).await;
        if let Some(observer) = &self.inner.observer {
            let error = result.as_ref().err().map(|e| e.code);
            observer.observe(rpc.name(), started.elapsed(), error);
        }
        result
    }

    async fn call_unobserved<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        request: &Req,
    ) -> Result<Resp, FlyteError> {
        let inner = &self.inner;
        let header = inner.auth.header(&inner.transport).await?;
        match inner.transport.post(rpc, request, header).await {
            // A token can be revoked or expire early: fetch a new one and try once more.
            Err(e) if e.code == Code::Unauthenticated && inner.auth.invalidate().await => {
                tracing::debug!(rpc = rpc.name(), "token refused; refreshing once");
                let header = inner.auth.header(&inner.transport).await?;
                inner.transport.post(rpc, request, header).await
            }
            result => result,
        }
    }

    /// A task's spec (interface and defaults), from the cache when fresh.
    pub async fn task_spec(&self, task: &TaskId) -> Result<Arc<TaskSpec>, FlyteError> {
        if let Some(spec) = self.cached_task_spec(task) {
            return Ok(spec);
        }
        let details = self.get_task_details(task).await?;
        let spec = Arc::new(details.spec);
        self.lock_task_cache()
            .insert(task.clone(), (Instant::now(), spec.clone()));
        Ok(spec)
    }

    /// The cached spec of `task`, if it was fetched within the TTL.
    pub fn cached_task_spec(&self, task: &TaskId) -> Option<Arc<TaskSpec>> {
        let cache = self.lock_task_cache();
        let (fetched, spec) = cache.get(task)?;
        (fetched.elapsed() < self.inner.task_cache_ttl).then(|| spec.clone())
    }

    fn lock_task_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TaskId, (Instant, Arc<TaskSpec>)>> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.inner
            .task_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn get_task_details(&self, task: &TaskId) -> Result<TaskDetails, FlyteError> {
        let response: GetTaskDetailsResponse = self
            .call(
                GET_TASK_DETAILS,
                &GetTaskDetailsRequest {
                    task_id: task.clone(),
                },
            )
            .await?;
        Ok(response.details)
    }

    /// Creates the run, or finds it if it already exists: a caller that derives `run_id` from
    /// its own idempotency key can call this any number of times and start one run.
    ///
    /// Hosted Flyte answers a reused name with `already_exists`; open-source Flyte returns the
    /// existing run as if it had just been created. Both yield that run.
    pub async fn create_run(&self, request: &CreateRunRequest) -> Result<StartedRun, FlyteError> {
        match self.call::<_, CreateRunResponse>(CREATE_RUN, request).await {
            Ok(response) => Ok(StartedRun {
                id: request.run_id.clone(),
                status: response.run.action.status,
                already_existed: false,
            }),
            Err(e) if e.code == Code::AlreadyExists => {
                let details = self.get_run_details(&request.run_id).await?;
                Ok(StartedRun {
                    id: request.run_id.clone(),
                    status: details.action.status,
                    already_existed: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    pub async fn get_run_details(&self, run: &RunId) -> Result<RunDetails, FlyteError> {
        let response: GetRunDetailsResponse = self
            .call(
                GET_RUN_DETAILS,
                &GetRunDetailsRequest {
                    run_id: run.clone(),
                },
            )
            .await?;
        Ok(response.details)
    }

    /// Asks Flyte to abort the run. `not_found` is returned as an error: the caller knows
    /// whether that means "nothing to abort" or "wrong run".
    pub async fn abort_run(&self, run: &RunId, reason: &str) -> Result<(), FlyteError> {
        let _: AbortRunResponse = self
            .call(
                ABORT_RUN,
                &AbortRunRequest {
                    run_id: run.clone(),
                    reason: Some(reason.to_string()),
                },
            )
            .await?;
        Ok(())
    }

    /// The outputs of the run's root action; empty until it succeeded.
    pub async fn get_outputs(&self, run: &RunId) -> Result<Outputs, FlyteError> {
        let response: GetActionDataResponse = self
            .call(
                GET_ACTION_DATA,
                &GetActionDataRequest {
                    action_id: run.root_action(),
                },
            )
            .await?;
        Ok(response.outputs)
    }
}

/// `scheme://host[:port]` of the endpoint; the open-source API port 8090 maps to its console
/// on 8080, as in the Flyte SDK.
fn console_from_endpoint(base: &str) -> String {
    match base.strip_suffix("localhost:8090") {
        Some(prefix) => format!("{prefix}localhost:8080"),
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_drop_the_package() {
        assert_eq!(CREATE_RUN.name(), "RunService/CreateRun");
        assert_eq!(GET_ACTION_DATA.name(), "DataProxyService/GetActionData");
    }

    #[test]
    fn run_urls_follow_the_console_layout() {
        let client = FlyteClient::new(FlyteConfig::new("http://localhost:8090/")).unwrap();
        let run = client.run_id(
            "flytesnacks",
            "development",
            &RunName::parse("wh-abc").unwrap(),
        );
        assert_eq!(
            client.run_url(&run),
            "http://localhost:8080/v2/domain/development/project/flytesnacks/runs/wh-abc"
        );
        let mut config = FlyteConfig::new("https://acme.example");
        config.console_url = Some("https://console.acme.example/".into());
        let client = FlyteClient::new(config).unwrap();
        assert_eq!(
            client.run_url(&run),
            "https://console.acme.example/v2/domain/development/project/flytesnacks/runs/wh-abc"
        );
    }
}
