//! What a request knows about its caller once it is inside the database: shared plumbing every
//! feature stands on, and none owns.
//!
//! - [`membership`]: the tenant transaction and the caller's role in an organization
//!   ([`member_tx`]), with the organization's security policy enforced on the way in;
//! - [`seat`](mod@seat): the caller's place in a conversation ([`seat()`](seat::seat)) and the key
//!   generation rule;
//! - [`session`]: who is calling ([`AuthUser`](session::AuthUser), from the access token).

pub mod membership;
pub mod seat;
pub mod session;

pub use membership::{
    Membership, Role, admin_tx, member_tx, session_expired_by_organization, totp_required_by_organization,
};
pub use seat::{Seat, check_key_generation, kind_str, parse_kind, seat};
