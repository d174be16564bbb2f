//! The official Flyte 2 schema, embedded, and the strict check every request goes through.
//!
//! A real Flyte server silently drops JSON fields it does not know (connect-go unmarshals with
//! `DiscardUnknown`), so a misspelt field would vanish without an error in production. The
//! stand-in is stricter than Flyte on purpose: an unknown field, a wrong type, a bad enum name
//! or two members of one `oneof` is an `invalid_argument` naming the problem.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};

const FLYTEIDL2: &[u8] = include_bytes!("../schema/flyteidl2-2.0.53.fds.bin");

/// The descriptor pool of `flyteidl2` 2.0.53.
#[derive(Debug)]
pub struct Schema {
    pool: DescriptorPool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("no RPC {0} in the flyteidl2 schema")]
    UnknownRpc(String),
    #[error("body does not match {message}: {problem}")]
    Mismatch { message: String, problem: String },
}

impl Schema {
    /// The embedded official schema, decoded once.
    pub fn official() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema {
            // The file is part of this crate; a test decodes it, so this cannot fail at runtime.
            pool: DescriptorPool::decode(FLYTEIDL2).expect("embedded flyteidl2 descriptor set"),
        })
    }

    fn method(&self, rpc_path: &str) -> Result<prost_reflect::MethodDescriptor, SchemaError> {
        let unknown = || SchemaError::UnknownRpc(rpc_path.to_string());
        let (service, method) = rpc_path.split_once('/').ok_or_else(unknown)?;
        self.pool
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .ok_or_else(unknown)
    }

    /// The request message of `rpc_path` (`flyteidl2.workflow.RunService/CreateRun`).
    pub fn request_type(&self, rpc_path: &str) -> Result<MessageDescriptor, SchemaError> {
        Ok(self.method(rpc_path)?.input())
    }

    /// The response message of `rpc_path`.
    pub fn response_type(&self, rpc_path: &str) -> Result<MessageDescriptor, SchemaError> {
        Ok(self.method(rpc_path)?.output())
    }

    /// Parses `body` as `message` in proto3 JSON, denying unknown fields and trailing bytes.
    pub fn check(&self, message: &MessageDescriptor, body: &[u8]) -> Result<(), SchemaError> {
        let mismatch = |problem: String| SchemaError::Mismatch {
            message: message.full_name().to_string(),
            problem,
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        DynamicMessage::deserialize_with_options(
            message.clone(),
            &mut de,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| mismatch(e.to_string()))?;
        de.end().map_err(|e| mismatch(e.to_string()))
    }

    pub fn check_request(&self, rpc_path: &str, body: &[u8]) -> Result<(), SchemaError> {
        self.check(&self.request_type(rpc_path)?, body)
    }

    pub fn check_response(&self, rpc_path: &str, body: &[u8]) -> Result<(), SchemaError> {
        self.check(&self.response_type(rpc_path)?, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_RUN: &str = "flyteidl2.workflow.RunService/CreateRun";

    #[test]
    fn the_embedded_schema_knows_every_rpc_the_client_sends() {
        for rpc in flyte_client::client::ALL_RPCS {
            Schema::official().request_type(rpc.path).unwrap();
        }
        assert!(matches!(
            Schema::official().request_type("flyteidl2.workflow.RunService/Nope"),
            Err(SchemaError::UnknownRpc(_))
        ));
    }

    #[test]
    fn conforming_bodies_pass_and_every_kind_of_mistake_is_named() {
        let schema = Schema::official();
        let good = br#"{"runId":{"project":"p","domain":"d","name":"wh-1"},"taskId":{"project":"p","domain":"d","name":"t","version":"v1"},"inputs":{"literals":[{"name":"x","value":{"scalar":{"primitive":{"integer":"3"}}}}]}}"#;
        schema.check_request(CREATE_RUN, good).unwrap();
        let bad: [(&str, &str); 6] = [
            (r#"{"runID":{}}"#, "runID"),
            (
                r#"{"inputs":{"literals":[{"name":"x","value":{"scalar":{"primitive":{"string_val":"a"}}}}]}}"#,
                "string_val",
            ),
            (
                r#"{"inputs":{"literals":[{"name":"x","value":{"scalar":{"primitive":{"integer":"three"}}}}]}}"#,
                "invalid digit",
            ),
            (r#"{"source":"RUN_SOURCE_WEBHOOK"}"#, "RUN_SOURCE_WEBHOOK"),
            (
                r#"{"runId":{"name":"a"},"projectId":{"name":"p"}}"#,
                "multiple fields provided for oneof",
            ),
            (r#"{} trailing"#, "trailing"),
        ];
        for (body, expected) in bad {
            let err = schema
                .check_request(CREATE_RUN, body.as_bytes())
                .unwrap_err();
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
    }
}
