//! `schema.graphql` is generated from the code; this fails when they drift.
//! Regenerate with `QUIRE_UPDATE_SCHEMA=1 cargo test --test api schema`.

#[test]
fn schema_file_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let sdl = quire::graphql::sdl();
    if std::env::var_os("QUIRE_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &sdl).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == sdl,
        "schema.graphql is stale: run QUIRE_UPDATE_SCHEMA=1 cargo test --test api schema"
    );
}
