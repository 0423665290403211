//! `privacy ...`: asking for an export or an erasure of your data, downloading an export, and
//! making it readable on this device (docs/compliance.md).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};
use conclave_protocol::compliance::PrivacyRequestKind;
use uuid::Uuid;

use super::{Context, resolve};

/// `conclave privacy ...`
#[derive(Debug, Subcommand)]
pub enum PrivacyAction {
    /// Your requests in every organization (the default).
    List,
    /// Ask an organization for a copy of your data (export) or to delete it (erasure); its
    /// admins decide.
    Request {
        #[arg(long)]
        org: String,
        kind: Kind,
    },
    /// Download a completed export (once: the link is spent).
    Download {
        request: Uuid,
        /// Where to write the archive.
        #[arg(long, default_value = "conclave-export.tar")]
        out: PathBuf,
    },
    /// Make a downloaded export readable with this device's keys: the same archive, each of
    /// your messages with its text beside its ciphertext.
    Read {
        archive: PathBuf,
        /// Where to write the readable archive.
        #[arg(long, default_value = "conclave-export-readable.tar")]
        out: PathBuf,
    },
}

/// What to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Export,
    Erasure,
}

pub(super) async fn privacy(ctx: &mut Context<'_>, action: Option<PrivacyAction>) -> Result<()> {
    let (_, messenger) = ctx.messenger()?;
    let client = messenger.client().clone();
    match action.unwrap_or(PrivacyAction::List) {
        PrivacyAction::List => {
            let requests = client.my_privacy_requests().await?;
            if ctx.json() {
                return ctx.print_json(&requests);
            }
            if requests.is_empty() {
                writeln!(ctx.out, "No privacy requests.")?;
            }
            for r in requests {
                let kind = serde_json::to_value(r.kind)?;
                let status = serde_json::to_value(r.status)?;
                writeln!(
                    ctx.out,
                    "{}  {}  {}  due {}",
                    r.id,
                    kind.as_str().unwrap_or("?"),
                    status.as_str().unwrap_or("?"),
                    r.due_at.date_naive()
                )?;
            }
        }
        PrivacyAction::Request { org, kind } => {
            let org = resolve::organization(&client, &org).await?;
            let kind = match kind {
                Kind::Export => PrivacyRequestKind::Export,
                Kind::Erasure => PrivacyRequestKind::Erasure,
            };
            let request = client.file_privacy_request(org, kind).await?;
            if ctx.json() {
                return ctx.print_json(&request);
            }
            writeln!(
                ctx.out,
                "Request {} filed; the organization's admins decide by {}.",
                request.id,
                request.due_at.date_naive()
            )?;
        }
        PrivacyAction::Download { request, out } => {
            let archive = client.download_export(request).await?;
            std::fs::write(&out, &archive).with_context(|| format!("writing {}", out.display()))?;
            writeln!(
                ctx.out,
                "Downloaded the export ({} bytes, ciphertext as the server holds it) to {}.",
                archive.len(),
                out.display()
            )?;
        }
        PrivacyAction::Read { archive, out } => {
            let export = std::fs::read(&archive).with_context(|| format!("reading {}", archive.display()))?;
            let readable = messenger.read_export(&export).await?;
            std::fs::write(&out, &readable.archive).with_context(|| format!("writing {}", out.display()))?;
            writeln!(
                ctx.out,
                "Wrote {}: {} messages readable on this device, {} not (each says why).",
                out.display(),
                readable.readable,
                readable.unreadable
            )?;
        }
    }
    Ok(())
}
