//! The schema against a real PostgreSQL: every table, its constraints, the roles and row-level
//! security. Each test gets its own freshly migrated database (conclave-testkit).

mod audit;
mod catalog;
mod constraints;
mod isolation;
