//! The OpenAPI document kept in the repo (`docs/openapi.json`) must be what the code generates.
//! After an intended API change: `UPDATE_OPENAPI=1 cargo test -p status-check --test it openapi`.

use std::path::Path;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = status_check::http::openapi()
        .to_pretty_json()
        .expect("the document serialises")
        + "\n";
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&file, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date; regenerate it with \
         UPDATE_OPENAPI=1 cargo test -p status-check --test it openapi"
    );
    let document: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/status-check/check",
        "/v1/status-check/check/{statusCheckId}",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/internal/v1/monitors",
        "/internal/v1/monitors/{robotId}/{ruleId}",
    ] {
        assert!(document["paths"][path].is_object(), "{path} undocumented");
        for operation in document["paths"][path].as_object().unwrap().values() {
            for status in ["500", "503"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{path}: {status} undocumented"
                );
            }
        }
    }
    for method in ["put", "get", "delete"] {
        let operation = &document["paths"]["/internal/v1/monitors/{robotId}/{ruleId}"][method];
        assert_eq!(
            operation["security"],
            serde_json::json!([{"internalToken": []}]),
            "{method}: the internal API takes the bearer token"
        );
        assert!(
            operation["responses"]["401"].is_object(),
            "{method}: 401 undocumented"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["internalToken"]["scheme"],
        "bearer"
    );
    let created = &document["paths"]["/v1/status-check/check"]["post"]["responses"]["201"];
    assert_eq!(
        created["links"]["GetCheck"]["operationId"], "get_check",
        "the create links to reading the check"
    );
}
