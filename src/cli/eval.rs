//! `posturio eval`: one request through the policy, the decision printed as JSON.

use serde_json::{json, Value};

use super::{config_errors, read, CliError, Output};
use crate::policy::compile::Identity;
use crate::policy::usage::UsageFormat;
use crate::policy::{Decision, Policy, Reply};

struct EvalArgs {
    config: String,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    /// The consumer as the identity metadata would name it (for `identity.metadata` policies).
    identity: Option<String>,
    request_file: String,
}

fn parse_args(args: &[String]) -> Result<EvalArgs, CliError> {
    let mut method = "POST".to_owned();
    let mut path = None;
    let mut headers = Vec::new();
    let mut identity = None;
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--method" => method = value("--method")?,
            "--path" => path = Some(value("--path")?),
            "--identity" => identity = Some(value("--identity")?),
            "--header" => {
                let header = value("--header")?;
                let Some((name, header_value)) = header.split_once(':') else {
                    return Err(CliError::Usage(format!(
                        "--header \"{header}\" is not 'NAME: VALUE'"
                    )));
                };
                headers.push((
                    name.trim().to_ascii_lowercase(),
                    header_value.trim().as_bytes().to_vec(),
                ));
            }
            flag if flag.starts_with("--") => {
                return Err(CliError::Usage(format!("unknown option {flag}")))
            }
            _ => positional.push(arg.clone()),
        }
    }
    let [config, request_file] = <[String; 2]>::try_from(positional)
        .map_err(|_| CliError::Usage("eval takes a CONFIG file and a REQUEST_FILE".to_owned()))?;
    let path = path.ok_or_else(|| CliError::Usage("eval needs --path".to_owned()))?;
    Ok(EvalArgs {
        config,
        method,
        path,
        headers,
        identity,
        request_file,
    })
}

pub fn eval(args: &[String]) -> Result<Output, CliError> {
    let args = parse_args(args)?;
    let policy = match Policy::from_json(&read(&args.config)?) {
        Ok(policy) => policy,
        Err(errors) => {
            return Ok(Output {
                code: 2,
                stdout: String::new(),
                stderr: config_errors(&args.config, &errors),
            })
        }
    };
    // An identity the policy would never read must not look as if it had been used.
    match (&args.identity, &policy.identity) {
        (Some(_), Identity::Header(header)) => {
            return Err(CliError::Usage(format!(
                "--identity gives the consumer of a policy whose identity is metadata; this \
                 policy reads the header \"{header}\": use --header '{header}: NAME'"
            )))
        }
        (Some(_), Identity::None) => {
            return Err(CliError::Usage(
                "--identity gives the consumer of a policy whose identity is metadata; this \
                 policy has no identity, every request is evaluated as default"
                    .to_owned(),
            ))
        }
        _ => {}
    }
    let body = read(&args.request_file)?;

    // The request as Envoy would hand it to the filter.
    let mut headers = vec![
        (":method".to_owned(), args.method.into_bytes()),
        (":path".to_owned(), args.path.clone().into_bytes()),
    ];
    if !args.headers.iter().any(|(name, _)| name == "content-type") {
        headers.push(("content-type".to_owned(), b"application/json".to_vec()));
    }
    headers.extend(args.headers);

    let (decision, facts) =
        match policy.on_headers(&headers, args.identity.as_deref().map(str::as_bytes)) {
            Err(reply) => (Decision::Refuse(reply), Default::default()),
            Ok(pending) if body.len() > policy.max_body_bytes => (
                Decision::Refuse(crate::pipeline::classification::too_large(
                    &policy,
                    pending.shape(),
                )),
                Default::default(),
            ),
            Ok(pending) => policy.on_body(&pending, &body),
        };
    let facts: crate::policy::Facts = facts;
    let rules: Vec<Value> = facts
        .rules
        .iter()
        .map(|fired| {
            json!({"id": fired.rule, "action": fired.action.as_str(), "enforced": fired.enforced})
        })
        .collect();
    let (code, verdict) = match decision {
        Decision::Refuse(reply) => (
            1,
            json!({
                "decision": "deny",
                "status": reply.status(),
                "code": reply.code.as_str(),
                "consumer": facts.consumer,
                "model": facts.model,
                "provider": facts.provider,
                "rules": rules,
                "reply": reply_json(&reply),
            }),
        ),
        Decision::Forward(forward) => {
            let forwarded_body = forward
                .body
                .as_deref()
                .map(|new_body| serde_json::from_slice::<Value>(new_body).unwrap_or(Value::Null));
            (
                0,
                json!({
                    "decision": if forward.audited.is_some() { "audit" } else { "allow" },
                    "cluster": forward.cluster,
                    "path": forward.path.unwrap_or(args.path),
                    "consumer": facts.consumer,
                    "model": facts.model,
                    "forwarded_model": facts.upstream_model,
                    "provider": facts.provider,
                    "rules": rules,
                    "redactions": facts.redactions,
                    "output_cap_clamped": facts.output_cap_clamped,
                    "output_cap_added": facts.output_cap_added,
                    "stream_usage_added": facts.stream_usage_added,
                    "usage_format": forward.usage.map(usage_format_name),
                    "body_rewritten": forward.body.is_some(),
                    "forwarded_body": forwarded_body,
                    "audited": forward.audited.as_ref().map(|reply| json!({
                        "code": reply.code.as_str(),
                        "message": reply.message,
                    })),
                }),
            )
        }
    };
    Ok(Output {
        code,
        stdout: serde_json::to_string_pretty(&verdict).unwrap_or_default(),
        stderr: String::new(),
    })
}

/// The response usage format, as eval prints it.
fn usage_format_name(format: UsageFormat) -> &'static str {
    match format {
        UsageFormat::OpenAiChat => "openai_chat",
        UsageFormat::OpenAiResponses => "openai_responses",
        UsageFormat::Anthropic => "anthropic",
        UsageFormat::Gemini => "gemini",
        UsageFormat::BedrockConverse => "bedrock_converse",
    }
}

fn reply_json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body()).unwrap_or(Value::Null)
}
