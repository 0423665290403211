//! `profile ...` and `notifications ...`: profiles, the exact-email lookup, notification
//! preferences and their overrides, unread counts.

use anyhow::{Result, bail};
use chrono::{Duration, Utc};
use clap::{Subcommand, ValueEnum};
use conclave_protocol::notifications::{
    DigestFrequency, NotificationLevel, NotificationPreferences, Profile, QuietHours, SetNotificationOverride,
    UpdateNotificationPreferences, UpdateProfile,
};

use super::{Context, resolve};
use crate::api::OverrideScope;

/// `conclave profile ...`
#[derive(Debug, Subcommand)]
pub enum ProfileAction {
    /// Show your profile (the default), or a member's with --org and --member.
    Show {
        #[arg(long, requires = "member")]
        org: Option<String>,
        /// The member's exact email address, or user id.
        #[arg(long, requires = "org")]
        member: Option<String>,
    },
    /// Change your profile; an empty value clears an optional field (`--status ""`).
    Set {
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// An IANA time zone (Europe/Paris), used for quiet hours and digests.
        #[arg(long)]
        time_zone: Option<String>,
        /// A BCP 47 language tag (fr, pt-BR).
        #[arg(long)]
        locale: Option<String>,
        /// An https URL of your picture.
        #[arg(long)]
        avatar_url: Option<String>,
    },
    /// Upload your picture (PNG, JPEG or WebP, at most 256 KiB), or remove it with --remove.
    Avatar {
        #[arg(required_unless_present = "remove")]
        file: Option<std::path::PathBuf>,
        #[arg(long, conflicts_with = "file")]
        remove: bool,
    },
}

/// A level as the command line spells it (`inherit` only for overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    All,
    Mentions,
    None,
    Inherit,
}

impl Level {
    fn level(self) -> Option<NotificationLevel> {
        match self {
            Self::All => Some(NotificationLevel::All),
            Self::Mentions => Some(NotificationLevel::Mentions),
            Self::None => Some(NotificationLevel::None),
            Self::Inherit => None,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Frequency {
    Hourly,
    Daily,
    Weekly,
}

/// `conclave notifications ...`
#[derive(Debug, Subcommand)]
pub enum NotificationsAction {
    /// Show your account-wide preferences (the default).
    Show,
    /// Change your account-wide preferences.
    Set {
        #[arg(long, value_enum)]
        level: Option<Level>,
        #[arg(long)]
        push: Option<bool>,
        #[arg(long)]
        email: Option<bool>,
        /// Mute everything for this long: 30m, 8h, 2d.
        #[arg(long, conflicts_with = "unmute")]
        mute_for: Option<String>,
        #[arg(long)]
        unmute: bool,
        /// Quiet hours in your profile's time zone, `22:00-07:00`; `off` removes them.
        #[arg(long)]
        quiet_hours: Option<String>,
        /// Minutes a conversation waits unread before it is in an email.
        #[arg(long)]
        email_delay: Option<i32>,
        #[arg(long, value_enum)]
        digest: Option<Frequency>,
    },
    /// Override the level (and mute) for an organization, a workspace or a conversation.
    Override {
        #[arg(long)]
        org: String,
        #[arg(long, conflicts_with = "conversation")]
        workspace: Option<String>,
        #[arg(long)]
        conversation: Option<String>,
        #[arg(long, value_enum, default_value = "inherit")]
        level: Level,
        /// Mute this scope for this long: 30m, 8h, 2d.
        #[arg(long)]
        mute_for: Option<String>,
    },
    /// Remove an override: the scope inherits again.
    Clear {
        #[arg(long)]
        org: String,
        #[arg(long, conflicts_with = "conversation")]
        workspace: Option<String>,
        #[arg(long)]
        conversation: Option<String>,
    },
    /// List your overrides in an organization.
    Overrides {
        #[arg(long)]
        org: String,
    },
    /// Unread messages per conversation in an organization.
    Unread {
        #[arg(long)]
        org: String,
    },
}

/// `30m`, `8h`, `2d` (a bare number is minutes).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 'm'),
    };
    let Ok(n) = number.parse::<i64>() else { bail!("{text:?} is not a duration such as 30m, 8h or 2d") };
    match unit {
        'm' => Ok(Duration::minutes(n)),
        'h' => Ok(Duration::hours(n)),
        'd' => Ok(Duration::days(n)),
        _ => bail!("{text:?}: use m, h or d"),
    }
}

/// `22:00-07:00` into quiet hours; `off` into none.
pub fn parse_quiet_hours(text: &str) -> Result<Option<QuietHours>> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let Some((start, end)) = text.split_once('-') else { bail!("quiet hours look like 22:00-07:00, or off") };
    Ok(Some(QuietHours { start: start.trim().to_owned(), end: end.trim().to_owned() }))
}

