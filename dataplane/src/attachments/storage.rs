//! Where encrypted attachment blobs live: one small trait, a filesystem implementation (the
//! default; a volume in Kubernetes) and, with the `s3` cargo feature, an S3-compatible one
//! through the `object_store` crate.
//!
//! Uploads are always staged in a local file first (hashed and counted on the way in), so a
//! store only ever receives a complete, verified blob: `put` takes the staged file.

use axum::body::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::io;
use std::path::{Path, PathBuf};

/// A stream of a blob's bytes, read as the client downloads it.
pub type BlobStream = BoxStream<'static, io::Result<Bytes>>;

/// Chunk size of reads from the filesystem.
const READ_CHUNK: usize = 64 * 1024;

pub trait BlobStore: Send + Sync + 'static {
    /// Stores the staged file under `key` (consuming the file: it is moved or deleted).
    fn put<'a>(&'a self, key: &'a str, staged: &'a Path) -> BoxFuture<'a, io::Result<()>>;
    /// Streams the blob; `NotFound` when there is none.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<BlobStream>>;
    /// Deletes the blob; deleting one that is not there succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Where uploads are staged: a local directory.
    fn staging_dir(&self) -> &Path;
}

/// Blobs as files under `<root>/blobs/`, staged under `<root>/staging/` (same filesystem, so
/// storing is a rename).
pub struct FsStore {
    blobs: PathBuf,
    staging: PathBuf,
}

impl FsStore {
    pub fn open(root: &Path) -> io::Result<Self> {
        let blobs = root.join("blobs");
        let staging = root.join("staging");
        std::fs::create_dir_all(&blobs)?;
        std::fs::create_dir_all(&staging)?;
        Ok(Self { blobs, staging })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        // Keys are made by the server (UUIDs), but never let one climb out of the directory.
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid blob key"));
        }
        Ok(self.blobs.join(key))
    }

    /// Where a blob is on disk (tests look at what is stored).
    pub fn blob_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }
}

impl BlobStore for FsStore {
    fn put<'a>(&'a self, key: &'a str, staged: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { tokio::fs::rename(staged, self.path(key)?).await })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<BlobStream>> {
        Box::pin(async move {
            let file = tokio::fs::File::open(self.path(key)?).await?;
            Ok(file_stream(file))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(key)?).await {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }
}

/// A file read in 64 KiB chunks, never whole.
pub fn file_stream(file: tokio::fs::File) -> BlobStream {
    use tokio::io::AsyncReadExt;
    Box::pin(futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; READ_CHUNK];
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.truncate(n);
        Ok(Some((Bytes::from(buffer), file)))
    }))
}

#[cfg(feature = "s3")]
pub use s3::S3Store;

