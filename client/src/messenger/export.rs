//! Reading a privacy export on a device (docs/compliance.md, *Privacy requests*). The archive
//! holds the person's messages as the server has them: MLS ciphertext, which the server cannot
//! open. A device that holds the keys (it sent or read those messages) turns it into a readable
//! archive: the same files, with each message's content beside its ciphertext.

use chrono::{DateTime, Utc};
use conclave_protocol::api::Message;
use conclave_protocol::archive;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Body, Messenger};
use crate::api::{Error, Result};

/// The `format` of an export's `manifest.json`.
const FORMAT: &str = "conclave-privacy-export";
/// The versions of it this client reads.
const VERSION: u64 = 1;

/// An export made readable ([`Messenger::read_export`]).
#[derive(Debug, Clone)]
pub struct ReadableExport {
    /// The readable archive: the export's files, `messages.json` with each message's `body`
    /// added, and `manifest.json` saying which device read it and when.
    pub archive: Vec<u8>,
    /// Messages whose content this device could show.
    pub readable: usize,
    /// Messages it could not (each says why in its `body`).
    pub unreadable: usize,
}

/// A message as the export lists it (byte columns as `\x`-prefixed hex).
#[derive(Deserialize)]
struct Exported {
    id: Uuid,
    conversation_id: Uuid,
    seq: i64,
    sender_device_id: Option<Uuid>,
    client_message_id: Uuid,
    key_generation: i32,
    ciphertext: Option<String>,
    reply_to_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

impl Messenger {
    /// Turns a privacy export of this account into a readable archive, with what this device
    /// holds: the plaintexts it kept when it sent or read each message, and its MLS state for
    /// what it has not read yet (fetching the commits it needs, as reading history does).
    pub async fn read_export(&self, export: &[u8]) -> Result<ReadableExport> {
        let invalid = |what: String| Error::Protocol(format!("not a readable Conclave export: {what}"));
        let mut files = archive::files(export).map_err(|e| invalid(e.to_string()))?;
        let manifest: Value = json_file(&files, "manifest.json").map_err(invalid)?;
        if manifest["format"] != FORMAT || manifest["version"].as_u64() != Some(VERSION) {
            return Err(invalid(format!("format {} version {}", manifest["format"], manifest["version"])));
        }
        let uuid = |key: &str| manifest[key].as_str().and_then(|s| s.parse::<Uuid>().ok());
        let (Some(org), Some(user)) = (uuid("organization_id"), uuid("user_id")) else {
            return Err(invalid("the manifest names no organization or user".into()));
        };
        if user != self.user_id() {
            return Err(invalid(format!("it is the export of another account ({user})")));
        }
        let rows: Vec<Value> = json_file(&files, "messages.json").map_err(invalid)?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let m = Exported::deserialize(row).map_err(|e| invalid(format!("messages.json: {e}")))?;
            let ciphertext = m.ciphertext.as_deref().map(unhex).transpose().map_err(invalid)?;
            messages.push(Message {
                id: m.id,
                conversation_id: m.conversation_id,
                seq: m.seq,
                sender_user_id: Some(user),
                sender_device_id: m.sender_device_id,
                client_message_id: m.client_message_id,
                key_generation: m.key_generation,
                ciphertext,
                reply_to_id: m.reply_to_id,
                created_at: m.created_at,
                edited_at: m.edited_at,
                deleted_at: m.deleted_at,
            });
        }
        let opened = self.open_all(org, &messages).await?;
        let readable = opened.iter().filter(|m| matches!(m.body, Body::Content { .. })).count();
        let read: Vec<Value> = rows
            .into_iter()
            .zip(&opened)
            .map(|(mut row, message)| {
                row["body"] = serde_json::to_value(&message.body).unwrap_or(Value::Null);
                row["shown_as"] = Value::String(message.body.display());
                row
            })
            .collect();
        let mut manifest = manifest;
        manifest["read_by_device_id"] = json!(self.device_id());
        manifest["read_at"] = json!(Utc::now());
        manifest["readable_messages"] = json!(readable);
        manifest["unreadable_messages"] = json!(opened.len() - readable);
        let mut rewritten =
            [("manifest.json", Some(pretty(&manifest)?)), ("messages.json", Some(pretty(&Value::Array(read))?))];
        for (name, data) in &mut files {
            if let Some(new) = rewritten.iter_mut().find(|(n, _)| n == name).and_then(|(_, new)| new.take()) {
                *data = new;
            }
        }
        let mtime = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
        Ok(ReadableExport { archive: archive::archive(&files, mtime), readable, unreadable: opened.len() - readable })
    }
}

fn json_file<T: serde::de::DeserializeOwned>(
    files: &[(String, Vec<u8>)],
    name: &str,
) -> std::result::Result<T, String> {
    let (_, data) = files.iter().find(|(n, _)| n == name).ok_or_else(|| format!("no {name}"))?;
    serde_json::from_slice(data).map_err(|e| format!("{name}: {e}"))
}

fn pretty(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| Error::Protocol(e.to_string()))
}

/// PostgreSQL's text form of bytea in JSON: `\x` and lower-case hex.
fn unhex(text: &str) -> std::result::Result<Vec<u8>, String> {
    let digits = text.strip_prefix("\\x").ok_or_else(|| format!("a byte field {text:.12}... is not \\x hex"))?;
    hex::decode(digits).map_err(|e| format!("a byte field: {e}"))
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn byte_columns_are_read_from_postgres_hex() {
        assert_eq!(unhex("\\x00ff10"), Ok(vec![0, 255, 16]));
        assert!(unhex("00ff").is_err(), "no prefix");
        assert!(unhex("\\x0g").is_err());
    }
}
