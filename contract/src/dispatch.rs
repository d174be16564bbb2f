//! Dispatches: one accepted webhook meant to become one Flyte run.
//!
//! # Why dispatch ids carry a tag
//! The ingress must answer `GET /dispatches/{id}` with `queued` right after it answered `202`,
//! even when no worker has recorded anything yet, and even while PostgreSQL is down (intake does
//! not depend on it: the broker is the durable store of intake). So an id proves by itself that
//! this deployment issued it: 16 bytes of identity followed by a 4-byte HMAC tag over them,
//! keyed by `FLYHOOK_ID_SECRET`. An id with a valid tag and no record is `queued`; an id without
//! one was never issued and is a 404. No lookup, no shared state between ingress replicas.

use std::fmt;

use crate::callbacks::Callback;
use crate::flow::{ConcurrencyKey, DebounceKey};
use chrono::{DateTime, Utc};
use flyte_client::RunName;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const TAG_LEN: usize = 4;
/// Two hex digits for each byte of the UUID and of the tag.
const TEXT_LEN: usize = 2 * (16 + TAG_LEN);

/// A dispatch id: a UUID (v7 when flyhook chose it, so ids sort by time; v8 when derived from
/// the sender's idempotency key) and its issuer tag. Written as 40 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DispatchId {
    uuid: Uuid,
    tag: [u8; TAG_LEN],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dispatch id")]
pub struct NotADispatchId;

impl DispatchId {
    /// Reads the text form. This checks the shape only; [`IdIssuer::verify`] checks the tag.
    pub fn parse(text: &str) -> Result<DispatchId, NotADispatchId> {
        if text.len() != TEXT_LEN
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(NotADispatchId);
        }
        let uuid = Uuid::try_parse(&text[..32]).map_err(|_| NotADispatchId)?;
        let mut tag = [0u8; TAG_LEN];
        for (i, byte) in tag.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[32 + 2 * i..34 + 2 * i], 16)
                .map_err(|_| NotADispatchId)?;
        }
        Ok(DispatchId { uuid, tag })
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// A number spread evenly over ids that no sender can choose (it comes from the keyed
    /// tag, not from the idempotency key or delivery id a derived id starts from): what picks
    /// a dispatch's partition.
    pub fn spread(&self) -> u32 {
        u32::from_be_bytes(self.tag)
    }

    /// The Flyte run this dispatch starts: the same name for every attempt, so Flyte itself
    /// refuses a second run.
    pub fn run_name(&self) -> RunName {
        RunName::for_dispatch(self.uuid)
    }

    /// When flyhook issued the id, for ids it chose itself (UUIDv7).
    pub fn issued_at(&self) -> Option<DateTime<Utc>> {
        let (secs, nanos) = self.uuid.get_timestamp()?.to_unix();
        DateTime::from_timestamp(secs as i64, nanos)
    }
}

impl fmt::Display for DispatchId {
    /// Hex by table into one buffer: ids are written several times for every accepted
    /// request, and a formatter call per byte cost 4 % of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; TEXT_LEN];
        let bytes = self.uuid.as_bytes().iter().chain(&self.tag);
        for (pair, byte) in text.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for DispatchId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DispatchId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DispatchId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Issues and verifies dispatch ids. Every ingress replica of a deployment must share the secret.
#[derive(Clone)]
pub struct IdIssuer {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for IdIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdIssuer { .. }")
    }
}

impl IdIssuer {
    pub fn new(secret: &SecretString) -> IdIssuer {
        IdIssuer {
            // HMAC takes keys of any length.
            mac: Hmac::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC accepts any key length"),
        }
    }