/// An empty value clears the field.
fn clearable(value: Option<String>) -> Option<Option<String>> {
    value.map(|v| (!v.trim().is_empty()).then_some(v))
}

pub(super) async fn profile(ctx: &mut Context<'_>, action: Option<ProfileAction>) -> Result<()> {
    let (_, client) = ctx.client()?;
    let profile = match action.unwrap_or(ProfileAction::Show { org: None, member: None }) {
        ProfileAction::Show { org: Some(org), member: Some(member) } => {
            let org = resolve::organization(&client, &org).await?;
            match member.parse() {
                Ok(id) => client.member_profile(org, id).await?,
                Err(_) => client.lookup_member(org, &member).await?,
            }
        }
        ProfileAction::Show { .. } => client.profile().await?,
        ProfileAction::Set { display_name, status, time_zone, locale, avatar_url } => {
            let update = UpdateProfile {
                display_name,
                status_text: clearable(status),
                time_zone: clearable(time_zone),
                locale: clearable(locale),
                avatar_url: clearable(avatar_url),
            };
            client.update_profile(&update).await?
        }
        ProfileAction::Avatar { remove: true, .. } => client.delete_avatar().await?,
        ProfileAction::Avatar { file, .. } => {
            let file = file.unwrap_or_default();
            let media_type = crate::messenger::media_type_for(&file.to_string_lossy());
            if !matches!(media_type, "image/png" | "image/jpeg" | "image/webp") {
                bail!("{}: an avatar is a .png, .jpg or .webp file", file.display());
            }
            let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            client.upload_avatar(media_type, bytes).await?
        }
    };
    print_profile(ctx, &profile)
}

fn print_profile(ctx: &mut Context<'_>, profile: &Profile) -> Result<()> {
    if ctx.json() {
        return ctx.print_json(profile);
    }
    let none = "-".to_owned();
    writeln!(ctx.out, "{} ({})", profile.display_name, profile.user_id)?;
    writeln!(ctx.out, "  status:    {}", profile.status_text.as_ref().unwrap_or(&none))?;
    writeln!(ctx.out, "  time zone: {}", profile.time_zone.as_ref().unwrap_or(&none))?;
    writeln!(ctx.out, "  locale:    {}", profile.locale.as_ref().unwrap_or(&none))?;
    let avatar = match (&profile.avatar_media_type, profile.avatar_size_bytes, &profile.avatar_url) {
        (Some(media_type), Some(size), _) => format!("uploaded, {media_type}, {size} bytes"),
        (_, _, Some(url)) => url.clone(),
        _ => none,
    };
    writeln!(ctx.out, "  avatar:    {avatar}")?;
    Ok(())
}

fn print_preferences(ctx: &mut Context<'_>, prefs: &NotificationPreferences) -> Result<()> {
    if ctx.json() {
        return ctx.print_json(prefs);
    }
    let on = |b: bool| if b { "on" } else { "off" };
    writeln!(ctx.out, "level:        {}", prefs.level.as_str())?;
    writeln!(ctx.out, "push:         {}", on(prefs.push_enabled))?;
    writeln!(
        ctx.out,
        "email:        {} (after {} min, {} digest)",
        on(prefs.email_enabled),
        prefs.email_delay_minutes,
        prefs.digest_frequency.as_str()
    )?;
    match &prefs.muted_until {
        Some(until) => writeln!(ctx.out, "muted until:  {until}")?,
        None => writeln!(ctx.out, "muted until:  -")?,
    }
    let zone = prefs.time_zone.as_deref().unwrap_or("UTC");
    match &prefs.quiet_hours {
        Some(q) => writeln!(ctx.out, "quiet hours:  {}-{} ({zone})", q.start, q.end)?,
        None => writeln!(ctx.out, "quiet hours:  -")?,
    }
    Ok(())
}

async fn scope(
    client: &crate::api::Client,
    org: uuid::Uuid,
    workspace: Option<String>,
    conversation: Option<String>,
) -> Result<OverrideScope> {
    Ok(match (workspace, conversation) {
        (Some(ws), _) => OverrideScope::Workspace(resolve::workspace(client, org, &ws).await?),
        (None, Some(c)) => OverrideScope::Conversation(resolve::conversation(client, org, &c).await?),
        (None, None) => OverrideScope::Organization,
    })
}

