//! `register`, `confirm`, `login`, `logout`, `whoami`, `devices`.

use anyhow::{Result, bail};
use conclave_protocol::auth::LoginRequest;
use conclave_protocol::devices::Platform;
use uuid::Uuid;

use super::Context;
use crate::api::{Client, Tokens};
use crate::store::{SESSION_VERSION, Session};

pub(super) async fn register(ctx: &mut Context<'_>, email: &str, display_name: &str) -> Result<()> {
    let client = Client::new(&ctx.server()?)?;
    let password = ctx.prompt.password("Choose a password: ", true)?;
    let registered = client.register(email, &password, display_name).await?;
    if ctx.json() {
        return ctx.print_json(&registered);
    }
    writeln!(ctx.out, "Registration of {} received.", registered.email)?;
    if registered.confirmation_email_sent {
        writeln!(ctx.out, "Check your email for the confirmation token, then run: conclave confirm <token>")?;
    } else {
        writeln!(ctx.out, "This server sends no email: ask its operator to confirm your address.")?;
    }
    Ok(())
}

pub(super) async fn confirm(ctx: &mut Context<'_>, token: &str) -> Result<()> {
    Client::new(&ctx.server()?)?.confirm_email(token.trim()).await?;
    writeln!(ctx.out, "Email address confirmed. Sign in with: conclave login --email <address>")?;
    Ok(())
}

fn default_device_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().chars().take(60).collect::<String>())
        .filter(|h| !h.is_empty());
    match host {
        Some(host) => format!("conclave CLI on {host}"),
        None => "conclave CLI".to_owned(),
    }
}

pub(super) async fn login(
    ctx: &mut Context<'_>,
    email: String,
    device_name: Option<String>,
    totp_code: Option<String>,
    recovery_code: Option<String>,
) -> Result<()> {
    let server = crate::api::normalize_server(&ctx.server()?)?;
    if let Some(session) = ctx.profile.load_session()?
        && !session.email.eq_ignore_ascii_case(email.trim())
    {
        bail!("profile {:?} belongs to {}: use another --profile for {email}", ctx.global.profile, session.email);
    }
    let client = Client::new(&server)?;
    // The device keys exist before the server hears of them, so a crash after registration
    // never leaves a registered device whose secrets were lost.
    let (mut keystore, _created) = ctx.profile.load_or_create_keystore()?;
    let registered = keystore.device_id();
    let new_device = match registered {
        Some(_) => None,
        None => Some(keystore.device().registration(&device_name.unwrap_or_else(default_device_name), Platform::Cli)),
    };
    let password = ctx.prompt.password("Password: ", false)?;
    // A device registered before proves it, so failures by others against the address (a lockout)
    // do not keep it out.
    let device_proof = registered.map(|id| keystore.device().device_proof(&email, id));
    let login = LoginRequest {
        email: email.clone(),
        password,
        totp_code,
        recovery_code,
        device_id: registered,
        device: new_device,
        device_proof,
    };
    let pair = match client.login(&login).await {
        Ok(pair) => pair,
        Err(err) if registered.is_some() && err.is_api("not_found") => bail!(
            "this profile's device is not registered to {email}, or was revoked: sign in with another --profile \
             (a new profile makes a new device)"
        ),
        Err(err) if err.is_api("totp_required") => {
            bail!("this account uses two-factor sign-in: add --totp <code> (or --recovery-code <code>)")
        }
        Err(err) => return Err(err.into()),
    };
    if registered.is_none() {
        keystore.set_device_id(pair.device_id);
        keystore.save()?;
    }
    let session = Session {
        version: SESSION_VERSION,
        server,
        user_id: pair.user_id,
        email: email.trim().to_lowercase(),
        device_id: pair.device_id,
        tokens: Tokens { access_token: pair.access_token.clone(), refresh_token: pair.refresh_token.clone() },
    };
    ctx.profile.save_session(&session)?;
    if !ctx.json() {
        let what = if registered.is_none() { "new device registered" } else { "existing device" };
        writeln!(ctx.out, "Signed in as {} on device {} ({what}).", session.email, pair.device_id)?;
    }
    let (_, messenger) = ctx.messenger()?;
    let identity = super::identity::ensure(ctx, &messenger).await.map_err(|err| {
        err.context("signed in, but this device's identity key could not be set up (retry with `conclave identity`)")
    })?;
    if ctx.json() {
        return ctx.print_json(&serde_json::json!({
            "user_id": pair.user_id, "device_id": pair.device_id, "new_device": registered.is_none(),
            "identity": super::identity::state_json(&identity),
        }));
    }
    Ok(())
}

pub(super) async fn logout(ctx: &mut Context<'_>) -> Result<()> {
    let Some(_) = ctx.profile.load_session()? else {
        writeln!(ctx.out, "Not signed in.")?;
        return Ok(());
    };
    let (session, client) = ctx.client()?;
    let result = client.logout().await;
    // Whatever the server says (the session may already be over), forget it here.
    ctx.profile.remove_session()?;
    match result {
        Ok(()) => {}
        Err(err) if err.api().is_some_and(|e| e.status.as_u16() == 401) => {}
        Err(err) => writeln!(ctx.out, "Signed out locally; the server could not be told: {err}")?,
    }
    writeln!(ctx.out, "Signed out {}.", session.email)?;
    Ok(())
}

pub(super) async fn whoami(ctx: &mut Context<'_>) -> Result<()> {
    let (session, client) = ctx.client()?;
    let me = client.me().await?;
    if ctx.json() {
        return ctx.print_json(&me);
    }
    writeln!(ctx.out, "{} ({})", me.email, me.display_name.as_deref().unwrap_or("no display name"))?;
    writeln!(ctx.out, "user    {}", me.user_id)?;
    writeln!(ctx.out, "device  {}", me.device_id)?;
    writeln!(ctx.out, "server  {}", session.server)?;
    writeln!(ctx.out, "profile {}", ctx.profile.dir().display())?;
    Ok(())
}

pub(super) async fn devices(ctx: &mut Context<'_>) -> Result<()> {
    let (_, client) = ctx.client()?;
    let devices = client.devices().await?;
    if ctx.json() {
        return ctx.print_json(&devices);
    }
    for device in devices {
        let state = match (device.current, device.revoked_at) {
            (true, _) => "this device".to_owned(),
            (_, Some(at)) => format!("revoked {}", super::output::time(at)),
            _ => "active".to_owned(),
        };
        writeln!(ctx.out, "{}  {:<8} {:<30} {}", device.id, device.platform, device.name, state)?;
    }
    Ok(())
}

pub(super) async fn revoke(ctx: &mut Context<'_>, id: Uuid) -> Result<()> {
    let (session, client) = ctx.client()?;
    client.revoke_device(id).await?;
    if id == session.device_id {
        ctx.profile.remove_session()?;
        writeln!(ctx.out, "Revoked this device; this profile is signed out for good (its keys stay on disk).")?;
    } else {
        writeln!(
            ctx.out,
            "Revoked device {id}. The next message in each of its conversations removes it from the group first."
        )?;
    }
    Ok(())
}
