//! Every place prompt text can hide, per API family: which field and role the walk gives it.

use super::*;
use crate::policy::body::read_keys::{read_key_variant, READ_KEYS};
use crate::policy::body::text::{read_offset, unescape, unescape_mapped};
use crate::policy::body::NoText;

/// Collects (text, field, role) for string values, resolving roles after the walk.
#[derive(Default)]
struct Collect(Vec<(String, TextAt)>);

impl TextSink for Collect {
    fn text(&mut self, text: &str, at: TextAt) {
        self.0.push((text.to_owned(), at));
    }
}

fn texts(endpoint: Endpoint, body: &str) -> Vec<(String, TextField, Option<String>)> {
    let mut sink = Collect::default();
    let walked = walk(body.as_bytes(), endpoint, &mut sink).unwrap();
    sink.0
        .into_iter()
        .filter(|(_, at)| at.span.is_some())
        .map(|(text, at)| {
            let role = at.message.and_then(|index| {
                walked
                    .roles
                    .get(index as usize)
                    .cloned()
                    .flatten()
                    .map(|role| role.into_owned())
            });
            (text, at.field, role)
        })
        .collect()
}

/// The field and role of the string value `needle`.
fn place_of(endpoint: Endpoint, body: &str, needle: &str) -> (TextField, Option<String>) {
    let found = texts(endpoint, body);
    found
        .iter()
        .find(|(text, _, _)| text == needle)
        .map(|(_, field, role)| (*field, role.clone()))
        .unwrap_or_else(|| panic!("{needle:?} not handed out; got {found:?}"))
}

macro_rules! places {
    ($($name:ident: $endpoint:ident, $body:expr, $needle:expr => $field:ident, $role:expr;)*) => {$(
        #[test]
        fn $name() {
            let role: Option<&str> = $role;
            assert_eq!(
                place_of(Endpoint::$endpoint, $body, $needle),
                (TextField::$field, role.map(str::to_owned))
            );
        }
    )*};
}

