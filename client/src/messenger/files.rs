//! Encrypted attachments: [`Messenger::send_file`] and [`Messenger::download`].
//!
//! Neither holds the file in memory. Sending reads the file twice, chunk by chunk: once to hash
//! the blob it encrypts to (the upload must declare the blob's SHA-256 up front), once more to
//! stream the same blob into the request body (the chunk nonces are derived from the chunk index
//! and the key is fixed, so both passes produce identical bytes; a file that changes in between
//! is refused by the server with `hash_mismatch`). Downloading streams the blob to a temporary
//! file beside the destination while hashing it, checks its size and SHA-256 against the message,
//! then decrypts it chunk by chunk into a second temporary file that is renamed onto the
//! destination, so a failed download never leaves a partial or unverified file behind.

use std::path::{Path, PathBuf};

use conclave_protocol::api::{Message, MessagePage};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

use super::{Body, Messenger, Submit};
use crate::api::{Error, MessageQuery, Result};
use crate::content::{Content, FileContent};
use crate::crypto::FileKey;
use crate::crypto::attachment::{CHUNK_SIZE, SEALED_CHUNK_SIZE, blob_len, chunk_count, open_chunk, seal_chunk};

/// How many messages are read per page when looking a message up by id.
const LOOKUP_PAGE: u32 = 200;

/// A file written by [`Messenger::download`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadedFile {
    /// Where it was written.
    pub path: PathBuf,
    /// The name the sender gave it.
    pub name: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The encrypted blob of the first `plain_len` bytes of `path`, chunk by chunk.
fn encrypted_chunks(
    path: PathBuf,
    key: FileKey,
    plain_len: u64,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    let count = chunk_count(plain_len);
    futures::stream::try_unfold((None::<tokio::fs::File>, 0u64), move |(file, index)| {
        let path = path.clone();
        let key = key.clone();
        async move {
            if index == count {
                return Ok(None);
            }
            let mut file = match file {
                Some(file) => file,
                None => tokio::fs::File::open(&path).await?,
            };
            let offset = index * CHUNK_SIZE as u64;
            let len = (plain_len - offset).min(CHUNK_SIZE as u64) as usize;
            let mut plain = zeroize::Zeroizing::new(vec![0u8; len]);
            file.read_exact(&mut plain).await?;
            let sealed = seal_chunk(&key, index, index + 1 == count, &plain).map_err(std::io::Error::other)?;
            Ok(Some((sealed, (Some(file), index + 1))))
        }
    })
}

/// A guess at a media type from a file name's extension.
pub fn media_type_for(name: &str) -> &'static str {
    let extension = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "txt" | "md" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// A file name safe to create in a directory: the last component of what the sender wrote.
fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    if last.is_empty() || last == "." || last == ".." { "attachment".to_owned() } else { last.to_owned() }
}

