use super::*;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn key(pairs: &[(&str, &str)], target: &str) -> Result<Option<String>, KeyError> {
    find_key(&headers(pairs), target)
        .map(|key| key.map(|key| String::from_utf8(key.into_owned()).unwrap()))
}

const AUTH: Place = Place::Header("authorization");

#[test]
fn keys_are_read_from_every_place() {
    let found = |pairs: &[(&str, &str)], target: &str| key(pairs, target).unwrap();
    for (case, pairs, target, expected) in [
        (
            "bearer",
            &[("authorization", "Bearer k1")][..],
            "/v1/x",
            Some("k1"),
        ),
        (
            "bearer lowercase",
            &[("authorization", "bearer k1")],
            "/v1/x",
            Some("k1"),
        ),
        (
            "bearer upper",
            &[("Authorization", "BEARER k1")],
            "/v1/x",
            Some("k1"),
        ),
        (
            "bearer spaces",
            &[("authorization", "Bearer    k1  ")],
            "/v1/x",
            Some("k1"),
        ),
        (
            "basic ignored",
            &[("authorization", "Basic dXNlcjpw")],
            "/v1/x",
            None,
        ),
        (
            "sigv4 ignored",
            &[(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab",
            )],
            "/v1/x",
            None,
        ),
        (
            "bearer glued",
            &[("authorization", "Bearerk1")],
            "/v1/x",
            None,
        ),
        ("x-api-key", &[("x-api-key", "k2")], "/v1/x", Some("k2")),
        ("api-key", &[("api-key", "k3")], "/v1/x", Some("k3")),
        (
            "x-goog-api-key",
            &[("x-goog-api-key", "k4")],
            "/v1/x",
            Some("k4"),
        ),
        (
            "query",
            &[],
            "/v1beta/models/g:generateContent?key=k5",
            Some("k5"),
        ),
        (
            "query among others",
            &[],
            "/v?alt=sse&key=k6&x=1",
            Some("k6"),
        ),
        ("query name encoded", &[], "/v?k%65y=k7", Some("k7")),
        ("query value encoded", &[], "/v?key=a%2Fb%3D", Some("a/b=")),
        ("plus kept", &[], "/v?key=a+b", Some("a+b")),
        ("keyx is not key", &[], "/v?keyx=1&xkey=2&key_=3", None),
        ("key in the path", &[], "/v1/key=abc", None),
        ("none", &[("x-posturio-consumer", "a")], "/v1/x", None),
        (
            "same key twice",
            &[("authorization", "Bearer same"), ("x-api-key", "same")],
            "/v?key=same",
            Some("same"),
        ),
    ] {
        assert_eq!(found(pairs, target).as_deref(), expected, "{case}");
    }
}

#[test]
fn ambiguous_keys_are_refused() {
    for (case, pairs, target, expected) in [
        (
            "authorization twice",
            &[("authorization", "Bearer a"), ("authorization", "Basic b")][..],
            "/v",
            KeyError::Repeated(AUTH),
        ),
        (
            "x-api-key twice",
            &[("x-api-key", "a"), ("X-Api-Key", "a")],
            "/v",
            KeyError::Repeated(Place::Header("x-api-key")),
        ),
        (
            "parameter twice",
            &[],
            "/v?key=a&key=a",
            KeyError::Repeated(Place::Parameter),
        ),
        (
            "parameter twice, once encoded",
            &[],
            "/v?key=a&%6bey=a",
            KeyError::Repeated(Place::Parameter),
        ),
        (
            "different keys",
            &[("authorization", "Bearer a"), ("x-api-key", "b")],
            "/v",
            KeyError::Different(AUTH, Place::Header("x-api-key")),
        ),
        (
            "header and parameter differ",
            &[("x-goog-api-key", "a")],
            "/v?key=b",
            KeyError::Different(Place::Header("x-goog-api-key"), Place::Parameter),
        ),
        (
            "empty bearer",
            &[("authorization", "Bearer")],
            "/v",
            KeyError::Empty(AUTH),
        ),
        (
            "bearer only spaces",
            &[("authorization", "Bearer   ")],
            "/v",
            KeyError::Empty(AUTH),
        ),
        (
            "bearer two words",
            &[("authorization", "Bearer a b")],
            "/v",
            KeyError::Malformed(AUTH),
        ),
        (
            "empty header",
            &[("api-key", "")],
            "/v",
            KeyError::Empty(Place::Header("api-key")),
        ),
        (
            "empty parameter",
            &[],
            "/v?key=",
            KeyError::Empty(Place::Parameter),
        ),
        (
            "bare parameter",
            &[],
            "/v?key",
            KeyError::Empty(Place::Parameter),
        ),
        ("bad escape", &[], "/v?key=a%zz", KeyError::BadEncoding),
    ] {
        assert_eq!(key(pairs, target), Err(expected), "{case}");
    }
}

