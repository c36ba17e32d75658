//! The `posturio` command line: see `posturio help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match posturio::cli::run(&args) {
        Ok(output) => {
            if !output.stdout.is_empty() {
                println!("{}", output.stdout);
            }
            if !output.stderr.is_empty() {
                eprintln!("{}", output.stderr);
            }
            ExitCode::from(u8::try_from(output.code).unwrap_or(1))
        }
        Err(error) => {
            eprintln!("posturio: {error}");
            ExitCode::from(2)
        }
    }
}