#[cfg(feature = "s3")]
mod s3 {
    //! S3 (or any compatible service: MinIO, Ceph RGW, R2) through `object_store`'s `aws`
    //! backend. Credentials and region come from the usual `AWS_*` environment variables.
    use super::{BlobStore, BlobStream, READ_CHUNK};
    use futures::future::BoxFuture;
    use futures::{StreamExt, TryStreamExt};
    use object_store::ObjectStoreExt;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, WriteMultipart};
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    pub struct S3Store {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        staging: PathBuf,
    }

    fn to_io(e: object_store::Error) -> io::Error {
        match e {
            object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
            other => io::Error::other(other.to_string()),
        }
    }

    impl S3Store {
        /// `endpoint` is for S3-compatible services (path-style, HTTP allowed when it says so).
        pub fn open(bucket: &str, endpoint: Option<&str>, prefix: &str, staging: &Path) -> io::Result<Self> {
            Self::with_builder(AmazonS3Builder::from_env(), bucket, endpoint, prefix, staging)
        }

        /// Like [`S3Store::open`] with the credentials and region already on `builder`.
        pub fn with_builder(
            builder: AmazonS3Builder,
            bucket: &str,
            endpoint: Option<&str>,
            prefix: &str,
            staging: &Path,
        ) -> io::Result<Self> {
            let mut builder = builder.with_bucket_name(bucket);
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            let store = builder.build().map_err(to_io)?;
            std::fs::create_dir_all(staging)?;
            Ok(Self {
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_owned(),
                staging: staging.to_owned(),
            })
        }

        fn path(&self, key: &str) -> ObjectPath {
            if self.prefix.is_empty() {
                ObjectPath::from(key)
            } else {
                ObjectPath::from(format!("{}/{key}", self.prefix))
            }
        }
    }

    impl BlobStore for S3Store {
        fn put<'a>(&'a self, key: &'a str, staged: &'a Path) -> BoxFuture<'a, io::Result<()>> {
            Box::pin(async move {
                let upload = self.store.put_multipart(&self.path(key)).await.map_err(to_io)?;
                let mut writer = WriteMultipart::new(upload);
                let mut file = tokio::fs::File::open(staged).await?;
                let mut buffer = vec![0u8; READ_CHUNK];
                loop {
                    let n = file.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    writer.wait_for_capacity(4).await.map_err(to_io)?;
                    writer.write(&buffer[..n]);
                }
                writer.finish().await.map_err(to_io)?;
                tokio::fs::remove_file(staged).await
            })
        }

        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<BlobStream>> {
            Box::pin(async move {
                let result = self.store.get(&self.path(key)).await.map_err(to_io)?;
                Ok(result.into_stream().map_err(to_io).boxed())
            })
        }

        fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
            Box::pin(async move {
                match self.store.delete(&self.path(key)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(to_io(e)),
                }
            })
        }

        fn staging_dir(&self) -> &Path {
            &self.staging
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn a_staged_file_is_stored_streamed_back_and_deleted() {
        let root = std::env::temp_dir().join(format!("conclave-fs-store-{}", uuid::Uuid::new_v4().simple()));
        let store = FsStore::open(&root).expect("store");
        let staged = store.staging_dir().join("upload");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&staged, &data).expect("staged");
        store.put("blob-1", &staged).await.expect("put");
        assert!(!staged.exists(), "put consumes the staged file");
        let chunks: Vec<Bytes> = store.get("blob-1").await.expect("get").try_collect().await.expect("read");
        assert!(chunks.len() > 1, "read in chunks");
        assert_eq!(chunks.concat(), data);
        store.delete("blob-1").await.expect("delete");
        store.delete("blob-1").await.expect("deleting twice is fine");
        assert!(matches!(store.get("blob-1").await.map(|_| ()), Err(e) if e.kind() == io::ErrorKind::NotFound));
        assert!(store.get("../etc").await.is_err());
        let _ = std::fs::remove_dir_all(root);
    }

    /// Against a real S3-compatible server: moto's, started on loopback for the test
    /// (`pip install "moto[server]"`; scripts/test.sh installs it).
    #[cfg(feature = "s3")]
    mod s3_server {
        use crate::attachments::storage::{BlobStore, READ_CHUNK, S3Store};
        use futures::StreamExt;
        use object_store::aws::AmazonS3Builder;
        use std::io;
        use std::process::{Child, Command, Stdio};
        use std::time::Duration;

        struct Moto(Child);

        impl Drop for Moto {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }

        fn start_moto() -> (Moto, u16) {
            let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            let python = std::env::var("CONCLAVE_MOTO_PYTHON").unwrap_or_else(|_| "python3".to_owned());
            let child = Command::new(python)
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 -m moto.server (pip install 'moto[server]')");
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (Moto(child), port)
        }

        /// Creates a bucket with a plain path-style PUT (moto needs no signature for it).
        fn create_bucket(port: u16, bucket: &str) {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            write!(
                stream,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .expect("request");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("answer");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }

        #[tokio::test]
        async fn blobs_round_trip_through_an_s3_compatible_server() {
            let (_moto, port) = start_moto();
            create_bucket(port, "conclave-test");
            let staging = std::env::temp_dir().join(format!("conclave-s3-{}", uuid::Uuid::new_v4().simple()));
            let builder = AmazonS3Builder::new()
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_region("us-east-1");
            let endpoint = format!("http://127.0.0.1:{port}");
            let store = S3Store::with_builder(builder, "conclave-test", Some(&endpoint), "attachments", &staging)
                .expect("store");
            // Larger than one read chunk and not a multiple of it: several multipart writes.
            let blob: Vec<u8> = (0..(3 * READ_CHUNK + 123)).map(|i| (i % 253) as u8).collect();
            let staged = store.staging_dir().join("upload");
            std::fs::write(&staged, &blob).expect("stage");
            store.put("org/blob-1", &staged).await.expect("put");
            assert!(!staged.exists(), "the staged file is consumed");
            let mut stream = store.get("org/blob-1").await.expect("get");
            let mut read = Vec::new();
            while let Some(chunk) = stream.next().await {
                read.extend_from_slice(&chunk.expect("chunk"));
            }
            assert_eq!(read, blob);
            store.delete("org/blob-1").await.expect("delete");
            store.delete("org/blob-1").await.expect("deleting what is gone succeeds");
            let missing = store.get("org/blob-1").await.err().expect("gone");
            assert_eq!(missing.kind(), io::ErrorKind::NotFound);
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
}
