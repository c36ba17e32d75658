//! The `posturio` command: checks and evaluates a policy with the same code the filter runs.

pub mod access_log;
mod diff;
mod eval;
mod key;
mod render;
pub mod replay;
mod replay_judge;
mod replay_render;
pub mod report;
pub mod schema;

use std::fmt;
use std::path::Path;

use crate::policy::{ConfigError, Policy};

pub const USAGE: &str = "\
usage:
  posturio check CONFIG
      Validate a policy file exactly as the filter does on load.
      Exit 0 when valid; 1 with one line per mistake (JSON path: problem).
  posturio check --diff OLD NEW [--json]
      Validate both policies, then print what the change does, one line per fact: models
      approved or withdrawn per consumer (globs expanded), consumers, catalogue, providers,
      rules, modes, identity, budgets, output-token caps and limits. '+' widens access or weakens inspection, '-' narrows
      it, '~' neither. --json prints the same as a JSON object.
      Exit 0 when both are valid (whatever changed); 1 with the mistakes otherwise.
  posturio eval CONFIG [--method M] --path P [--header 'NAME: VALUE']... [--identity NAME]
                [--response FILE [--response-header 'NAME: VALUE']...]
                [--guard-answer allow|flag|error] REQUEST_FILE
      Print, as JSON, the decision the filter would take on this request: the route, the
      model forwarded, the rules that fired, the output-token cap and stream usage edits, and
      the body as it would be forwarded.
      --identity gives the consumer as identity.metadata would name it (a usage error for
      a policy that reads a header: give that header with --header).
      REQUEST_FILE is the body ('-' for standard input; an empty file for no body).
      --response gives the upstream's answer (status 200) with its headers: the usage read
      from it and the budget charged are printed too.
      --guard-answer is what every guard service answers (none is called): allow (the
      default), flag or error; the guards asked and their outcomes are printed.
      --method defaults to POST; content-type application/json is assumed unless given.
      A request the gateway answers itself (a model list, GET /v1/models) prints that answer.
      Exit 0 when the request would be forwarded or answered, 1 when refused, 2 when CONFIG
      is invalid.
  posturio render [--check] FILE... | posturio render FILE --out OUT
      Rewrite each copy of a policy embedded in FILE (an Envoy configuration, an ECDS file, a
      Kubernetes manifest) from the policy file its marker names: a comment line
      '# posturio render: SOURCE' (relative to FILE's directory) right above the key that
      holds the copy. Each SOURCE is validated first; an invalid one is reported with the JSON
      path of each mistake and nothing is written. Files are replaced atomically.
      --check writes nothing and exits 1 if a copy differs from its source.
      --out writes the rendered FILE to OUT instead (e.g. a watched ECDS file).
      Exit 0 when every copy is (now) in step; 1 otherwise.
  posturio key new [--consumer NAME]
      Print a fresh API key (pst_ and 43 characters of base64url: 32 random bytes from the
      operating system) alone on standard output, and on standard error the line to add to
      the policy: add to consumers.NAME.api_keys: \"sha256:...\". Hand the key to the consumer;
      the policy holds only its hash.
  posturio key hash
      Read one key from standard input (one trailing newline removed, nothing else) and print
      its hash, sha256: and 64 lowercase hex digits, as consumers.NAME.api_keys lists it.
  posturio report [--json] ACCESS_LOG...
      Summarise Envoy's JSON access log (the shipped configs' format; '-' for standard input,
      gzip and rotated files too), per consumer and model, most refused and costly first:
      requests, forwarded, refusals and audits by code, rule hits by rule and action, guard
      outcomes, tokens, spend in dollars (and requests whose cost is unknown), what budgets
      were charged, the providers that served; totals and the time span. Lines that are not
      Posturio's are skipped and counted. --json prints the same as one JSON object.
  posturio replay [--json] [--fail-on-change] OLD NEW ACCESS_LOG...
      For the traffic in the log (written under OLD), what NEW would change: requests now
      refused or now allowed, by consumer, model and reason, judged from the recorded facts
      with NEW's own tables (catalogue, consumers' models and modes, rule actions, guards,
      budgets simulated in time order). What cannot be replayed without the prompt (a rule or
      guard NEW adds, a changed pattern, requested output, identity changes) is counted and
      listed. Exit 0; with --fail-on-change 1 when anything changes; 2 when OLD or NEW is
      invalid (with the JSON path of each mistake).
  posturio schema
      Print the JSON Schema (draft 2020-12) of the policy, for editors and CI. It checks keys,
      types and enum values; only check resolves names and expands globs.
Exit 2 on a usage error or an unreadable file.";

/// A failure of the command itself, as opposed to a verdict.
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Read(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "{message}\n\n{USAGE}"),
            CliError::Read(message) => f.write_str(message),
        }
    }
}

/// Runs the command; returns the process exit code and what to print on stdout and stderr.
pub fn run(args: &[String]) -> Result<Output, CliError> {
    match args.split_first() {
        Some((command, rest)) if command == "check" => check(rest),
        Some((command, rest)) if command == "eval" => eval::eval(rest),
        Some((command, rest)) if command == "schema" => schema::schema(rest),
        Some((command, rest)) if command == "render" => render::render(rest),
        Some((command, rest)) if command == "key" => key::key(rest),
        Some((command, rest)) if command == "report" => report::report(rest),
        Some((command, rest)) if command == "replay" => replay::replay(rest),
        Some((command, _)) if command == "help" || command == "--help" || command == "-h" => {
            Ok(Output {
                code: 0,
                stdout: USAGE.to_owned(),
                stderr: String::new(),
            })
        }
        Some((command, _)) => Err(CliError::Usage(format!("unknown command \"{command}\""))),
        None => Err(CliError::Usage("no command given".to_owned())),
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn check(args: &[String]) -> Result<Output, CliError> {
    if args.iter().any(|arg| arg == "--diff") {
        return diff::check_diff(args);
    }
    let [config_path] = args else {
        return Err(CliError::Usage(
            "check takes exactly one CONFIG file".to_owned(),
        ));
    };
    let bytes = read(config_path)?;
    // The upstream filter of a pool cluster takes `{"role": "upstream"}` and nothing else.
    match crate::pipeline::configure::upstream_role(&bytes) {
        Ok(true) => {
            return Ok(Output {
                code: 0,
                stdout: format!(
                    "{config_path}: valid (the upstream filter of a pool cluster; no policy)"
                ),
                stderr: String::new(),
            })
        }
        Ok(false) => {}
        Err(error) => {
            return Ok(Output {
                code: 1,
                stdout: String::new(),
                stderr: format!("{config_path}: {error}"),
            })
        }
    }
    Ok(match Policy::from_json(&bytes) {
        Ok(policy) => Output {
            code: 0,
            stdout: format!(
                "{config_path}: valid ({} providers, {} models, {} consumers, mode {})",
                policy.provider_count(),
                policy.model_count(),
                policy.consumer_count(),
                policy.mode.as_str()
            ),
            stderr: String::new(),
        },
        Err(errors) => Output {
            code: 1,
            stdout: String::new(),
            stderr: config_errors(config_path, &errors),
        },
    })
}

fn config_errors(config_path: &str, errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|error| format!("{config_path}: {error}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read(path: &str) -> Result<Vec<u8>, CliError> {
    let result = if path == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(Path::new(path))
    };
    result.map_err(|error| CliError::Read(format!("{path}: cannot read: {error}")))
}
