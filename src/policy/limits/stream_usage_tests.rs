use super::*;

#[test]
fn gemini_answer_formats() {
    for (query, read) in [
        ("", true),
        ("?", true),
        ("?alt=sse", true),
        ("?alt=json", true),
        ("?key=k&alt=sse", true),
        ("?alternative=proto", false),
        ("?%24alt=sse", true),
        ("?alt=proto", false),
        ("?$alt=proto", false),
        ("?%24alt=proto", false),
        ("?%61lt=proto", false),
        ("?alt=%70roto", false),
        ("?alt=SSE", false),
        ("?alt=", false),
        ("?alt", false),
        ("?alt=sse&alt=sse", false),
        ("?alt=sse&$alt=proto", false),
        ("?alt=sse&%zz=1", false),
        ("?alt=%2", false),
        ("?alt=%+f", false),
        ("?alt=%ff", false),
    ] {
        assert_eq!(gemini_format(query).is_none(), read, "{query}");
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
    assert_eq!(percent_decode("%").as_deref(), None);
    assert_eq!(percent_decode("%4").as_deref(), None);
    assert_eq!(percent_decode("%-1").as_deref(), None);
    assert_eq!(percent_decode("%c3%a9").as_deref(), Some("é"));
}

/// Whether a Gemini query leaves the answer's usage readable.
macro_rules! queries {
    ($($name:ident: $query:expr => $read:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(gemini_format($query).is_none(), $read, "{}", $query);
        }
    )*};
}

// Only parameters known to keep the answer's shape pass; every other one is a reason.
queries! {
    query_key: "?key=k" => true;
    query_dollar_key: "?%24key=k&alt=sse" => true;
    query_pretty_print: "?alt=sse&prettyPrint=false" => true;
    query_dollar_pretty_print: "?$prettyPrint=true" => true;
    query_pretty_print_other: "?prettyPrint=1" => false;
    query_quota_user: "?quotaUser=u&userProject=p&$.xgafv=2" => true;
    query_access_token: "?access_token=t" => true;
    query_empty_pairs: "?&alt=sse&" => true;
    query_fields: "?fields=candidates" => false;
    query_dollar_fields: "?$fields=candidates" => false;
    query_encoded_fields: "?%24fields=candidates" => false;
    query_callback: "?callback=cb" => false;
    query_dollar_callback: "?%24callback=cb" => false;
    query_content_type_override: "?$ct=application%2Fjson%2Bprotobuf" => false;
    query_method_override: "?$httpMethod=GET" => false;
    query_output_defaults: "?$outputDefaults=true" => false;
    query_upload_type: "?uploadType=media" => false;
    query_semicolon: "?x=1;alt=proto" => false;
    query_semicolon_in_a_value: "?key=k;alt=proto" => false;
    query_upper_case_alt: "?ALT=proto" => false;
    query_alt_brackets: "?alt[]=proto" => false;
    query_unknown: "?foo=bar" => false;
    query_name_undecodable: "?%zz=1" => false;
}

fn gemini() -> Classified {
    crate::policy::classify::classify("POST", "/v1beta/models/m:generateContent")
        .unwrap_or_else(|| panic!("classified"))
}

fn with_header(name: &str, value: &str) -> Option<String> {
    let headers = vec![
        (
            ":path".to_owned(),
            b"/v1beta/models/m:generateContent".to_vec(),
        ),
        ("content-type".to_owned(), b"application/json".to_vec()),
        ("user-agent".to_owned(), b"google-genai-sdk/1.0".to_vec()),
        (name.to_owned(), value.as_bytes().to_vec()),
    ];
    unread_headers(&gemini(), &headers)
}

/// Whether a Gemini request with one more header leaves the answer's usage readable.
macro_rules! headers {
    ($($name:ident: $header:expr, $value:expr => $read:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(with_header($header, $value).is_none(), $read, "{}: {}", $header, $value);
        }
    )*};
}

headers! {
    header_api_key: "x-goog-api-key", "k" => true;
    header_api_client: "X-Goog-Api-Client", "genai-py/1.0" => true;
    header_user_project: "x-goog-user-project", "p" => true;
    header_ordinary: "x-request-id", "1" => true;
    header_accept_json: "accept", "application/json" => true;
    header_accept_any: "accept", "*/*" => true;
    header_accept_axios_default: "accept", "application/json, text/plain, */*" => true;
    header_accept_sse_with_params: "accept", "text/event-stream; q=1, application/json;q=0.5" => true;
    header_field_mask: "X-Goog-FieldMask", "candidates" => false;
    header_field_mask_lower: "x-goog-fieldmask", "candidates" => false;
    header_unknown_google: "x-goog-visibilities", "x" => false;
    header_method_override: "X-HTTP-Method-Override", "GET" => false;
    header_method: "x-http-method", "GET" => false;
    header_server_timeout: "x-server-timeout", "1" => false;
    header_accept_protobuf: "accept", "application/x-protobuf" => false;
    header_accept_protobuf_among_others: "accept", "application/json, application/x-protobuf" => false;
    header_accept_javascript: "accept", "text/javascript" => false;
}

#[test]
fn headers_matter_only_for_gemini_generation() {
    let chat = crate::policy::classify::classify("POST", "/v1/chat/completions")
        .unwrap_or_else(|| panic!("classified"));
    let headers = vec![("x-goog-fieldmask".to_owned(), b"x".to_vec())];
    assert_eq!(unread_headers(&chat, &headers), None);
    let count = crate::policy::classify::classify("POST", "/v1beta/models/m:countTokens")
        .unwrap_or_else(|| panic!("classified"));
    assert_eq!(unread_headers(&count, &headers), None);
}

#[test]
fn header_reasons_name_the_header_never_its_value() {
    let reason = with_header("X-Goog-FieldMask", "secret-value").unwrap_or_default();
    assert!(reason.contains("\"x-goog-fieldmask\""), "{reason}");
    assert!(!reason.contains("secret-value"), "{reason}");
}
