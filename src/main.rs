//! The `hotcall` command line: see `hotcall --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
