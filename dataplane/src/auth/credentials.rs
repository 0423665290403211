//! Emails and passwords, parsed at the boundary, and argon2id hashing off the async runtime.

use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// A syntactically valid, normalised (trimmed, lower-case) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> ApiResult<Self> {
        let email = raw.trim().to_lowercase();
        let invalid = |why: &'static str| ApiError::validation("email", why);
        if email.is_empty() {
            return Err(invalid("is required"));
        }
        if email.len() > 254 {
            return Err(invalid("is longer than 254 characters"));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(invalid("is not an email address"));
        };
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != ',');
        if !domain_ok || !local_ok {
            return Err(invalid("is not an email address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

/// A password that meets the policy. The value is only ever hashed.
pub struct Password(String);

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 cost grows with input; this bounds it while allowing any passphrase a person types.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// A few of the most common passwords that still satisfy the length rule.
const COMMON: &[&str] = &[
    "password1234",
    "123456789012",
    "qwertyuiopas",
    "passwordpassword",
    "iloveyou1234",
    "letmeinplease",
    "administrator",
    "welcome12345",
    "changemeplease",
    "1234567890ab",
];

impl Password {
    /// Checks the policy (NIST SP 800-63B style: length over composition rules, no known-bad
    /// values, nothing derived from the account), naming the rule that failed.
    pub fn parse(raw: String, email: Option<&Email>) -> ApiResult<Self> {
        let weak = |rule: &'static str, message: String| {
            ApiError::new(ErrorCode::WeakPassword, message)
                .with_details(ErrorDetails::WeakPassword { rule: rule.into(), min_length: MIN_PASSWORD_CHARS })
        };
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(weak("too_short", format!("the password must have at least {MIN_PASSWORD_CHARS} characters")));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(weak("too_long", format!("the password must be at most {MAX_PASSWORD_BYTES} bytes")));
        }
        let lower = raw.to_lowercase();
        let distinct = {
            let mut c: Vec<char> = lower.chars().collect();
            c.sort_unstable();
            c.dedup();
            c.len()
        };
        if distinct < 5 {
            return Err(weak("too_repetitive", "the password repeats too few different characters".to_owned()));
        }
        if COMMON.contains(&lower.as_str()) {
            return Err(weak("too_common", "the password is one of the most common passwords".to_owned()));
        }
        if let Some(email) = email {
            let local = email.as_str().split('@').next().unwrap_or_default();
            if lower.contains(email.as_str()) || (local.len() >= 4 && lower.contains(local)) {
                return Err(weak("contains_email", "the password must not contain the email address".to_owned()));
            }
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn hasher() -> Argon2<'static> {
    #[allow(clippy::expect_used)]
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes on the blocking pool: argon2 is deliberately slow and would stall the runtime.
pub async fn hash_password(password: &Password) -> ApiResult<String> {
    let secret = password.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        hasher().hash_password(secret.as_bytes()).map(|h| h.to_string()).map_err(|e| {
            tracing::error!(error = %e, "hashing a password failed");
            ApiError::internal()
        })
    })
    .await?
}

/// A hash of a random password, compared against when an account does not exist so a login for
/// an unknown email costs the same time as one with a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random = crate::tokens::random_bytes::<24>();
        hasher().hash_password(&random).map(|h| h.to_string()).unwrap_or_default()
    })
}

pub async fn verify_password(candidate: &str, stored_hash: &str) -> ApiResult<bool> {
    verify_password_or_decoy(candidate, Some(stored_hash)).await
}

/// Verifies against `stored_hash`, or against the [`decoy_hash`] when there is none (an unknown
/// account): the same work either way, all of it (the decoy's first hashing too) off the runtime.
pub async fn verify_password_or_decoy(candidate: &str, stored_hash: Option<&str>) -> ApiResult<bool> {
    let candidate = candidate.to_owned();
    let stored = stored_hash.map(str::to_owned);
    Ok(tokio::task::spawn_blocking(move || {
        let stored = match &stored {
            Some(hash) => hash.as_str(),
            None => decoy_hash(),
        };
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        hasher().verify_password(candidate.as_bytes(), &parsed).is_ok()
    })
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(err: ApiError) -> (&'static str, String) {
        let rule = match err.details {
            Some(ErrorDetails::WeakPassword { rule, .. }) => rule.into_owned(),
            _ => String::new(),
        };
        (err.code.as_str(), rule)
    }

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(Email::parse("  Alice@Example.ORG ").expect("valid").as_str(), "alice@example.org");
        for bad in ["", "alice", "alice@", "@example.org", "alice@example", "a b@example.org", "alice@exa_mple.org"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Email::parse("bob@mail.example.org").expect("valid").domain(), "mail.example.org");
    }

    #[test]
    fn the_password_policy_names_the_rule_that_failed() {
        let email = Email::parse("alice.smith@example.org").expect("email");
        let rule = |p: &str| Password::parse(p.to_owned(), Some(&email)).err().map(code);
        assert_eq!(rule("short"), Some(("weak_password", "too_short".to_owned())));
        assert_eq!(rule("aaaaaaaaaaaaaaaa"), Some(("weak_password", "too_repetitive".to_owned())));
        assert_eq!(rule("Password1234"), Some(("weak_password", "too_common".to_owned())));
        assert_eq!(rule("my alice.smith secret"), Some(("weak_password", "contains_email".to_owned())));
        assert_eq!(rule(&"x1".repeat(200)), Some(("weak_password", "too_long".to_owned())));
        assert!(rule("correct horse battery staple").is_none());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let password = Password::parse("correct horse battery staple".to_owned(), None).expect("policy");
        let hash = hash_password(&password).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse battery staple", &hash).await.expect("verify"));
        assert!(!verify_password("wrong horse battery staple", &hash).await.expect("verify"));
        assert!(!verify_password("anything", "not a phc string").await.expect("verify"));
    }

    #[tokio::test]
    async fn the_decoy_is_a_real_argon2id_hash_so_unknown_accounts_cost_a_verification() {
        // An empty or unparsable decoy would answer unknown emails faster than wrong passwords.
        assert!(decoy_hash().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", decoy_hash());
        assert!(!verify_password_or_decoy("correct horse battery staple", None).await.expect("verify"));
    }
}
