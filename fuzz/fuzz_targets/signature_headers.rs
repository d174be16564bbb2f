//! Arbitrary headers and bodies through every signature scheme: any verdict is fine, a panic
//! is not. The input is split into header lines (`name: value`) and a body at the first empty
//! line; a known secret is used so that well-formed inputs also reach the comparison.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use webhook_signatures::{Scheme, UnixMillis};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let secrets = [
        SecretString::from("whsec_c2VjcmV0"),
        SecretString::from("s3cret"),
    ];
    for scheme in &Scheme::one_of_each() {
        let _ = scheme.verify(
            &secrets,
            headers.as_slice(),
            body.as_bytes(),
            UnixMillis::from_secs(1_800_000_000),
            300,
        );
    }
});
