//! The `laepca` command-line tool: `fit`, `transform`, `devices` and `demo` (see `laepca --help`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
