//! Sizes the data plane enforces.

/// Members given when a conversation is created.
pub const MAX_INITIAL_MEMBERS: usize = 1000;
/// Messages in one history page.
pub const MAX_PAGE: i64 = 200;
pub const DEFAULT_PAGE: i64 = 50;

/// A page's `limit` parameter: `default` when absent, else 1 to [`MAX_PAGE`] (422
/// `validation_failed` on `limit` otherwise).
pub fn page_limit(limit: Option<i64>, default: i64) -> crate::error::ApiResult<i64> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(crate::error::ApiError::validation("limit", "must be between 1 and 200"));
    }
    Ok(limit)
}
