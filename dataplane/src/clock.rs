//! The wall clock as tokens, device proofs, TOTP steps, rate-limit windows and webhook signatures
//! count it: one reading for all of them.

/// Seconds since the Unix epoch; 0 for a clock set before it (which every check then treats as
/// far in the past).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
