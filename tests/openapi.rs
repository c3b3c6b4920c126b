//! `openapi/openapi.json` is generated from the code; this fails when it is stale.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test --test openapi`.

#[test]
fn committed_spec_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let generated = voxpool::api::spec_json() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale; run `UPDATE_OPENAPI=1 cargo test --test openapi`"
    );
}
