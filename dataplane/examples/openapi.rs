//! Prints the OpenAPI document (what `cargo xtask openapi` writes to `docs/openapi.json`).

fn main() {
    print!("{}", conclave_dataplane::openapi::to_pretty_json(&conclave_dataplane::openapi_document()));
}