/// Removes a temporary file when dropped, unless it was renamed away.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Messenger {
    /// Encrypts the file at `path` under a fresh key, uploads the blob (streamed), and sends a
    /// message of content type `file` that carries the key and lists the attachment.
    pub async fn send_file(&self, org: Uuid, conversation: Uuid, path: &Path) -> Result<Message> {
        let metadata = tokio::fs::metadata(path).await?;
        if !metadata.is_file() {
            return Err(Error::Attachment(format!("{} is not a regular file", path.display())));
        }
        let plain_len = metadata.len();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "attachment".into());
        let key = FileKey::generate()?;
        let size = blob_len(plain_len);

        // Pass 1: the blob's hash.
        let mut hasher = Sha256::new();
        let mut chunks = std::pin::pin!(encrypted_chunks(path.to_owned(), key.clone(), plain_len));
        while let Some(chunk) = chunks.try_next().await? {
            hasher.update(&chunk);
        }
        let sha256: [u8; 32] = hasher.finalize().into();

        // Pass 2: the same bytes, streamed into the request.
        let make_body = || {
            let stream = encrypted_chunks(path.to_owned(), key.clone(), plain_len);
            Ok(reqwest::Body::wrap_stream(stream))
        };
        let attachment = self.inner.client.upload_attachment(org, conversation, size, &sha256, make_body).await?;

        let content = Content::File(FileContent {
            attachment_id: attachment.id,
            media_type: media_type_for(&name).to_owned(),
            name,
            size: plain_len,
            key,
            sha256,
        });
        let submit = Submit::Send { reply_to_id: None, attachment_ids: vec![attachment.id] };
        self.submit(org, conversation, &content, Uuid::now_v7(), submit).await
    }

    /// Finds a message of a conversation by its id (newest first, a page at a time) and opens it.
    pub async fn find_message(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> Result<super::ReceivedMessage> {
        let conversation = self.inner.client.conversation(org, conversation_id).await?;
        let mut before_seq = conversation.last_seq.saturating_add(1);
        loop {
            let query = MessageQuery::Before { before_seq, limit: LOOKUP_PAGE };
            let page: MessagePage = self.inner.client.messages(org, conversation_id, query).await?;
            if let Some(message) = page.messages.iter().find(|m| m.id == message_id) {
                return self.open(org, message).await;
            }
            match page.messages.iter().map(|m| m.seq).min() {
                Some(oldest) if oldest > 1 => before_seq = oldest,
                _ => {
                    return Err(Error::Attachment(format!("no message {message_id} in this conversation")));
                }
            }
        }
    }

    /// Downloads, verifies and decrypts the file of message `message_id` to `dest` (a file path,
    /// or an existing directory to write the sender's file name into).
    pub async fn download(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        message_id: Uuid,
        dest: &Path,
    ) -> Result<DownloadedFile> {
        let message = self.find_message(org, conversation_id, message_id).await?;
        match &message.body {
            Body::Content { content: Content::File(file) } => {
                self.download_file(org, conversation_id, file, dest).await
            }
            other => Err(Error::Attachment(format!("message {message_id} is not a file: {}", other.display()))),
        }
    }

    /// Downloads, verifies and decrypts the file a `file` message describes to `dest`.
    pub async fn download_file(
        &self,
        org: Uuid,
        conversation_id: Uuid,
        file: &FileContent,
        dest: &Path,
    ) -> Result<DownloadedFile> {
        let dest = if tokio::fs::metadata(dest).await.is_ok_and(|m| m.is_dir()) {
            dest.join(safe_name(&file.name))
        } else {
            dest.to_owned()
        };
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let stem = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "attachment".into());
        let tag = Uuid::new_v4().simple();
        let blob_path = TempFile(Some(dir.join(format!(".{stem}.{tag}.encrypted"))));
        let part_path = TempFile(Some(dir.join(format!(".{stem}.{tag}.part"))));
        let blob_file = blob_path.0.as_deref().ok_or_else(|| Error::Protocol("no temp path".into()))?;
        let part_file = part_path.0.as_deref().ok_or_else(|| Error::Protocol("no temp path".into()))?;
        let expected = blob_len(file.size);

        // 1. The blob, to a temporary file, hashed on the way.
        let response = self.inner.client.download_attachment(org, conversation_id, file.attachment_id).await?;
        let mut out = tokio::fs::File::create(blob_file).await?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        while let Some(bytes) = body.next().await {
            let bytes = bytes?;
            received += bytes.len() as u64;
            if received > expected {
                return Err(Error::Attachment(format!(
                    "the server sent more than the {expected} bytes the message announces"
                )));
            }
            hasher.update(&bytes);
            out.write_all(&bytes).await?;
        }
        out.flush().await?;
        drop(out);
        if received != expected {
            return Err(Error::Attachment(format!(
                "the download is {received} bytes, the message announces {expected}: truncated"
            )));
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if digest != file.sha256 {
            return Err(Error::Attachment(
                "the downloaded file's SHA-256 differs from the one in the message: it was altered".into(),
            ));
        }

        // 2. Decrypted chunk by chunk into a second temporary file, then renamed into place.
        let count = chunk_count(file.size);
        let mut input = tokio::fs::File::open(blob_file).await?;
        let mut output = tokio::fs::File::create(part_file).await?;
        let mut sealed = vec![0u8; SEALED_CHUNK_SIZE];
        let mut remaining = expected;
        for index in 0..count {
            let len = remaining.min(SEALED_CHUNK_SIZE as u64) as usize;
            input.read_exact(&mut sealed[..len]).await?;
            remaining -= len as u64;
            let plain = open_chunk(&file.key, index, index + 1 == count, &sealed[..len])?;
            output.write_all(&plain).await?;
        }
        output.flush().await?;
        output.sync_all().await?;
        drop(output);
        tokio::fs::rename(part_file, &dest).await?;
        let mut part_path = part_path;
        part_path.0 = None;
        Ok(DownloadedFile { path: dest, name: file.name.clone(), media_type: file.media_type.clone(), size: file.size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_senders_never_leave_the_directory() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a\\b.txt"), "b.txt");
        assert_eq!(safe_name(".."), "attachment");
        assert_eq!(safe_name(""), "attachment");
        assert_eq!(media_type_for("Photo.JPG"), "image/jpeg");
        assert_eq!(media_type_for("blob"), "application/octet-stream");
    }
}
