//! The docs show what runs: every transcript in README.md and docs/*.md is run, in a scratch
//! copy of the repository where `make run`'s own script (envoy/run.py) serves envoy/policy.json,
//! and its output compared with what the page shows.
//!
//! What the pages follow, and this test reads:
//! - A ```` ```console ```` block is a transcript: each `$ ` line is a command (a line ending in
//!   `\` continues on the next), run by bash from the repository root with `posturio` on PATH;
//!   the lines up to the next command are its output (standard output and error). In the
//!   output, `…` stands for any text within a line, and a line that is only `…` for any number
//!   of lines. `localhost:10000`, `:9901` and `:18081` are `make run`'s ports; the test runs on
//!   free ports and rewrites them. Files a page names but does not ship (`typo.json`,
//!   `policy.main.json`) come from tests/fixtures/docs/.
//! - A ```` ```diff ```` block headed `--- a/PATH` is an edit the reader makes; the test applies
//!   it, to the scratch copy.
//! - A ```` ```text make-run ```` block is what `make run` prints after the edit before it, in
//!   order (other lines may come between).
//!
//! Pages are run in the order README.md, docs/cli.md, docs/getting-started.md, then the rest;
//! within a page, top to bottom: a page's transcript may depend on the requests above it.
// Test code: failing loudly (unwrap/panic) is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::build::{native_module_path, Build};
use common::envoy::{envoy_binary, module_path, reserve_port};
use common::mock::python;

/// `make run`'s ports as the docs show them, in the order of run.py's options.
const SHOWN_PORTS: [(&str, u16); 6] = [
    ("--port", 10000),
    ("--admin-port", 9901),
    ("--openai-port", 18081),
    ("--anthropic-port", 18082),
    ("--gemini-port", 18083),
    ("--azure-port", 18084),
];
const READY_DEADLINE: Duration = Duration::from_secs(60);
const OUTPUT_DEADLINE: Duration = Duration::from_secs(20);

/// One fenced block of a page.
#[derive(Debug)]
enum Block {
    Console { line: usize, text: String },
    Diff { line: usize, text: String },
    MakeRun { line: usize, text: String },
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, Vec<String>)> = None;
    for (number, line) in page.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                None => open = Some((number + 1, info.trim().to_owned(), Vec::new())),
                Some((start, info, lines)) => {
                    let text = lines.join("\n");
                    match info.as_str() {
                        "console" => out.push(Block::Console { line: start, text }),
                        "diff" if text.starts_with("--- a/") => {
                            out.push(Block::Diff { line: start, text })
                        }
                        "text make-run" => out.push(Block::MakeRun { line: start, text }),
                        _ => {}
                    }
                }
            }
            continue;
        }
        if let Some((_, _, lines)) = open.as_mut() {
            lines.push(line.to_owned());
        }
    }
    // Indented blocks (in list items) lose their common indentation.
    out.into_iter()
        .map(|block| match block {
            Block::Console { line, text } => Block::Console {
                line,
                text: dedent(&text),
            },
            other => other,
        })
        .collect()
}

fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| if l.len() >= indent { &l[indent..] } else { "" })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A transcript's commands, each with the output shown for it.
fn commands(transcript: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut continuing = false;
    for line in transcript.lines() {
        if continuing {
            let (command, _) = out.last_mut().unwrap();
            command.push('\n');
            command.push_str(line);
            continuing = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            out.push((command.to_owned(), Vec::new()));
            continuing = command.ends_with('\\');
        } else {
            let Some((_, output)) = out.last_mut() else {
                panic!("console block text before any `$ ` command: {line:?}");
            };
            output.push(line.to_owned());
        }
    }
    // Blank lines between one command's output and the next `$` separate, they are not output.
    for (_, output) in &mut out {
        while output.last().is_some_and(|l| l.trim().is_empty()) {
            output.pop();
        }
    }
    out
}

/// Whether `line` matches `pattern`, where `…` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `lines` match `patterns`, where a pattern line `…` stands for any number of lines.
fn lines_match(patterns: &[String], lines: &[&str]) -> bool {
    match patterns.split_first() {
        None => lines.is_empty(),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..]))
        }
        Some((first, rest)) => {
            !lines.is_empty() && line_matches(first, lines[0]) && lines_match(rest, &lines[1..])
        }
    }
}

