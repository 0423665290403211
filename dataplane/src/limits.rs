//! Sizes the data plane enforces.

/// Members given when a conversation is created.
pub const MAX_INITIAL_MEMBERS: usize = 1000;
/// Messages in one history page.
pub const MAX_PAGE: i64 = 200;
pub const DEFAULT_PAGE: i64 = 50;
