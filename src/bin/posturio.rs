//! The `posturio` command line: see `posturio help`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match posturio::cli::run(&args) {
        Ok(output) => {
            // A reader that stops early (`posturio schema | head`) is not an error.
            if !output.stdout.is_empty() {
                let _ = writeln!(std::io::stdout(), "{}", output.stdout);
            }
            if !output.stderr.is_empty() {
                let _ = writeln!(std::io::stderr(), "{}", output.stderr);
            }
            ExitCode::from(u8::try_from(output.code).unwrap_or(1))
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "posturio: {error}");
            ExitCode::from(2)
        }
    }
}
