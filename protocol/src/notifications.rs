//! JSON bodies of notification preferences, profiles, the member lookup and unread counts
//! (`docs/notifications.md`).
//!
//! Updates are partial: a field left out is unchanged. For a field that can be cleared
//! (`muted_until`, `quiet_hours`, `status_text`, ...) `null` clears it, which is why those fields
//! are `Option<Option<T>>` here: the outer `None` is "left out".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Reads a present field (even `null`) as `Some(..)`, so `Option<Option<T>>` tells "left out"
/// (`None`, with `#[serde(default)]`) from "set to null" (`Some(None)`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// What a person wants to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotificationLevel {
    /// Every message.
    All,
    /// Messages that mention the person, and every message of a direct conversation.
    Mentions,
    /// Nothing (unread counts still move).
    None,
}

impl NotificationLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "all" => Some(Self::All),
            "mentions" => Some(Self::Mentions),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// How often an email digest of unread conversations may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DigestFrequency {
    Hourly,
    Daily,
    Weekly,
}

impl DigestFrequency {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hourly" => Some(Self::Hourly),
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            _ => None,
        }
    }

    pub const fn seconds(self) -> i64 {
        match self {
            Self::Hourly => 3600,
            Self::Daily => 24 * 3600,
            Self::Weekly => 7 * 24 * 3600,
        }
    }
}

/// Do-not-disturb hours, `HH:MM` in the profile's time zone (UTC without one). `start` after
/// `end` spans midnight (`22:00` to `07:00`). Pushes are held back inside them; email is not
/// affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    #[cfg_attr(feature = "utoipa", schema(pattern = "^[0-2][0-9]:[0-5][0-9]$", example = "22:00"))]
    pub start: String,
    #[cfg_attr(feature = "utoipa", schema(pattern = "^[0-2][0-9]:[0-5][0-9]$", example = "07:00"))]
    pub end: String,
}

/// The caller's account-wide preferences (`GET /v1/notification-preferences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct NotificationPreferences {
    /// The default level; organizations, workspaces and conversations may override it.
    pub level: NotificationLevel,
    pub push_enabled: bool,
    pub email_enabled: bool,
    /// Nothing is pushed before this time.
    pub muted_until: Option<DateTime<Utc>>,
    pub quiet_hours: Option<QuietHours>,
    /// The profile's time zone quiet hours and digests use (read-only here: set it on the
    /// profile); null is UTC.
    pub time_zone: Option<String>,
    /// A conversation is in an email only once its oldest unread message is this old.
    #[cfg_attr(feature = "utoipa", schema(minimum = 5, maximum = 10080))]
    pub email_delay_minutes: i32,
    pub digest_frequency: DigestFrequency,
}

/// `PATCH /v1/notification-preferences`: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateNotificationPreferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<NotificationLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_enabled: Option<bool>,
    /// A future time, at most a year ahead; null unmutes.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<DateTime<Utc>>))]
    pub muted_until: Option<Option<DateTime<Utc>>>,
    /// null removes them.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<QuietHours>))]
    pub quiet_hours: Option<Option<QuietHours>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(minimum = 5, maximum = 10080))]
    pub email_delay_minutes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_frequency: Option<DigestFrequency>,
}

/// An override of the caller's preferences for one organization, one of its workspaces or one
/// of its conversations (`GET /v1/organizations/{org}/notification-preferences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct NotificationOverride {
    pub organization_id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    /// null inherits from the wider scope.
    pub level: Option<NotificationLevel>,
    pub muted_until: Option<DateTime<Utc>>,
}

/// `PUT .../notification-preferences` of an organization, workspace or conversation: the whole
/// override (fields left out are null).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetNotificationOverride {
    /// null inherits from the wider scope.
    #[serde(default)]
    pub level: Option<NotificationLevel>,
    /// A future time, at most a year ahead; null does not mute.
    #[serde(default)]
    pub muted_until: Option<DateTime<Utc>>,
}

/// A person's profile, as the people who share an organization with them see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Profile {
    pub user_id: Uuid,
    pub display_name: String,
    pub status_text: Option<String>,
    /// An IANA time zone name (`Europe/Paris`).
    pub time_zone: Option<String>,
    /// A BCP 47 language tag (`fr`, `pt-BR`).
    pub locale: Option<String>,
    /// An https URL of the picture.
    pub avatar_url: Option<String>,
    /// The uploaded picture's type (`image/png`, `image/jpeg`, `image/webp`), when there is one:
    /// `GET /v1/organizations/{org}/members/{user}/avatar` serves it (`updated_at` tells a cached
    /// copy from a newer one).
    pub avatar_media_type: Option<String>,
    /// The uploaded picture's size in bytes.
    pub avatar_size_bytes: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

/// `PATCH /v1/profile`: the fields to change; null clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(min_length = 1, max_length = 100))]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, max_length = 140))]
    pub status_text: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, max_length = 64))]
    pub time_zone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, max_length = 35))]
    pub locale: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, max_length = 2048))]
    pub avatar_url: Option<Option<String>>,
}

/// `POST /v1/organizations/{org}/members/lookup`: an exact email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LookupMember {
    #[cfg_attr(feature = "utoipa", schema(max_length = 254))]
    pub email: String,
}

/// One conversation's unread messages: messages of others after the caller's read cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ConversationUnread {
    pub conversation_id: Uuid,
    pub unread: i64,
    pub read_seq: i64,
    pub last_seq: i64,
}

/// `GET /v1/organizations/{org}/unread`: conversations with unread messages, and their sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct UnreadCounts {
    pub organization_id: Uuid,
    pub total: i64,
    /// Only conversations with something unread.
    pub conversations: Vec<ConversationUnread>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_out_field_differs_from_a_null_one() {
        let left_out: UpdateProfile = serde_json::from_str("{}").expect("json");
        assert_eq!(left_out.status_text, None);
        let cleared: UpdateProfile = serde_json::from_str(r#"{"status_text": null}"#).expect("json");
        assert_eq!(cleared.status_text, Some(None));
        let set: UpdateProfile = serde_json::from_str(r#"{"status_text": "away"}"#).expect("json");
        assert_eq!(set.status_text, Some(Some("away".to_owned())));
        assert_eq!(serde_json::to_string(&cleared).expect("json"), r#"{"status_text":null}"#);
    }

    #[test]
    fn levels_and_frequencies_read_back_their_words() {
        for level in [NotificationLevel::All, NotificationLevel::Mentions, NotificationLevel::None] {
            assert_eq!(NotificationLevel::parse(level.as_str()), Some(level));
        }
        for frequency in [DigestFrequency::Hourly, DigestFrequency::Daily, DigestFrequency::Weekly] {
            assert_eq!(DigestFrequency::parse(frequency.as_str()), Some(frequency));
        }
    }
}