pub(super) async fn notifications(ctx: &mut Context<'_>, action: Option<NotificationsAction>) -> Result<()> {
    let (_, client) = ctx.client()?;
    match action.unwrap_or(NotificationsAction::Show) {
        NotificationsAction::Show => {
            let prefs = client.notification_preferences().await?;
            print_preferences(ctx, &prefs)
        }
        NotificationsAction::Set { level, push, email, mute_for, unmute, quiet_hours, email_delay, digest } => {
            if level == Some(Level::Inherit) {
                bail!("the account-wide level cannot inherit: use all, mentions or none");
            }
            let muted_until = match (mute_for, unmute) {
                (Some(d), _) => Some(Some(Utc::now() + parse_duration(&d)?)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let update = UpdateNotificationPreferences {
                level: level.and_then(Level::level),
                push_enabled: push,
                email_enabled: email,
                muted_until,
                quiet_hours: quiet_hours.as_deref().map(parse_quiet_hours).transpose()?,
                email_delay_minutes: email_delay,
                digest_frequency: digest.map(|f| match f {
                    Frequency::Hourly => DigestFrequency::Hourly,
                    Frequency::Daily => DigestFrequency::Daily,
                    Frequency::Weekly => DigestFrequency::Weekly,
                }),
            };
            let prefs = client.update_notification_preferences(&update).await?;
            print_preferences(ctx, &prefs)
        }
        NotificationsAction::Override { org, workspace, conversation, level, mute_for } => {
            let org = resolve::organization(&client, &org).await?;
            let scope = scope(&client, org, workspace, conversation).await?;
            let muted_until = mute_for.as_deref().map(parse_duration).transpose()?.map(|d| Utc::now() + d);
            let body = SetNotificationOverride { level: level.level(), muted_until };
            let answer = client.set_notification_override(org, scope, &body).await?;
            if ctx.json() {
                return ctx.print_json(&answer);
            }
            writeln!(ctx.out, "Override set.")?;
            Ok(())
        }
        NotificationsAction::Clear { org, workspace, conversation } => {
            let org = resolve::organization(&client, &org).await?;
            let scope = scope(&client, org, workspace, conversation).await?;
            client.clear_notification_override(org, scope).await?;
            writeln!(ctx.out, "Override removed.")?;
            Ok(())
        }
        NotificationsAction::Overrides { org } => {
            let org = resolve::organization(&client, &org).await?;
            let overrides = client.notification_overrides(org).await?;
            if ctx.json() {
                return ctx.print_json(&overrides);
            }
            for o in overrides {
                let what = match (o.workspace_id, o.conversation_id) {
                    (Some(ws), _) => format!("workspace {ws}"),
                    (_, Some(c)) => format!("conversation {c}"),
                    _ => "organization".to_owned(),
                };
                let level = o.level.map_or("inherit", NotificationLevel::as_str);
                let muted = o.muted_until.map(|t| format!(" muted until {t}")).unwrap_or_default();
                writeln!(ctx.out, "{what:<50} {level}{muted}")?;
            }
            Ok(())
        }
        NotificationsAction::Unread { org } => {
            let org = resolve::organization(&client, &org).await?;
            let counts = client.unread(org).await?;
            if ctx.json() {
                return ctx.print_json(&counts);
            }
            for c in &counts.conversations {
                writeln!(ctx.out, "{}  {}", c.conversation_id, c.unread)?;
            }
            writeln!(ctx.out, "total  {}", counts.total)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_quiet_hours_parse_as_typed() {
        assert_eq!(parse_duration("30m").ok(), Some(Duration::minutes(30)));
        assert_eq!(parse_duration("8h").ok(), Some(Duration::hours(8)));
        assert_eq!(parse_duration("2d").ok(), Some(Duration::days(2)));
        assert_eq!(parse_duration("45").ok(), Some(Duration::minutes(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
        let quiet = parse_quiet_hours("22:00-07:00").expect("quiet").expect("some");
        assert_eq!((quiet.start.as_str(), quiet.end.as_str()), ("22:00", "07:00"));
        assert_eq!(parse_quiet_hours("off").expect("off"), None);
        assert!(parse_quiet_hours("22:00").is_err());
    }
}
