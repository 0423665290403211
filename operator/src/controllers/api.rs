//! Reaching the API server: an `Api` over the watched namespaces, and cached reads of the
//! objects a resource refers to.

use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// An `Api` for `K` in every namespace, or only the watched one.
pub fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Reads a referenced object from the API server's watch cache (`resourceVersion=0`, no etcd
/// round trip), confirming with a consistent read only when the cache does not have it, so a
/// cache that lags never makes an existing reference look missing. For references whose
/// existence is what matters (what they hold is read from the database), this keeps thousands
/// of reconciles from turning into thousands of quorum reads.
pub async fn get_reference<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.get_with(name, &kube::api::GetParams::any()).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => api.get_opt(name).await,
        Err(other) => Err(other),
    }
}
