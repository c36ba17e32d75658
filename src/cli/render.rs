//! `posturio render`: the policy copies embedded in Envoy configurations, ECDS files and
//! Kubernetes manifests, rewritten from the policy file each one names.
//!
//! A copy is marked by a comment line `# posturio render: SOURCE` (SOURCE relative to the
//! marked file's directory) directly above the YAML key that holds the policy: a literal block
//! (`value: |`, the Wasm filter's StringValue) or a mapping (`pluginConfig:`, `config:`), whose
//! value is then the JSON text itself, which is also YAML. The key's indented lines are
//! replaced by SOURCE, byte for byte, indented two columns deeper than the key.

use std::path::{Path, PathBuf};

use super::{config_errors, CliError, Output};
use crate::policy::Policy;

const MARKER: &str = "# posturio render:";

struct RenderArgs {
    check: bool,
    out: Option<String>,
    files: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<RenderArgs, CliError> {
    let mut check = false;
    let mut out = None;
    let mut files = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => {
                out = Some(
                    args.next()
                        .cloned()
                        .ok_or_else(|| CliError::Usage("--out needs a value".to_owned()))?,
                );
            }
            flag if flag.starts_with("--") => {
                return Err(CliError::Usage(format!("unknown option {flag}")))
            }
            _ => files.push(arg.clone()),
        }
    }
    if files.is_empty() {
        return Err(CliError::Usage("render needs at least one FILE".to_owned()));
    }
    if out.is_some() && (files.len() != 1 || check) {
        return Err(CliError::Usage(
            "--out takes exactly one FILE, without --check".to_owned(),
        ));
    }
    Ok(RenderArgs { check, out, files })
}

/// Why a file could not be rendered.
enum Failure {
    /// A named policy file is invalid: its mistakes, one line each.
    Invalid(String),
    /// The file, or a policy it names, cannot be read or written, or a marker is misplaced.
    Broken(String),
}

pub fn render(args: &[String]) -> Result<Output, CliError> {
    let args = parse_args(args)?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut code = 0;
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .map_err(|error| CliError::Read(format!("{file}: cannot read: {error}")))?;
        let rendered = match render_text(Path::new(file), &text) {
            Ok(rendered) => rendered,
            Err(Failure::Invalid(errors)) => {
                stderr.push(errors);
                code = 1;
                continue;
            }
            Err(Failure::Broken(message)) => {
                stderr.push(format!("{file}: {message}"));
                code = 1;
                continue;
            }
        };
        let Some((rendered, sources)) = rendered else {
            continue;
        };
        let sources = sources.join(", ");
        if args.check {
            if rendered == text {
                stdout.push(format!("{file}: in step with {sources}"));
            } else {
                stderr.push(format!(
                    "{file}: differs from {sources}; run `posturio render {file}`"
                ));
                code = 1;
            }
            continue;
        }
        let target = args.out.as_deref().unwrap_or(file);
        if args.out.is_none() && rendered == text {
            stdout.push(format!("{file}: in step with {sources}"));
            continue;
        }
        match write_atomically(Path::new(target), &rendered) {
            Ok(()) => stdout.push(format!("{target}: rendered from {sources}")),
            Err(error) => {
                stderr.push(format!("{target}: cannot write: {error}"));
                code = 1;
            }
        }
    }
    Ok(Output {
        code,
        stdout: stdout.join("\n"),
        stderr: stderr.join("\n"),
    })
}

/// `text` with each marked copy replaced by its source, and the sources as named; `None` when
/// the file marks no copy.
fn render_text(file: &Path, text: &str) -> Result<Option<(String, Vec<String>)>, Failure> {
    let lines: Vec<&str> = text.split('\n').collect();
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut sources = Vec::new();
    let mut index = 0;
    while let Some(line) = lines.get(index) {
        out.push((*line).to_owned());
        index = index.saturating_add(1);
        let Some(source) = marked_source(line) else {
            continue;
        };
        let number = index;
        let Some(key) = lines.get(index) else {
            return Err(Failure::Broken(format!(
                "line {number}: the marker is not followed by the key that holds the policy"
            )));
        };
        let trimmed = key.trim_end();
        if !(trimmed.ends_with(": |") || trimmed.ends_with(':')) || trimmed.trim().starts_with('#')
        {
            return Err(Failure::Broken(format!(
                "line {}: expected `KEY: |` or `KEY:` after the marker, found {trimmed:?}",
                number.saturating_add(1)
            )));
        }
        out.push((*key).to_owned());
        index = index.saturating_add(1);
        let key_indent = indent_of(key);
        // The key's value: every following line indented deeper, up to its last non-blank one.
        let mut end = index;
        let mut scan = index;
        while let Some(next) = lines.get(scan) {
            if next.trim().is_empty() {
                scan = scan.saturating_add(1);
                continue;
            }
            if indent_of(next) <= key_indent {
                break;
            }
            scan = scan.saturating_add(1);
            end = scan;
        }
        let policy_path = dir.join(source);
        let policy = read_policy(&policy_path, source)?;
        let pad = " ".repeat(key_indent.saturating_add(2));
        // YAML takes a block's indentation from its first line: leading space there would end
        // the block at the next line, and the rest would be read as YAML. Outside strings,
        // which cannot span lines, JSON ignores it.
        for policy_line in policy.trim().split('\n') {
            let policy_line = policy_line.trim_end_matches('\r');
            out.push(if policy_line.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{policy_line}")
            });
        }
        index = end;
        let shown = normalized(&policy_path).display().to_string();
        if !sources.contains(&shown) {
            sources.push(shown);
        }
    }
    if sources.is_empty() {
        return Ok(None);
    }
    Ok(Some((out.join("\n"), sources)))
}

