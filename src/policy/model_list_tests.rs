use serde_json::{json, Value};

use super::*;

/// Two providers per family mix, aliases, a provider that speaks two families, and two
/// consumers with different lists.
fn policy() -> Policy {
    let config = json!({
        "providers": {
            "openai": { "cluster": "openai", "api": "openai" },
            "anthropic": { "cluster": "anthropic", "api": "anthropic" },
            "google": { "cluster": "google", "api": ["gemini", "openai"] }
        },
        "models": {
            "gpt-4o": { "provider": "openai" },
            "gpt-4o-mini": { "provider": "openai" },
            "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
            "claude-sonnet-4": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514" },
            "claude-haiku-4": { "provider": "anthropic" },
            "gemini-flash": { "provider": "google", "upstream_model": "gemini-2.5-flash" }
        },
        "consumers": {
            "default": { "models": ["gpt-4o-mini"] },
            "search": { "models": ["gpt-4o*", "fast", "claude-*", "gemini-*"] }
        }
    });
    Policy::from_json(config.to_string().as_bytes()).unwrap()
}

fn body(consumer: &str, request: &ModelListRequest) -> Value {
    let policy = policy();
    serde_json::from_slice(&answer(&policy, consumer, request).unwrap()).unwrap()
}

fn request(family: ApiFamily, id: Option<&str>) -> ModelListRequest {
    ModelListRequest {
        family,
        id: id.map(str::to_owned),
    }
}

macro_rules! recognises {
    ($($name:ident: $method:expr, $path:expr, $headers:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let headers: Vec<(String, Vec<u8>)> = $headers
                .iter()
                .map(|(name, value): &(&str, &str)| ((*name).to_owned(), value.as_bytes().to_vec()))
                .collect();
            let found = recognise($method, $path, &headers)
                .map(|request| (request.family, request.id));
            let expected: Option<(ApiFamily, Option<&str>)> = $expected;
            let expected = expected.map(|(family, id)| (family, id.map(str::to_owned)));
            assert_eq!(found, expected, "{} {}", $method, $path);
        }
    )*};
}

const NONE: [(&str, &str); 0] = [];
const ANTHROPIC: [(&str, &str); 1] = [("anthropic-version", "2023-06-01")];

recognises! {
    openai_list: "GET", "/v1/models", NONE => Some((ApiFamily::OpenAi, None));
    openai_list_query_ignored: "GET", "/v1/models?limit=20&after=x", NONE => Some((ApiFamily::OpenAi, None));
    openai_get: "GET", "/v1/models/gpt-4o", NONE => Some((ApiFamily::OpenAi, Some("gpt-4o")));
    openai_get_fine_tuned: "GET", "/v1/models/ft:gpt-4o:org:1", NONE => Some((ApiFamily::OpenAi, Some("ft:gpt-4o:org:1")));
    openai_get_space_refused: "GET", "/v1/models/a%20b", NONE => None;
    openai_get_escape: "GET", "/v1/models/gpt%2D4o", NONE => Some((ApiFamily::OpenAi, Some("gpt-4o")));
    anthropic_list: "GET", "/v1/models?limit=20", ANTHROPIC => Some((ApiFamily::Anthropic, None));
    anthropic_get: "GET", "/v1/models/claude-haiku-4", ANTHROPIC => Some((ApiFamily::Anthropic, Some("claude-haiku-4")));
    gemini_list: "GET", "/v1beta/models?pageSize=50", NONE => Some((ApiFamily::Gemini, None));
    gemini_get: "GET", "/v1beta/models/gemini-flash", NONE => Some((ApiFamily::Gemini, Some("gemini-flash")));
    gemini_call_is_no_model: "GET", "/v1beta/models/gemini-flash:generateContent", NONE => None;
    head_is_no_list: "HEAD", "/v1/models", NONE => None;
    post_is_no_list: "POST", "/v1/models", NONE => None;
    trailing_slash: "GET", "/v1/models/", NONE => None;
    two_segments: "GET", "/v1/models/a/b", NONE => None;
    dot_segment: "GET", "/v1/models/..", NONE => None;
    encoded_slash: "GET", "/v1/models/a%2Fb", NONE => None;
    longer_name: "GET", "/v1/modelsx", NONE => None;
    other_version: "GET", "/v2/models", NONE => None;
    gemini_v1_is_no_list: "GET", "/v1beta/modelsx", NONE => None;
}

#[test]
fn openai_list_holds_the_consumers_openai_models_sorted() {
    let list = body("search", &request(ApiFamily::OpenAi, None));
    assert_eq!(
        list,
        json!({"object": "list", "data": [
            {"id": "fast", "object": "model", "created": 0, "owned_by": "openai"},
            {"id": "gemini-flash", "object": "model", "created": 0, "owned_by": "google"},
            {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "openai"},
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"},
        ]})
    );
}

#[test]
fn each_consumer_sees_its_own_list() {
    let list = body("default", &request(ApiFamily::OpenAi, None));
    assert_eq!(
        list,
        json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"},
        ]})
    );
}

#[test]
fn anthropic_list_holds_the_anthropic_models() {
    let list = body("search", &request(ApiFamily::Anthropic, None));
    assert_eq!(
        list,
        json!({
            "data": [
                {"type": "model", "id": "claude-haiku-4", "display_name": "claude-haiku-4",
                 "created_at": "1970-01-01T00:00:00Z"},
                {"type": "model", "id": "claude-sonnet-4", "display_name": "claude-sonnet-4",
                 "created_at": "1970-01-01T00:00:00Z"},
            ],
            "has_more": false,
            "first_id": "claude-haiku-4",
            "last_id": "claude-sonnet-4",
        })
    );
}

