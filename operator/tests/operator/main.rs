//! Integration tests of the operator: the CRD manifests, and the PostgreSQL layer against a
//! real database (each test with its own, from `conclave_testkit::TestDb`).

mod crds;