places! {
    chat_string_content: ChatCompletions, r#"{"model":"m","messages":[{"role":"user","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    chat_role_after_content: ChatCompletions, r#"{"messages":[{"content":"HELLO","role":"system"}],"model":"m"}"#, "HELLO" => MessageContent, Some("system");
    chat_developer: ChatCompletions, r#"{"model":"m","messages":[{"role":"developer","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("developer");
    chat_text_part: ChatCompletions, r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    chat_part_type_after_text: ChatCompletions, r#"{"model":"m","messages":[{"role":"user","content":[{"text":"HELLO","type":"text"}]}]}"#, "HELLO" => MessageContent, Some("user");
    chat_escaped_text: ChatCompletions, r#"{"model":"m","messages":[{"role":"user","content":"HE\u004cLO"}]}"#, "HELLO" => MessageContent, Some("user");
    chat_tool_call_arguments: ChatCompletions, r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"HELLO"}}]}]}"#, "HELLO" => ToolArguments, Some("assistant");
    chat_tool_message: ChatCompletions, r#"{"model":"m","messages":[{"role":"tool","tool_call_id":"1","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("tool");
    chat_name: ChatCompletions, r#"{"model":"m","messages":[{"role":"user","name":"HELLO","content":"x"}]}"#, "HELLO" => MessageContent, Some("user");
    chat_tool_definition: ChatCompletions, r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","description":"HELLO"}}]}"#, "HELLO" => Other, None;
    chat_unknown_field: ChatCompletions, r#"{"model":"m","messages":[],"metadata":{"note":"HELLO"}}"#, "HELLO" => Other, None;
    completions_prompt: Completions, r#"{"model":"m","prompt":"HELLO"}"#, "HELLO" => Prompt, None;
    completions_prompt_list: Completions, r#"{"model":"m","prompt":["a","HELLO"]}"#, "HELLO" => Prompt, None;
    embeddings_input: Embeddings, r#"{"model":"m","input":"HELLO"}"#, "HELLO" => Prompt, None;
    embeddings_input_list: Embeddings, r#"{"model":"m","input":["a","HELLO"]}"#, "HELLO" => Prompt, None;
    responses_input_string: Responses, r#"{"model":"m","input":"HELLO"}"#, "HELLO" => Prompt, None;
    responses_instructions: Responses, r#"{"model":"m","instructions":"HELLO","input":"x"}"#, "HELLO" => System, None;
    responses_input_item: Responses, r#"{"model":"m","input":[{"role":"user","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    responses_input_part: Responses, r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    responses_function_call: Responses, r#"{"model":"m","input":[{"type":"function_call","call_id":"1","name":"f","arguments":"HELLO"}]}"#, "HELLO" => ToolArguments, Some("assistant");
    responses_function_output: Responses, r#"{"model":"m","input":[{"type":"function_call_output","call_id":"1","output":"HELLO"}]}"#, "HELLO" => ToolResults, Some("tool");
    anthropic_system_string: Messages, r#"{"model":"m","system":"HELLO","messages":[]}"#, "HELLO" => System, None;
    anthropic_system_blocks: Messages, r#"{"model":"m","system":[{"type":"text","text":"HELLO"}],"messages":[]}"#, "HELLO" => System, None;
    anthropic_string_content: Messages, r#"{"model":"m","messages":[{"role":"user","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    anthropic_text_block: Messages, r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"text","text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("assistant");
    anthropic_tool_use_input: Messages, r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"q":"HELLO"}}]}]}"#, "HELLO" => ToolArguments, Some("assistant");
    anthropic_tool_result_string: Messages, r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"HELLO"}]}]}"#, "HELLO" => ToolResults, Some("user");
    anthropic_tool_result_blocks: Messages, r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"HELLO"}]}]}]}"#, "HELLO" => ToolResults, Some("user");
    gemini_part_text: GeminiGenerate, r#"{"contents":[{"role":"user","parts":[{"text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    gemini_model_turn: GeminiGenerate, r#"{"contents":[{"parts":[{"text":"HELLO"}],"role":"model"}]}"#, "HELLO" => MessageContent, Some("model");
    gemini_system_instruction: GeminiGenerate, r#"{"systemInstruction":{"parts":[{"text":"HELLO"}]},"contents":[]}"#, "HELLO" => System, None;
    gemini_function_call_args: GeminiGenerate, r#"{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":{"q":"HELLO"}}}]}]}"#, "HELLO" => ToolArguments, Some("model");
    gemini_function_response: GeminiGenerate, r#"{"contents":[{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"r":"HELLO"}}}]}]}"#, "HELLO" => ToolResults, Some("user");
    azure_chat_content: AzureChatCompletions, r#"{"messages":[{"role":"user","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    azure_embeddings_input: AzureEmbeddings, r#"{"input":["HELLO"]}"#, "HELLO" => Prompt, None;
    bedrock_converse_text: BedrockConverse, r#"{"messages":[{"role":"user","content":[{"text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    bedrock_converse_system: BedrockConverse, r#"{"system":[{"text":"HELLO"}],"messages":[]}"#, "HELLO" => System, None;
    bedrock_tool_use: BedrockConverse, r#"{"messages":[{"role":"assistant","content":[{"toolUse":{"toolUseId":"1","name":"f","input":{"q":"HELLO"}}}]}]}"#, "HELLO" => ToolArguments, Some("assistant");
    bedrock_tool_result: BedrockConverse, r#"{"messages":[{"role":"user","content":[{"toolResult":{"toolUseId":"1","content":[{"text":"HELLO"}]}}]}]}"#, "HELLO" => ToolResults, Some("user");
    bedrock_invoke_anthropic: BedrockInvoke, r#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    bedrock_invoke_titan: BedrockInvoke, r#"{"inputText":"HELLO"}"#, "HELLO" => Prompt, None;
    gemini_turn_without_role: GeminiGenerate, r#"{"contents":[{"parts":[{"text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    chat_turn_without_role: ChatCompletions, r#"{"model":"m","messages":[{"content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    anthropic_turn_without_role: Messages, r#"{"model":"m","messages":[{"content":[{"type":"text","text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    converse_turn_without_role: BedrockConverse, r#"{"messages":[{"content":[{"text":"HELLO"}]}]}"#, "HELLO" => MessageContent, Some("user");
    responses_item_without_role: Responses, r#"{"model":"m","input":[{"type":"message","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
    responses_custom_output: Responses, r#"{"model":"m","input":[{"output":"HELLO","type":"custom_tool_call_output","call_id":"1"}]}"#, "HELLO" => ToolResults, Some("tool");
    count_tokens_messages: CountTokens, r#"{"model":"m","messages":[{"role":"user","content":"HELLO"}]}"#, "HELLO" => MessageContent, Some("user");
}

