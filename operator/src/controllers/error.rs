//! Why a reconcile failed, and how a failure is told apart: a real one, a write against a stale
//! copy of the object, or a request the API server turned away for load.

use crate::sync::SyncError;

/// Why a reconcile failed. The variants double as metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sync(#[from] SyncError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// Deletion waits for something else to go first (an Organization for its Workspaces).
    #[error("{0}")]
    Waiting(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// The API server's answer, when that is what failed (directly or in the finalizer's patch).
    fn api_status(&self) -> Option<&kube::core::Status> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Kube(kube::Error::Api(status)) => Some(status),
            Self::Finalizer(inner) => match &**inner {
                F::AddFinalizer(kube::Error::Api(status)) | F::RemoveFinalizer(kube::Error::Api(status)) => {
                    Some(status)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The write was made against a copy of the object older than the API server's: a JSON
    /// patch whose `test` no longer holds (422, how the finalizer helper guards its patch) or a
    /// conflict (409). The watch brings the current object shortly; this is no failure of the
    /// object's and must not back off like one.
    pub fn is_stale_object(&self) -> bool {
        self.api_status()
            .is_some_and(|status| status.code == 409 || (status.code == 422 && matches!(self, Self::Finalizer(_))))
    }

    /// The API server turned the request away for load (429 Too Many Requests, 503, 504), not
    /// because of anything about the object. Retrying after a pause is the whole remedy; a
    /// `Ready=False` status and a Warning event would be two more writes to a server that just
    /// said it has too many.
    pub fn is_throttled(&self) -> bool {
        self.api_status().is_some_and(|status| matches!(status.code, 429 | 503 | 504))
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Sync(SyncError::Database(_)) | Self::Database(_) => "database",
            Self::Sync(SyncError::Other(_)) | Self::Other(_) => "other",
            Self::Kube(_) => "kubernetes",
            Self::Finalizer(_) => "finalizer",
            Self::Waiting(_) => "waiting",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    /// The reconcile's own error comes back out, so its back-off and label stay its own.
    fn from(err: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match err {
            F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner,
            other => Self::Finalizer(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_against_a_stale_copy_is_told_apart_from_a_real_failure() {
        use kube::runtime::finalizer::Error as F;
        let api = |code: u16| kube::Error::Api(kube::core::Status::failure("x", "Invalid").with_code(code).boxed());
        assert!(Error::Finalizer(Box::new(F::AddFinalizer(api(422)))).is_stale_object(), "the patch's test failed");
        assert!(Error::Finalizer(Box::new(F::RemoveFinalizer(api(409)))).is_stale_object());
        assert!(Error::Kube(api(409)).is_stale_object(), "a conflict");
        assert!(!Error::Kube(api(422)).is_stale_object(), "an invalid object is a real failure");
        assert!(!Error::Finalizer(Box::new(F::AddFinalizer(api(403)))).is_stale_object());
        assert!(!Error::Other(anyhow::anyhow!("x")).is_stale_object());
    }

    #[test]
    fn a_cleanup_error_comes_out_of_the_finalizer_as_itself() {
        let err: Error = kube::runtime::finalizer::Error::CleanupFailed(Error::Waiting("ws".into())).into();
        assert!(matches!(err, Error::Waiting(_)));
        assert_eq!(err.metric_label(), "waiting");
    }
}
