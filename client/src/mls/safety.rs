//! Safety numbers: what two people compare (read aloud, or side by side) to know that each holds
//! the other's real identity key.
//!
//! Each user's half is 30 digits derived from their identity key and user id; the safety number
//! of a pair is both halves, the half of the user with the smaller id (its 16 bytes compared as
//! an unsigned big-endian number) first: 60 digits, shown as twelve groups of five. Both people
//! see the same number; a different number means one of them is not talking to the other's key.
//!
//! A half: `h = SHA-512(0x00 0x00 || identity_key || user_id)`, then 5,199 more rounds of
//! `h = SHA-512(h || identity_key)` (the iteration makes a targeted collision search costly), then
//! the first 30 bytes of `h` in six 5-byte chunks, each read as a big-endian integer modulo
//! 100,000 and written as five decimal digits.

use sha2::{Digest, Sha512};
use uuid::Uuid;

use super::identity::IdentityPublicKey;

/// Rounds of SHA-512 per half.
pub const ITERATIONS: usize = 5200;
/// The layout version hashed first.
const VERSION: [u8; 2] = [0, 0];

/// One user's 30 digits.
pub fn fingerprint(user_id: Uuid, key: &IdentityPublicKey) -> String {
    let mut hash = Sha512::new().chain_update(VERSION).chain_update(key.0).chain_update(user_id.as_bytes()).finalize();
    for _ in 1..ITERATIONS {
        hash = Sha512::new().chain_update(hash).chain_update(key.0).finalize();
    }
    hash[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

/// The safety number of two users: 60 digits, the smaller user id's half first.
pub fn safety_number(a: (Uuid, &IdentityPublicKey), b: (Uuid, &IdentityPublicKey)) -> String {
    let (first, second) = if a.0.as_bytes() <= b.0.as_bytes() { (a, b) } else { (b, a) };
    format!("{}{}", fingerprint(first.0, first.1), fingerprint(second.0, second.1))
}

/// A safety number in twelve groups of five digits, as the CLI prints it.
pub fn display(number: &str) -> String {
    number.as_bytes().chunks(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}