#[test]
fn keys_of_tool_arguments_are_handed_out() {
    let mut sink = Collect::default();
    let body = r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"tool_use","input":{"HELLO":1}}]}]}"#;
    walk(body.as_bytes(), Endpoint::Messages, &mut sink).unwrap();
    let key = sink.0.iter().find(|(text, _)| text == "HELLO").unwrap();
    assert_eq!(key.1.span, None);
    assert_eq!(key.1.field, TextField::ToolArguments);
}

#[test]
fn every_string_value_is_handed_out_once_in_order() {
    let body =
        r#"{"a":"1","model":"m","b":["2",{"c":"3"}],"messages":[{"role":"user","content":"4"}]}"#;
    let mut sink = Collect::default();
    walk(body.as_bytes(), Endpoint::ChatCompletions, &mut sink).unwrap();
    let values: Vec<(String, &str)> = sink
        .0
        .iter()
        .filter_map(|(text, at)| Some((text.clone(), body.get(at.span?.range())?)))
        .collect();
    // The model and the role are handed out without a span.
    assert_eq!(
        values,
        vec![
            ("1".into(), r#""1""#),
            ("2".into(), r#""2""#),
            ("3".into(), r#""3""#),
            ("4".into(), r#""4""#),
        ]
    );
}

#[test]
fn opaque_parts_are_noticed() {
    for (body, kind) in [
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#,
            "image",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x"}}]}]}"#,
            "audio",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}]}"#,
            "image",
        ),
    ] {
        let walked = walk(body.as_bytes(), Endpoint::ChatCompletions, &mut NoText).unwrap();
        assert_eq!(walked.opaque, Some(kind), "{body}");
    }
    let plain = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"image":"not a part"}"#;
    assert_eq!(
        walk(plain.as_bytes(), Endpoint::ChatCompletions, &mut NoText)
            .unwrap()
            .opaque,
        None
    );
}