/// `make run` (envoy/run.py) in a scratch copy of the repository, on free ports.
struct MakeRun {
    root: tempfile::TempDir,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    ports: Vec<(u16, u16)>,
}

impl MakeRun {
    fn start() -> MakeRun {
        let repo = common::repo_root();
        let root = tempfile::tempdir().unwrap();
        copy_dir(&repo.join("envoy"), &root.path().join("envoy"));
        std::fs::create_dir_all(root.path().join("tests")).unwrap();
        std::fs::copy(
            repo.join("tests/mock_provider.py"),
            root.path().join("tests/mock_provider.py"),
        )
        .unwrap();
        copy_dir(&repo.join("tests/fixtures/docs"), root.path());
        // The module of the build under test, where run.py's configuration loads it from.
        let build = Build::current();
        let (module, at) = match build {
            Build::Wasm => (module_path(), "target/wasm32-wasip1/release/posturio.wasm"),
            Build::Native => (native_module_path(), common::build::NATIVE_MODULE),
        };
        let at = root.path().join(at);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(module, at).unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_posturio"),
            root.path().join("bin/posturio"),
        )
        .unwrap();

        let reserved: Vec<_> = SHOWN_PORTS.iter().map(|_| reserve_port()).collect();
        let ports: Vec<(u16, u16)> = SHOWN_PORTS
            .iter()
            .zip(&reserved)
            .map(|((_, shown), listener)| (*shown, listener.local_addr().unwrap().port()))
            .collect();
        let mut command = Command::new(python());
        command
            .arg(repo.join("envoy/run.py"))
            .arg("--envoy")
            .arg(envoy_binary())
            .arg("--python")
            .arg(python())
            .arg("--posturio")
            .arg(env!("CARGO_BIN_EXE_posturio"))
            .arg("--build")
            .arg(build.name());
        for ((option, _), (_, port)) in SHOWN_PORTS.iter().zip(&ports) {
            command.arg(option).arg(port.to_string());
        }
        drop(reserved);
        let mut child = command
            .current_dir(root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: run.py, the mock and Envoy are stopped together.
            .process_group(0)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.lock().unwrap().push(line);
                }
            });
        }
        let run = MakeRun {
            root,
            child,
            output,
            ports,
        };
        let banner = ["  Ctrl-C stops Envoy and the mock providers.".to_owned()];
        run.wait_for("make run", &banner, 0, READY_DEADLINE);
        run
    }

    fn output_len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Waits until `expected` appear in order in the output from line `from` on.
    fn wait_for(&self, context: &str, expected: &[String], from: usize, deadline: Duration) {
        let start = Instant::now();
        loop {
            {
                let output = self.output.lock().unwrap();
                let mut want = expected.iter().peekable();
                for line in output.iter().skip(from) {
                    if want
                        .peek()
                        .is_some_and(|pattern| line_matches(pattern, line))
                    {
                        want.next();
                    }
                }
                if want.peek().is_none() {
                    return;
                }
                if start.elapsed() > deadline {
                    panic!(
                        "{context}: make run did not print {expected:#?}; it printed:\n{}",
                        output.join("\n")
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `command` with the shown ports replaced by the test's.
    fn localize(&self, command: &str) -> String {
        self.ports
            .iter()
            .fold(command.to_owned(), |command, (shown, port)| {
                command.replace(&format!(":{shown}"), &format!(":{port}"))
            })
    }

    fn run(&self, command: &str) -> String {
        let path = format!(
            "{}:{}",
            self.root.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("{} 2>&1", self.localize(command)))
            .current_dir(self.root.path())
            .env("PATH", path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).replace('\r', "")
    }

    fn apply(&self, diff: &str, page: &str, line: usize) {
        let mut lines = diff.lines();
        let file = lines
            .next()
            .unwrap()
            .trim_start_matches("--- a/")
            .to_owned();
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for line in lines {
            if line.starts_with("+++") || line.starts_with("@@") {
                continue;
            }
            match line.split_at(line.len().min(1)) {
                ("-", rest) => old.push(rest),
                ("+", rest) => new.push(rest),
                (_, rest) => {
                    old.push(rest);
                    new.push(rest);
                }
            }
        }
        let path = self.root.path().join(&file);
        let text = std::fs::read_to_string(&path).unwrap();
        let (old, new) = (old.join("\n"), new.join("\n"));
        assert_eq!(
            text.matches(&old).count(),
            1,
            "{page}:{line}: the diff's old lines are not in {file} exactly once:\n{old}"
        );
        // Written in place, as an editor saves.
        std::fs::write(&path, text.replacen(&old, &new, 1)).unwrap();
    }
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The pages in the order they are run.
fn pages() -> Vec<PathBuf> {
    let repo = common::repo_root();
    let first = ["README.md", "docs/cli.md", "docs/getting-started.md"];
    let mut rest: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter(|p| !first.iter().any(|f| p.ends_with(f)))
        .collect();
    rest.sort();
    first.iter().map(|f| repo.join(f)).chain(rest).collect()
}

#[test]
fn every_transcript_in_the_docs_is_what_runs() {
    let run = MakeRun::start();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut since_edit = run.output_len();
    for page in pages() {
        let name = page
            .strip_prefix(common::repo_root())
            .unwrap()
            .display()
            .to_string();
        let text = std::fs::read_to_string(&page).unwrap();
        for block in blocks(&text) {
            match block {
                Block::Diff { line, text } => {
                    since_edit = run.output_len();
                    run.apply(&text, &name, line);
                }
                Block::MakeRun { line, text } => {
                    let expected: Vec<String> = text.lines().map(str::to_owned).collect();
                    let context = format!("{name}:{line}");
                    run.wait_for(&context, &expected, since_edit, OUTPUT_DEADLINE);
                    checked += 1;
                }
                Block::Console { line, text } => {
                    let transcript = commands(&text);
                    assert!(
                        !transcript.is_empty(),
                        "{name}:{line}: a console block without a `$ ` command"
                    );
                    for (command, shown) in transcript {
                        let actual = run.run(&command);
                        let actual_lines: Vec<&str> =
                            actual.trim_end_matches('\n').lines().collect();
                        let actual_lines = if actual.is_empty() {
                            Vec::new()
                        } else {
                            actual_lines
                        };
                        if !lines_match(&shown, &actual_lines) {
                            failures.push(format!(
                                "{name}:{line}: `$ {command}`\n--- the page shows:\n{}\n--- it prints:\n{actual}",
                                shown.join("\n")
                            ));
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 15, "only {checked} commands checked");
}

#[test]
fn the_transcript_reader_matches_with_elisions() {
    let shown = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    // One named case per line: (pattern, output, matches).
    let cases: [(&str, &str, &str, bool); 8] = [
        ("exact", "a\nb", "a\nb", true),
        ("exact_differs", "a\nb", "a\nc", false),
        (
            "within_a_line",
            "{\"id\": \"x-…\", …}",
            "{\"id\": \"x-12\", \"n\": 1}",
            true,
        ),
        (
            "within_a_line_no",
            "{\"id\": \"x-…\"}",
            "{\"id\": \"y-12\"}",
            false,
        ),
        (
            "any_lines",
            "HTTP/1.1 403 Forbidden\n…\n\n{}",
            "HTTP/1.1 403 Forbidden\na: 1\nb: 2\n\n{}",
            true,
        ),
        ("any_lines_none", "a\n…\nb", "a\nb", true),
        ("missing_line", "a\nb\nc", "a\nc", false),
        ("extra_line", "a", "a\nb", false),
    ];
    for (name, pattern, output, want) in cases {
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines_match(&shown(pattern), &lines), want, "{name}");
    }
    let transcript = commands("$ echo a \\\n    b\na b\n\n$ true\n");
    assert_eq!(
        transcript,
        [
            ("echo a \\\n    b".to_owned(), vec!["a b".to_owned()]),
            ("true".to_owned(), vec![])
        ]
    );
}
