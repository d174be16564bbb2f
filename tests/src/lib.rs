//! The end-to-end tests' own helper beside the test kit (`flyhook-testkit`, which holds
//! everything the tests, the CLI tests, the fault suite and the benchmarks share): the
//! reference checkers flyhook's output is held to, the Prometheus project's OpenMetrics parser
//! and openapi-spec-validator, run in Python.

use std::collections::HashMap;

/// The reference checkers, in Python: the Prometheus project's own OpenMetrics parser
/// (`prometheus_client`) and `openapi-spec-validator`. `scripts/test` installs them (pinned in
/// `tests/reference-checkers.txt`) in `target/test-venv` and names its interpreter in
/// `FLYHOOK_TEST_PYTHON`.
fn reference_python() -> String {
    std::env::var("FLYHOOK_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-venv/bin/python"
        );
        assert!(
            std::path::Path::new(venv).exists(),
            "no reference checkers: run scripts/test, or set FLYHOOK_TEST_PYTHON to a Python with \
             the packages of tests/reference-checkers.txt"
        );
        venv.to_string()
    })
}

/// Runs `script` with `input` on stdin; its stdout, or its stderr as the error.
async fn run_python(script: &'static str, input: String) -> Result<String, String> {
    let python = reference_python();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {python}: {e}"))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    })
    .await
    .expect("the checker's thread")
}

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct MetricSample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// Parses an OpenMetrics exposition with the Prometheus project's parser (strict: it refuses
/// anything the format does not allow).
pub async fn parse_openmetrics(text: &str) -> Result<Vec<MetricSample>, String> {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        samples = [{'name': s.name, 'labels': s.labels, 'value': s.value}\n\
                   for family in text_string_to_metric_families(sys.stdin.read())\n\
                   for s in family.samples]\n\
        print(json.dumps(samples))\n";
    let json = run_python(SCRIPT, text.to_string()).await?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

/// Validates an OpenAPI document with openapi-spec-validator (3.1 documents against the 3.1
/// schema).
pub async fn validate_openapi(document: &str) -> Result<(), String> {
    const SCRIPT: &str = "import sys, json\n\
        from openapi_spec_validator import validate\n\
        validate(json.load(sys.stdin))\n";
    run_python(SCRIPT, document.to_string()).await.map(drop)
}