/// The source named by a marker line, if `line` is one.
fn marked_source(line: &str) -> Option<&str> {
    let source = line.trim().strip_prefix(MARKER)?.trim();
    (!source.is_empty()).then_some(source)
}

/// The policy text at `path`, refused unless the filter would load it.
fn read_policy(path: &Path, named: &str) -> Result<String, Failure> {
    let shown = normalized(path).display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::Broken(format!("{named}: cannot read {shown}: {error}")))?;
    match Policy::from_json(text.as_bytes()) {
        Ok(_) => Ok(text),
        Err(errors) => Err(Failure::Invalid(config_errors(&shown, &errors))),
    }
}

/// `path` with each `name/..` removed, as a reader would name the file.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len()
        .saturating_sub(line.trim_start_matches(' ').len())
}

/// Writes a sibling file and renames it over `target`, so that a reader (Envoy watching an
/// ECDS file) sees the old file or the new one, never half of it.
fn write_atomically(target: &Path, text: &str) -> std::io::Result<()> {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary: PathBuf = target.with_file_name(format!(".{name}.posturio-render"));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o-mini": { "provider": "openai" } }
}
"#;

    fn rendered(yaml: &str) -> Result<Option<(String, Vec<String>)>, Failure> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.json"), POLICY).unwrap();
        std::fs::write(dir.path().join("bad.json"), "{\"providerz\": {}}").unwrap();
        render_text(&dir.path().join("envoy.yaml"), yaml)
    }

    fn text(yaml: &str) -> String {
        match rendered(yaml) {
            Ok(Some((text, _))) => text,
            Ok(None) => panic!("nothing rendered"),
            Err(Failure::Invalid(e) | Failure::Broken(e)) => panic!("{e}"),
        }
    }

    fn failure(yaml: &str) -> String {
        match rendered(yaml) {
            Err(Failure::Invalid(e) | Failure::Broken(e)) => e,
            Ok(_) => panic!("rendered"),
        }
    }

    const BLOCK: &str = "a:\n  # posturio render: policy.json\n  value: |\n    {}\n  b: 1\n";
    const BLOCK_RENDERED: &str = "a:\n  # posturio render: policy.json\n  value: |\n    {\n      \"providers\": { \"openai\": { \"cluster\": \"openai\", \"api\": \"openai\" } },\n      \"models\": { \"gpt-4o-mini\": { \"provider\": \"openai\" } }\n    }\n  b: 1\n";

    #[test]
    fn a_literal_block_is_replaced_by_the_source_indented() {
        assert_eq!(text(BLOCK), BLOCK_RENDERED);
    }

    #[test]
    fn a_rendered_file_renders_to_itself() {
        assert_eq!(text(BLOCK_RENDERED), BLOCK_RENDERED);
    }

    #[test]
    fn a_mapping_key_gets_the_json_as_its_value() {
        let yaml = "spec:\n  # posturio render: policy.json\n  pluginConfig:\n    mode: enforce\n\n    providers: {}\n\nkind: X\n";
        let out = text(yaml);
        assert!(
            out.starts_with("spec:\n  # posturio render: policy.json\n  pluginConfig:\n    {\n"),
            "{out}"
        );
        assert!(out.ends_with("    }\n\nkind: X\n"), "{out}");
        assert!(!out.contains("mode: enforce"), "{out}");
    }

    #[test]
    fn leading_space_in_the_source_cannot_end_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let indented = format!("\n   \t {}", POLICY.replace("\n  ", "\n"));
        std::fs::write(dir.path().join("policy.json"), indented).unwrap();
        let yaml = "a:\n  # posturio render: policy.json\n  value: |\n    {}\nb: 1\n";
        let Ok(Some((out, _))) = render_text(&dir.path().join("e.yaml"), yaml) else {
            panic!("nothing rendered");
        };
        assert!(
            out.contains("  value: |\n    {\n    \"providers\""),
            "{out}"
        );
    }

    #[test]
    fn a_drifted_copy_is_rewritten() {
        let drifted = BLOCK_RENDERED.replace("gpt-4o-mini", "gpt-4o");
        assert_eq!(text(&drifted), BLOCK_RENDERED);
    }

    #[test]
    fn a_file_without_marker_is_left_alone() {
        assert!(matches!(rendered("a: 1\n"), Ok(None)));
    }

    #[test]
    fn an_invalid_source_is_refused_with_its_path() {
        let error = failure("# posturio render: bad.json\nvalue: |\n  {}\n");
        assert!(
            error.contains("bad.json: providerz: unknown field"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_source_is_refused() {
        let error = failure("# posturio render: missing.json\nvalue: |\n  {}\n");
        assert!(error.contains("missing.json: cannot read"), "{error}");
    }

    #[test]
    fn a_marker_must_sit_on_the_key() {
        let error = failure("# posturio render: policy.json\n\"@type\": x\n");
        assert!(error.contains("expected `KEY: |` or `KEY:`"), "{error}");
        let error = failure("a: 1\n# posturio render: policy.json");
        assert!(error.contains("not followed by the key"), "{error}");
    }
}
