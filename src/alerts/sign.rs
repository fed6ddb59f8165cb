//! Request signatures, the scheme GitHub and Stripe use: with `secret_from_env`, each
//! request carries `X-Phalanx-Timestamp: <unix seconds>` and `X-Phalanx-Signature:
//! sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`. A receiver recomputes the HMAC with
//! the shared secret, compares in constant time, and refuses old timestamps (replays).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::config::Secret;

pub const TIMESTAMP_HEADER: &str = "X-Phalanx-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Phalanx-Signature";

/// The two headers for `body` sent at `timestamp` (Unix seconds).
pub fn headers(secret: &Secret, timestamp: i64, body: &[u8]) -> [(&'static str, String); 2] {
    [
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (
            SIGNATURE_HEADER,
            signature(secret.expose().as_bytes(), timestamp, body),
        ),
    ]
}

/// `sha256=<hex>` of `"<timestamp>.<body>"` under `key`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected value was computed apart, with Python's `hmac` module:
    /// `hmac.new(b"Jefe", b"1700000000.what do ya want for nothing?", "sha256")`.
    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?"),
            "sha256=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
    }
}