    fn tag(&self, uuid: Uuid) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(uuid.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// A fresh, time-ordered id.
    pub fn issue(&self) -> DispatchId {
        self.for_uuid(Uuid::now_v7())
    }

    /// The id for a send the sender marked with an idempotency key: the same key from the same
    /// API key for the same task always gives the same id, so a retried send is the same dispatch.
    pub fn issue_for_idempotency_key(
        &self,
        api_key_name: &str,
        task: &TaskRef,
        idempotency_key: &str,
    ) -> DispatchId {
        self.derive(&[
            "flyhook/idempotency/v1",
            api_key_name,
            &task.project,
            &task.domain,
            &task.name,
            &task.version,
            idempotency_key,
        ])
    }

    /// The id for what a provider's delivery becomes on one route (`None`: on no route, it was
    /// ignored): the provider's retry of the delivery is the same dispatch.
    pub fn issue_for_delivery(
        &self,
        source: &str,
        route: Option<&str>,
        delivery_id: &str,
    ) -> DispatchId {
        self.derive(&[
            "flyhook/delivery/v1",
            source,
            route.unwrap_or("\0ignored"),
            delivery_id,
        ])
    }

    fn derive(&self, parts: &[&str]) -> DispatchId {
        let mut hasher = Sha256::new();
        for part in parts {
            // Length-prefixed, so no two different tuples hash the same bytes.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        self.for_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// The id this deployment gives `uuid`: how a run name, read back to its UUID, leads to
    /// its dispatch.
    pub fn for_uuid(&self, uuid: Uuid) -> DispatchId {
        DispatchId {
            uuid,
            tag: self.tag(uuid),
        }
    }

    /// Whether this deployment issued `id` (constant-time comparison of the tag).
    pub fn verify(&self, id: &DispatchId) -> bool {
        use subtle::ConstantTimeEq;
        self.tag(id.uuid).ct_eq(&id.tag).into()
    }
}

/// A deployed Flyte task, as named in `/run-task/{project}/{domain}/{name}/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawTaskRef")]
pub struct TaskRef {
    project: String,
    domain: String,
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct RawTaskRef {
    project: String,
    domain: String,
    name: String,
    version: String,
}

impl TryFrom<RawTaskRef> for TaskRef {
    type Error = InvalidTaskRef;
    fn try_from(raw: RawTaskRef) -> Result<Self, Self::Error> {
        TaskRef::parse(&raw.project, &raw.domain, &raw.name, &raw.version)
    }
}

/// Which path segment is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidTaskRef {
    pub field: &'static str,
    pub reason: String,
}

pub(crate) fn check_label(field: &'static str, value: &str) -> Result<(), InvalidTaskRef> {
    // Flyte projects and domains are DNS-1123 labels.
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    ok.then_some(()).ok_or_else(|| InvalidTaskRef {
        field,
        reason: "must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
            .into(),
    })
}

pub(crate) fn check_identifier(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), InvalidTaskRef> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    ok.then_some(()).ok_or_else(|| InvalidTaskRef {
        field,
        reason: format!("must be 1 to {max} letters, digits, '_', '.' or '-'"),
    })
}

impl TaskRef {
    /// `project/domain/name/version`, as configuration files write a task.
    pub fn parse_path(text: &str) -> anyhow::Result<TaskRef> {
        let parts: Vec<&str> = text.split('/').collect();
        let [project, domain, name, version] = parts[..] else {
            anyhow::bail!("task must be project/domain/name/version, not {text:?}");
        };
        Ok(TaskRef::parse(project, domain, name, version)?)
    }

    pub fn parse(
        project: &str,
        domain: &str,
        name: &str,
        version: &str,
    ) -> Result<TaskRef, InvalidTaskRef> {
        check_label("project", project)?;
        check_label("domain", domain)?;
        check_identifier("name", name, 255)?;
        check_identifier("version", version, 63)?;
        Ok(TaskRef {
            project: project.into(),
            domain: domain.into(),
            name: name.into(),
            version: version.into(),
        })
    }

    pub fn project(&self) -> &str {
        &self.project
    }
    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.project, self.domain, self.name, self.version
        )
    }
}

/// What the ingress publishes and the worker consumes. Versioned by its `type` tag, so a newer
/// ingress and an older worker can tell they disagree instead of misreading each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "one message at a time, decoded and dropped: boxing would only add an allocation"
)]
pub enum DispatchMessage {
    DispatchV1(Dispatch),
    IgnoredV1(Ignored),
    /// Every dispatch one provider delivery fanned out to, in one message, so the broker
    /// confirms them together or not at all (a provider that does not retry cannot lose one
    /// route while another was queued). A worker splits it into one `DispatchV1` each.
    DeliveryV1(Delivery),
    /// A signed event for a completion callback's destination, on the callback queue.
    CallbackV1(Callback),
}

/// The dispatches of one provider delivery that matched several routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub dispatches: Vec<Dispatch>,
}

impl DispatchMessage {
    /// The dispatch the message is about (the first of a delivery's).
    pub fn id(&self) -> Option<DispatchId> {
        match self {
            DispatchMessage::DispatchV1(d) => Some(d.id),
            DispatchMessage::IgnoredV1(i) => Some(i.id),
            DispatchMessage::DeliveryV1(d) => d.dispatches.first().map(|d| d.id),
            DispatchMessage::CallbackV1(c) => Some(c.dispatch),
        }
    }

    /// The id of the request that brought it.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            DispatchMessage::DispatchV1(d) => d.request_id.as_deref(),
            DispatchMessage::IgnoredV1(i) => i.request_id.as_deref(),
            DispatchMessage::DeliveryV1(d) => {
                d.dispatches.first().and_then(|d| d.request_id.as_deref())
            }
            DispatchMessage::CallbackV1(_) => None,
        }
    }
}

/// A verified provider delivery that no route wanted: recorded `ignored`, so it can be looked up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ignored {
    pub id: DispatchId,
    /// `source:<name>`.
    pub source: String,
    /// The key its dispatch id derives from (what the provider's signature covers).
    pub delivery_id: String,
    /// The provider's own id of the delivery, as echoed in the answer (absent from older
    /// ingresses): recorded, so the delivery can be found by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_delivery_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The id of the request that brought it (absent from older ingresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The completion callback's destination (the source's), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
}

