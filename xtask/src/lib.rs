pub mod schema_docs;