#[test]
fn strictness_is_kept() {
    for body in [
        r#"{"model":"m","messages":[{"role":"user","role":"system","content":"x"}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"text":"a","text":"b"}]}]}"#,
    ] {
        assert!(matches!(
            walk(body.as_bytes(), Endpoint::ChatCompletions, &mut NoText),
            Err(BodyError::Json(JsonError::Violation(
                Violation::DuplicateKey(_)
            )))
        ));
    }
    let deep = format!(
        r#"{{"model":"m","messages":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(walk(deep.as_bytes(), Endpoint::ChatCompletions, &mut NoText).is_err());
}

fn located(endpoint: Endpoint, watch: Watch, body: &str) -> Located {
    walk_watching(body.as_bytes(), endpoint, watch, &mut NoText)
        .unwrap()
        .located
}

const ALL: Watch = Watch {
    stream: true,
    output_tokens: true,
};

/// The raw text of a located value.
fn text_of(body: &str, found: Option<LocatedValue>) -> Option<&str> {
    found.and_then(|found| body.get(found.span.range()))
}

#[test]
fn nothing_is_located_without_a_watch() {
    let body = r#"{"model":"m","stream":true,"max_tokens":5}"#;
    assert_eq!(
        located(Endpoint::ChatCompletions, Watch::default(), body),
        Located::default()
    );
}

#[test]
fn watched_values_are_located_by_their_raw_text() {
    let body = r#"{ "model":"m", "max_tokens" : 1e3 ,"stream":true,
        "stream_options" : { "include_usage" : null } ,"max_completion_tokens":null }"#;
    let found = located(Endpoint::ChatCompletions, ALL, body);
    assert_eq!(text_of(body, found.get(Watched::MaxTokens)), Some("1e3"));
    assert_eq!(text_of(body, found.get(Watched::Stream)), Some("true"));
    assert_eq!(
        text_of(body, found.get(Watched::StreamOptions)),
        Some(r#"{ "include_usage" : null }"#)
    );
    assert_eq!(
        text_of(body, found.get(Watched::IncludeUsage)),
        Some("null")
    );
    assert_eq!(
        text_of(body, found.get(Watched::MaxCompletionTokens)),
        Some("null")
    );
    let options = found.get(Watched::StreamOptions).unwrap().object.unwrap();
    assert_eq!(body.as_bytes()[options.close], b'}');
    assert!(!options.empty);
    let top = found.top.unwrap();
    assert_eq!(top.close, body.len() - 1);
    assert!(!top.empty);
}

#[test]
fn object_ends_and_emptiness() {
    for (body, empty) in [
        (r#"{"generationConfig":{}}"#, true),
        ("{\"generationConfig\":{ \n\t}}", true),
        (r#"{"generationConfig":{"topK":1}}"#, false),
        (r#"{"generationConfig":{"x":{}}}"#, false),
    ] {
        let found = located(Endpoint::GeminiGenerate, ALL, body);
        let config = found.get(Watched::GenerationConfig).unwrap();
        let object = config.object.unwrap();
        assert_eq!(object.empty, empty, "{body}");
        assert_eq!(object.close, config.span.end - 1, "{body}");
        assert_eq!(body.as_bytes()[object.close], b'}');
    }
    for (body, empty, close) in [
        ("{}", true, 1),
        (" {\n} \n", true, 3),
        (r#"{"a":1} "#, false, 6),
    ] {
        let top = located(Endpoint::GeminiGenerate, ALL, body).top.unwrap();
        assert_eq!((top.empty, top.close), (empty, close), "{body:?}");
    }
    let found = located(Endpoint::GeminiGenerate, ALL, r#"{"generationConfig":[1]}"#);
    assert_eq!(found.get(Watched::GenerationConfig).unwrap().object, None);
}

#[test]
fn only_the_endpoints_fields_are_located() {
    let body = r#"{"stream":true,"max_tokens":1,"max_output_tokens":2,"generationConfig":{"maxOutputTokens":3},"inferenceConfig":{"maxTokens":4}}"#;
    let get = |endpoint, what| text_of(body, located(endpoint, ALL, body).get(what));
    assert_eq!(
        get(Endpoint::Responses, Watched::MaxOutputTokens),
        Some("2")
    );
    assert_eq!(get(Endpoint::Responses, Watched::MaxTokens), None);
    assert_eq!(get(Endpoint::Responses, Watched::Stream), Some("true"));
    assert_eq!(get(Endpoint::Responses, Watched::StreamOptions), None);
    assert_eq!(get(Endpoint::Embeddings, Watched::Stream), None);
    assert_eq!(get(Endpoint::Messages, Watched::MaxTokens), Some("1"));
    assert_eq!(
        get(Endpoint::GeminiGenerate, Watched::GeminiMaxOutputTokens),
        Some("3")
    );
    assert_eq!(
        get(Endpoint::GeminiGenerate, Watched::MaxOutputTokens),
        None
    );
    assert_eq!(
        get(Endpoint::BedrockConverse, Watched::InferenceMaxTokens),
        Some("4")
    );
    assert_eq!(get(Endpoint::Embeddings, Watched::MaxTokens), None);
    // Nested keys only count inside their own object.
    let nested = r#"{"metadata":{"max_tokens":9,"maxOutputTokens":9},"contents":[]}"#;
    let found = located(Endpoint::GeminiGenerate, ALL, nested);
    assert_eq!(found.get(Watched::GeminiMaxOutputTokens), None);
    let found = located(Endpoint::ChatCompletions, ALL, nested);
    assert_eq!(found.get(Watched::MaxTokens), None);
}

#[test]
fn located_values_are_walked_like_any_other() {
    // Strings inside located values are handed out, in order, with their spans in the body.
    let body = r#"{"a":"1","stream_options":{"x":"2","include_usage":"3"},"max_tokens":"4","model":"m","b":"5"}"#;
    let mut sink = Collect::default();
    let walked = walk_watching(body.as_bytes(), Endpoint::ChatCompletions, ALL, &mut sink).unwrap();
    let values: Vec<(String, &str, TextField)> = sink
        .0
        .iter()
        .filter_map(|(text, at)| Some((text.clone(), body.get(at.span?.range())?, at.field)))
        .collect();
    assert_eq!(
        values,
        vec![
            ("1".into(), r#""1""#, TextField::Other),
            ("2".into(), r#""2""#, TextField::Other),
            ("3".into(), r#""3""#, TextField::Other),
            ("4".into(), r#""4""#, TextField::Other),
            ("5".into(), r#""5""#, TextField::Other),
        ]
    );
    let keys: Vec<&str> = sink
        .0
        .iter()
        .filter(|(_, at)| at.span.is_none())
        .map(|(text, _)| text.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "a",
            "stream_options",
            "x",
            "include_usage",
            "max_tokens",
            // The model is scanned, without a span (a redaction there blocks).
            "m",
            "b"
        ]
    );
    assert_eq!(walked.model.unwrap().name, "m");
    // The same spans as without a watch.
    let mut plain = Collect::default();
    walk(body.as_bytes(), Endpoint::ChatCompletions, &mut plain).unwrap();
    assert_eq!(plain.0, sink.0);
}

#[test]
fn located_values_are_read_as_strictly() {
    for body in [
        r#"{"model":"m","stream_options":{"include_usage":true,"include_usage":false}}"#,
        r#"{"model":"m","stream_options":{"x":{"a":1,"a":2}}}"#,
        r#"{"model":"m","max_tokens":{"a":1,"a":2}}"#,
    ] {
        assert!(
            matches!(
                walk_watching(body.as_bytes(), Endpoint::ChatCompletions, ALL, &mut NoText),
                Err(BodyError::Json(JsonError::Violation(
                    Violation::DuplicateKey(_)
                )))
            ),
            "{body}"
        );
    }
    // Depth counts through a located value as through any other.
    let deep = |levels: usize| {
        format!(
            r#"{{"model":"m","stream_options":{}{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let deepest = (1..100)
        .take_while(|levels| {
            walk(
                deep(*levels).as_bytes(),
                Endpoint::ChatCompletions,
                &mut NoText,
            )
            .is_ok()
        })
        .last()
        .unwrap();
    assert!(deepest >= 60, "{deepest}");
    assert!(walk_watching(
        deep(deepest).as_bytes(),
        Endpoint::ChatCompletions,
        ALL,
        &mut NoText
    )
    .is_ok());
    assert!(matches!(
        walk_watching(
            deep(deepest + 1).as_bytes(),
            Endpoint::ChatCompletions,
            ALL,
            &mut NoText
        ),
        Err(BodyError::Json(JsonError::Violation(Violation::TooDeep)))
    ));
}

#[test]
fn the_body_model_is_scanned_without_a_span() {
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::AzureChatCompletions,
        Endpoint::GeminiGenerate,
        Endpoint::BedrockConverse,
        Endpoint::BedrockInvoke,
    ] {
        let body = r#"{"model":"HELLO","messages":[]}"#;
        let mut sink = Collect::default();
        walk(body.as_bytes(), endpoint, &mut sink).unwrap();
        let model = sink.0.iter().find(|(text, _)| text == "HELLO");
        assert_eq!(
            model.map(|(_, at)| (at.span, at.field)),
            Some((None, TextField::Other)),
            "{endpoint:?}"
        );
    }
    let inner = r#"{"generateContentRequest":{"model":"models/HELLO","contents":[]}}"#;
    let walked = walk(inner.as_bytes(), Endpoint::GeminiGenerate, &mut NoText).unwrap();
    assert_eq!(walked.model, None);
    assert_eq!(
        walked.inner_models.first().map(|m| m.name.as_str()),
        Some("models/HELLO")
    );
}

#[test]
fn read_keys_are_distinct_once_folded() {
    let all: Vec<&str> = READ_KEYS
        .iter()
        .chain(
            crate::policy::parts::READ_PART_KEYS
                .iter()
                .copied()
                .flatten(),
        )
        .copied()
        .collect();
    for a in &all {
        assert_eq!(read_key_variant(a), None, "{a}");
        let variant = a.to_ascii_uppercase();
        assert_eq!(read_key_variant(&variant), Some(*a), "{a}");
    }
}

#[test]
fn unescapes_json_text_inside_strings() {
    for (text, expected) in [
        (r"\u0041KIA", Some("AKIA")),
        (r"a\nb\t\/\\\x", Some("a\nb\t/\\\\x")),
        (r"\ud83d\ude00", Some("\u{1f600}")),
        (r"\ud800x", Some("\u{fffd}x")),
        (r"\u12", None),
        (r"plain", None),
        (r"trailing\", None),
        (r"two\\", Some(r"two\")),
    ] {
        assert_eq!(unescape(text).as_deref(), expected, "{text}");
    }
}

#[test]
fn unescape_maps_each_decoded_byte_to_where_it_was_read() {
    for (text, expected) in [
        (r"a\u0040b", vec![0, 1, 7, 8]),
        (r"\n", vec![0, 2]),
        (r"\q\n", vec![0, 1, 2, 4]),
        (r"\u00e9!", vec![0, 0, 6, 7]),
        (r"\ud83d\ude00", vec![0, 0, 0, 0, 12]),
    ] {
        let (decoded, offsets) = unescape_mapped(text).unwrap();
        let map: Vec<usize> = (0..=decoded.len())
            .map(|at| offsets.read_at(at).unwrap())
            .collect();
        assert_eq!(map, expected, "{text}");
    }
}

#[test]
fn decoded_layers_lead_back_to_the_string_as_read() {
    // `\\u0041` decodes to `\u0041`, then to `A`: each layer's bytes lead back to the escape.
    let text = r"x\\u0041y";
    let (first, one) = unescape_mapped(text).unwrap();
    let (second, two) = unescape_mapped(&first).unwrap();
    assert_eq!(second, "xAy");
    let layers = [one, two];
    let map: Vec<usize> = (0..=second.len())
        .map(|at| read_offset(&layers, at).unwrap())
        .collect();
    assert_eq!(map, vec![0, 1, 8, 9]);
}

#[test]
fn value_strings_have_spans_and_keys_none() {
    // Escaped quotes and backslashes inside values and keys: each value's span is its whole
    // token, quotes included, and no key has one (a key is never redacted in place).
    let body = r#"{"a" : "x\"y", "b":["z", {"c":"w"}], "d\\":"v"}"#;
    let mut sink = Collect::default();
    walk(body.as_bytes(), Endpoint::ChatCompletions, &mut sink).unwrap();
    let values: Vec<&str> = sink
        .0
        .iter()
        .filter_map(|(_, at)| body.get(at.span?.range()))
        .collect();
    assert_eq!(values, vec![r#""x\"y""#, r#""z""#, r#""w""#, r#""v""#]);
    let keys: Vec<&str> = sink
        .0
        .iter()
        .filter(|(_, at)| at.span.is_none())
        .map(|(text, _)| text.as_str())
        .collect();
    assert_eq!(keys, vec!["a", "b", "c", "d\\"]);
}

/// Collects the runs of text parts the walk hands out, as the texts of their strings.
#[derive(Default)]
struct Runs {
    spans: Vec<(Span, String)>,
    runs: Vec<Vec<String>>,
}

impl TextSink for Runs {
    fn text(&mut self, text: &str, at: TextAt) {
        if let Some(span) = at.span {
            self.spans.push((span, text.to_owned()));
        }
    }

    fn text_parts(&mut self, spans: &[Span]) {
        let texts = spans
            .iter()
            .map(|span| {
                let (_, text) = self.spans.iter().find(|(s, _)| s == span).unwrap();
                text.clone()
            })
            .collect();
        self.runs.push(texts);
    }
}

fn runs(endpoint: Endpoint, body: &str) -> Vec<Vec<String>> {
    let mut sink = Runs::default();
    walk(body.as_bytes(), endpoint, &mut sink).unwrap();
    sink.runs
}

#[test]
fn consecutive_text_parts_of_one_turn_are_handed_out_as_runs() {
    use Endpoint::*;
    let run = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    for (name, endpoint, body, expected) in [
        (
            "chat parts, type after text",
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":[{"text":"a","type":"text"},{"type":"text","text":"b"}]}]}"#,
            vec![run(&["a", "b"])],
        ),
        (
            "an image breaks the run",
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"b"},{"type":"text","text":"c"}]}]}"#,
            vec![run(&["b", "c"])],
        ),
        (
            "a refusal part is not text",
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"refusal","refusal":"r"},{"type":"text","text":"b"}]}]}"#,
            vec![],
        ),
        (
            "turns are not joined",
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"user","content":[{"type":"text","text":"b"}]}]}"#,
            vec![],
        ),
        (
            "a tool result's blocks among themselves",
            Messages,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"b"},{"type":"text","text":"c"}]},{"type":"text","text":"d"}]}]}"#,
            vec![run(&["b", "c"])],
        ),
        (
            "system blocks",
            Messages,
            r#"{"model":"m","system":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"messages":[]}"#,
            vec![run(&["a", "b"])],
        ),
        (
            "Gemini parts and system instruction",
            GeminiGenerate,
            r#"{"systemInstruction":{"parts":[{"text":"s1"},{"text":"s2"}]},"contents":[{"parts":[{"text":"a"},{"inlineData":{"data":"x"}},{"text":"b"},{"text":"c"}]}]}"#,
            vec![run(&["s1", "s2"]), run(&["b", "c"])],
        ),
        (
            "Converse content",
            BedrockConverse,
            r#"{"messages":[{"role":"user","content":[{"text":"a"},{"text":"b"}]}],"system":[{"text":"s"}]}"#,
            vec![run(&["a", "b"])],
        ),
        (
            "Responses content parts",
            Responses,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]}"#,
            vec![run(&["a", "b"])],
        ),
        (
            "a text that is not a string",
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":["x","y"]},{"type":"text","text":"b"}]}]}"#,
            vec![],
        ),
        (
            "completions prompts are separate prompts",
            Completions,
            r#"{"model":"m","prompt":["a","b"]}"#,
            vec![],
        ),
    ] {
        assert_eq!(runs(endpoint, body), expected, "{name}");
    }
}
