//! The delivery client for URLs that users choose (webhook endpoints, push subscriptions): its
//! connector resolves through the [`Guard`] and reaches only the addresses the guard vetted, an
//! address literal is vetted before the request, and no redirect is followed.

use super::guard::{self, AllowList, Guard, Refused};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct GuardedHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<Guard>>, Full<Bytes>>,
    guard: Guard,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// The guard refused the address: waiting will not make it acceptable.
    Refused(Refused),
    Http(hyper_util::client::legacy::Error),
}

impl From<hyper_util::client::legacy::Error> for Failure {
    /// The guard's refusal comes back wrapped in the client's connect error: find it.
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        match guard::find_refusal(&e) {
            Some(refused) => Self::Refused(refused.clone()),
            None => Self::Http(e),
        }
    }
}

impl GuardedHttp {
    /// `https://` with the system roots (ring), and `http://` where the caller allows it.
    pub fn new(allow: AllowList) -> anyhow::Result<Self> {
        let guard = Guard::new(allow);
        let mut http = HttpConnector::new_with_resolver(guard.clone());
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector), guard })
    }

    /// Sends `request` if its host may be reached.
    pub async fn request(&self, request: hyper::Request<Full<Bytes>>) -> Result<hyper::Response<Incoming>, Failure> {
        // An address literal is not resolved, so the connector's guard would not see it.
        guard::vet_literal(self.guard.allow_list(), request.uri().host().unwrap_or_default())
            .map_err(Failure::Refused)?;
        Ok(self.client.request(request).await?)
    }

    /// Whether a URL's host is an address literal the guard refuses (checked when a URL is
    /// stored, so a plainly internal one is refused at once).
    pub fn refuses_literal(&self, host: &str) -> Option<Refused> {
        guard::vet_literal(self.guard.allow_list(), host).err()
    }
}