#[test]
fn messages_never_hold_the_key() {
    let error = key(
        &[
            ("authorization", "Bearer secret1"),
            ("x-api-key", "secret2"),
        ],
        "/v",
    )
    .unwrap_err();
    let reason = error.reason();
    assert_eq!(
        reason,
        "the authorization header and the x-api-key header carry different keys; send one"
    );
    let reason = KeyError::Repeated(Place::Parameter).reason();
    assert_eq!(
        reason,
        "the \"key\" (or \"$key\") query parameter is sent twice; send one key"
    );
}

#[test]
fn the_key_parameter_is_key_or_dollar_key_in_exactly_that_case() {
    for (target, expected) in [
        ("/v?$key=k", Ok(Some("k"))),
        ("/v?%24key=k", Ok(Some("k"))),
        ("/v?%24k%65y=k", Ok(Some("k"))),
        ("/v?alt=sse&$key=k", Ok(Some("k"))),
        // Only removed: a different case, another credential, a double `$`.
        ("/v?Key=k", Ok(None)),
        ("/v?KEY=k", Ok(None)),
        ("/v?$KEY=k", Ok(None)),
        ("/v?$$key=k", Ok(None)),
        ("/v?access_token=k", Ok(None)),
        ("/v?X-Amz-Signature=k", Ok(None)),
        // `$key` and `key` are one place, given twice, even with the same key.
        ("/v?key=k&$key=k", Err(KeyError::Repeated(Place::Parameter))),
        (
            "/v?$key=a&%24key=b",
            Err(KeyError::Repeated(Place::Parameter)),
        ),
    ] {
        let expected = expected.map(|key: Option<&str>| key.map(str::to_owned));
        assert_eq!(key(&[], target), expected, "{target}");
    }
}

#[test]
fn credential_parameters_are_removed_and_the_rest_kept_byte_for_byte() {
    for (target, expected) in [
        ("/v1/x", None),
        ("/v1/x?alt=sse", None),
        ("/v1/x?keyx=1&xkey=2&key_=3&x-amz=4&amz-x=5", None),
        ("/v1/x?token=1&access=2&api=3&subscription=4", None),
        ("/v1/x?key=a", Some("/v1/x")),
        ("/v1/x?key=a&key=b", Some("/v1/x")),
        ("/v1/x?alt=sse&key=a&b=%2F+x", Some("/v1/x?alt=sse&b=%2F+x")),
        ("/v1/x?k%65y=a&alt=sse", Some("/v1/x?alt=sse")),
        ("/v1/x?a=1&&key&b=2", Some("/v1/x?a=1&&b=2")),
        ("/v1/x?key=a%zz&z", Some("/v1/x?z")),
        // Google's `$` prefix, written or encoded, and any case.
        ("/v1/x?$key=a&alt=sse", Some("/v1/x?alt=sse")),
        ("/v1/x?%24key=a&alt=sse", Some("/v1/x?alt=sse")),
        ("/v1/x?Key=a&KEY=b&kEy=c&z=1", Some("/v1/x?z=1")),
        ("/v1/x?$KEY=a&%24Key=b", Some("/v1/x")),
        // OAuth tokens, other spellings of keys, Azure API Management's key.
        ("/v1/x?alt=sse&access_token=t", Some("/v1/x?alt=sse")),
        ("/v1/x?$access_token=t&alt=sse", Some("/v1/x?alt=sse")),
        ("/v1/x?ACCESS_TOKEN=t", Some("/v1/x")),
        ("/v1/x?oauth_token=t&$oauth_token=u&a=1", Some("/v1/x?a=1")),
        ("/v1/x?api_key=t&apikey=u&ApiKey=v&a=1", Some("/v1/x?a=1")),
        (
            "/v1/x?api-version=2024-10-21&subscription-key=t",
            Some("/v1/x?api-version=2024-10-21"),
        ),
        ("/v1/x?Subscription-Key=t&a=1", Some("/v1/x?a=1")),
        ("/v1/x?api-key=t&api-version=1", Some("/v1/x?api-version=1")),
        (
            "/v1/x?bearer_token=t&$Bearer_Token=u&a=1",
            Some("/v1/x?a=1"),
        ),
        // Every AWS parameter: a SigV4 presigned request's credential, token and signature.
        (
            "/model/m/converse?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1\
             &keep=1&X-Amz-Security-Token=s&X-Amz-Signature=ab&X-Amz-SignedHeaders=host",
            Some("/model/m/converse?keep=1"),
        ),
        ("/v1/x?x-amz-credential=a&x-amz-date=1", Some("/v1/x")),
        ("/v1/x?%58-Amz-Signature=a&b=2", Some("/v1/x?b=2")),
        ("/v1/x?$x-amz-security-token=a&b=2", Some("/v1/x?b=2")),
        // A credential behind a `;`, which some servers read as a separator.
        ("/v1/x?alt=json;key=a&b=2", Some("/v1/x?b=2")),
        ("/v1/x?b=2&x=1;access_token=t", Some("/v1/x?b=2")),
        ("/v1/x?b=2;c=3", None),
    ] {
        assert_eq!(
            without_credential_parameters(target).as_deref(),
            expected,
            "{target}"
        );
    }
}