#[test]
fn an_empty_anthropic_list_has_no_first_or_last() {
    let list = body("default", &request(ApiFamily::Anthropic, None));
    assert_eq!(
        list,
        json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
    );
}

#[test]
fn gemini_list_holds_the_gemini_models() {
    let list = body("search", &request(ApiFamily::Gemini, None));
    assert_eq!(
        list,
        json!({"models": [{
            "name": "models/gemini-flash",
            "displayName": "gemini-flash",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }]})
    );
}

#[test]
fn lists_never_show_upstream_names() {
    for family in [ApiFamily::OpenAi, ApiFamily::Anthropic, ApiFamily::Gemini] {
        let text = body("search", &request(family, None)).to_string();
        for upstream in ["claude-sonnet-4-20250514", "gemini-2.5-flash"] {
            assert!(!text.contains(upstream), "{family:?}: {text}");
        }
    }
}

#[test]
fn one_model_is_the_object_alone() {
    assert_eq!(
        body("search", &request(ApiFamily::OpenAi, Some("fast"))),
        json!({"id": "fast", "object": "model", "created": 0, "owned_by": "openai"})
    );
    assert_eq!(
        body(
            "search",
            &request(ApiFamily::Anthropic, Some("claude-sonnet-4"))
        ),
        json!({"type": "model", "id": "claude-sonnet-4", "display_name": "claude-sonnet-4",
               "created_at": "1970-01-01T00:00:00Z"})
    );
    assert_eq!(
        body("search", &request(ApiFamily::Gemini, Some("gemini-flash")))["name"],
        "models/gemini-flash"
    );
}

#[test]
fn a_model_outside_the_list_is_not_found_in_each_shape() {
    let policy = policy();
    for (family, status_field) in [
        (ApiFamily::OpenAi, "/error/type"),
        (ApiFamily::Anthropic, "/error/type"),
        (ApiFamily::Gemini, "/error/status"),
    ] {
        let reply = answer(&policy, "search", &request(family, Some("nope"))).unwrap_err();
        assert_eq!(reply.status(), 404);
        assert_eq!(reply.code.as_str(), "model_not_found");
        let body: Value = serde_json::from_slice(&reply.body()).unwrap();
        let expected = if family == ApiFamily::Gemini {
            "NOT_FOUND"
        } else {
            "not_found_error"
        };
        assert_eq!(body.pointer(status_field), Some(&json!(expected)), "{body}");
    }
}

#[test]
fn another_consumers_model_and_a_missing_one_get_the_same_reply() {
    let policy = policy();
    let reply = |id: &str| {
        let reply = answer(&policy, "default", &request(ApiFamily::OpenAi, Some(id))).unwrap_err();
        String::from_utf8(reply.body()).unwrap().replace(id, "ID")
    };
    // gpt-4o is in the catalogue, for another consumer; gpt-9 exists nowhere.
    assert_eq!(reply("gpt-4o"), reply("gpt-9"));
}

#[test]
fn a_model_of_another_family_is_not_found() {
    let policy = policy();
    // claude-haiku-4 is the consumer's, but not through OpenAI's API.
    let reply = answer(
        &policy,
        "search",
        &request(ApiFamily::OpenAi, Some("claude-haiku-4")),
    )
    .unwrap_err();
    assert_eq!(reply.status(), 404);
    // Nor is an upstream name a model id.
    let reply = answer(
        &policy,
        "search",
        &request(ApiFamily::Anthropic, Some("claude-sonnet-4-20250514")),
    )
    .unwrap_err();
    assert_eq!(reply.status(), 404);
}

#[test]
fn an_unknown_consumer_lists_nothing() {
    assert_eq!(
        body("nobody", &request(ApiFamily::OpenAi, None)),
        json!({"object": "list", "data": []})
    );
}

#[test]
fn paths_that_name_a_model_listing() {
    for (path, names) in [
        ("/v1/models", true),
        ("/v1/models/gpt-4o", true),
        ("/v1/models/gpt-4o/permissions", true),
        ("/openai/models?api-version=2024-10-21", true),
        ("/openai/v1/models", true),
        ("/v1beta/openai/models", true),
        ("/v1/Models", true),
        ("/v1/MODELS", true),
        ("/v1/models;x=1", true),
        ("/v1/models.json", true),
        ("/v1/models:list", true),
        ("/v1beta/models:list", true),
        ("/v1/models,x", true),
        ("/models", true),
        // Anything holding `model`, and the other listings of what serves models.
        ("/v1/modelsx", true),
        ("/v1/models~", true),
        ("/v1/model", true),
        ("/v1/model/info", true),
        ("/v1beta/tunedModels?pageSize=1000", true),
        ("/foundation-models", true),
        ("/v1/files/my-models", true),
        ("/openai/deployments?api-version=2022-12-01", true),
        ("/openai/Deployments/x", true),
        ("/v1/engines", true),
        ("/v1/engines.json", true),
        ("/api/tags", true),
        ("/v1/fine_tuning/jobs", false),
        ("/v1beta/cachedContents", false),
        ("/v1/deploymentsx", false),
        ("/v1/files?name=models", false),
        ("/v1/files", false),
        ("/", false),
    ] {
        assert_eq!(names_model_listing(path), names, "{path}");
    }
}