/// One dispatch, everything the worker needs without asking anyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub id: DispatchId,
    pub task: TaskRef,
    /// The task inputs as the sender posted them.
    pub inputs: Map<String, Value>,
    pub received_at: DateTime<Utc>,
    /// The name of the API key that sent it (never the key).
    pub api_key: String,
    /// How many times it was retried after a transient failure (0 on the first delivery).
    #[serde(default)]
    pub retries: u32,
    /// The id of the request that brought it (absent from older ingresses), for the worker's
    /// logs and the Flyte run's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Sent again from the dead-letter queue (`flyhook dead-letters replay`): the first
    /// delivery may take it up again from `failed` or `dead_lettered` (the status store is not
    /// asked first: it may be down). Cleared on retries, so only that delivery reopens it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// Where a provider webhook's dispatch came from (absent for `POST /run-task` and from
    /// older ingresses): recorded, so the console filters by route and finds a delivery by
    /// the provider's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryOrigin>,
    /// The destination told when it ends (`[[callbacks]]` name), chosen at intake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    /// The concurrency key it holds a slot under while in flight, from its policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyKey>,
    /// The burst it belongs to: one run per burst, from its policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<DebounceKey>,
}

/// The route a provider delivery took and the provider's delivery id (as echoed in the `202`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOrigin {
    pub route: String,
    pub delivery_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str) -> IdIssuer {
        IdIssuer::new(&SecretString::from(secret.to_string()))
    }

    fn task() -> TaskRef {
        TaskRef::parse("flytesnacks", "development", "hello.main", "v1").unwrap()
    }

    #[test]
    fn issued_ids_round_trip_and_verify_only_with_their_secret() {
        let ours = issuer("s1");
        let id = ours.issue();
        let text = id.to_string();
        assert_eq!(text, format!("{}{:08x}", id.uuid().simple(), id.spread()));
        let parsed = DispatchId::parse(&text).unwrap();
        assert_eq!(parsed, id);
        assert!(ours.verify(&parsed));
        assert!(!issuer("s2").verify(&parsed));
        assert!(id.issued_at().is_some());
    }

    #[test]
    fn a_changed_id_no_longer_verifies() {
        let ours = issuer("s1");
        let text = ours.issue().to_string();
        let mut bytes = text.into_bytes();
        bytes[5] = if bytes[5] == b'0' { b'1' } else { b'0' };
        let forged = DispatchId::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert!(!ours.verify(&forged));
    }

    #[test]
    fn idempotency_keys_give_stable_ids_scoped_to_key_and_task() {
        let ours = issuer("s1");
        let a = ours.issue_for_idempotency_key("ci", &task(), "delivery-1");
        assert_eq!(
            a,
            ours.issue_for_idempotency_key("ci", &task(), "delivery-1")
        );
        assert!(ours.verify(&a));
        assert_ne!(
            a,
            ours.issue_for_idempotency_key("other-key", &task(), "delivery-1")
        );
        assert_ne!(
            a,
            ours.issue_for_idempotency_key("ci", &task(), "delivery-2")
        );
        let other_task = TaskRef::parse("flytesnacks", "development", "hello.main", "v2").unwrap();
        assert_ne!(
            a,
            ours.issue_for_idempotency_key("ci", &other_task, "delivery-1")
        );
        assert_eq!(a.run_name(), a.run_name());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "xyz", &"g".repeat(40), &"A".repeat(40), &"0".repeat(39)] {
            assert_eq!(DispatchId::parse(bad), Err(NotADispatchId), "{bad}");
        }
    }

    #[test]
    fn task_refs_name_the_bad_segment() {
        assert!(TaskRef::parse("p", "d", "my_task.main", "v1.2-rc").is_ok());
        assert_eq!(
            TaskRef::parse("P", "d", "n", "v").unwrap_err().field,
            "project"
        );
        assert_eq!(
            TaskRef::parse("p", "-d", "n", "v").unwrap_err().field,
            "domain"
        );
        assert_eq!(
            TaskRef::parse("p", "d", "n/../x", "v").unwrap_err().field,
            "name"
        );
        assert_eq!(
            TaskRef::parse("p", "d", "n", &"v".repeat(64))
                .unwrap_err()
                .field,
            "version"
        );
        assert_eq!(
            TaskRef::parse("p", "d", "n", "").unwrap_err().field,
            "version"
        );
    }

    #[test]
    fn messages_refuse_invalid_task_refs() {
        let json = serde_json::json!({"project": "P!", "domain": "d", "name": "n", "version": "v"});
        assert!(serde_json::from_value::<TaskRef>(json).is_err());
    }
}