#[test]
fn hashes() {
    let digest =
        parse_hash("sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08")
            .unwrap();
    assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(b"test")));
    assert_eq!(short_hash(&digest), "sha256:9f86d081884c…");
    for bad in [
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "pst_3q2abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a088",
        "sha256:+f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "sha256:gf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "SHA256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "sha256:éf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",
    ] {
        let error = parse_hash(bad).unwrap_err();
        assert!(error.contains("never the key itself"), "{bad}");
    }
}

#[test]
fn expiry_is_at_or_before_the_request_time() {
    let mut table = KeyTable::default();
    let digest = |key: &[u8]| <[u8; 32]>::from(Sha256::digest(key));
    let entry = |expires| KeyEntry {
        consumer: "search".to_owned(),
        expires,
    };
    table.insert(digest(b"lasting"), entry(None));
    table.insert(digest(b"expiring"), entry(Some(1000)));
    assert_eq!(table.consumer_for(b"lasting", None, None), Ok("search"));
    // Only one consumer's keys: another's is unknown, like a guess.
    assert_eq!(
        table.consumer_for(b"lasting", None, Some("search")),
        Ok("search")
    );
    assert_eq!(
        table.consumer_for(b"lasting", None, Some("ops")),
        Err(KeyRefused::Unknown)
    );
    assert_eq!(
        table.consumer_for(b"expiring", Some(1001), Some("ops")),
        Err(KeyRefused::Unknown)
    );
    assert_eq!(
        table.consumer_for(b"expiring", Some(999), None),
        Ok("search")
    );
    assert_eq!(
        table.consumer_for(b"expiring", Some(1000), None),
        Err(KeyRefused::Expired(1000))
    );
    assert_eq!(
        table.consumer_for(b"expiring", Some(1001), None),
        Err(KeyRefused::Expired(1000))
    );
    assert_eq!(
        table.consumer_for(b"expiring", None, None),
        Err(KeyRefused::NoClock)
    );
    assert_eq!(
        table.consumer_for(b"other", Some(0), None),
        Err(KeyRefused::Unknown)
    );
}

#[test]
fn credential_headers_are_found_in_either_spelling() {
    let headers: Vec<(String, Vec<u8>)> = [
        "authorization",
        "x_api_key",
        "X_Goog_Api_Key",
        "api_key",
        "apikey",
        "cf-aig-authorization",
        "x-litellm-api-key",
        "x_apikey",
        "x-goog-iam-authorization-token",
        "x-serverless-authorization",
        "x-forwarded-authorization",
        "authorization",
        "content-type",
        "x-api-keys",
        "x-api",
        "keys",
    ]
    .iter()
    .map(|name| (name.to_string(), b"v".to_vec()))
    .collect();
    assert_eq!(
        credential_headers_sent(&headers),
        vec![
            "authorization",
            "x_api_key",
            "X_Goog_Api_Key",
            "api_key",
            "apikey",
            "cf-aig-authorization",
            "x-litellm-api-key",
            "x_apikey",
            "x-goog-iam-authorization-token",
            "x-serverless-authorization",
            "x-forwarded-authorization",
        ]
    );
}

#[test]
fn the_other_credential_parameters_are_removed_too() {
    // Azure Functions' `code`, Azure's signed-URL `sig`, an OAuth client's secret.
    assert_eq!(
        without_credential_parameters(
            "/v1/chat/completions?code=F&alt=json&SIG=S&x-api-key=K&client_secret=C&codex=1"
        )
        .as_deref(),
        Some("/v1/chat/completions?alt=json&codex=1")
    );
}
