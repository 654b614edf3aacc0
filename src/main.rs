//! The `quire` binary: parse the command line, run a subcommand.

fn main() -> std::process::ExitCode {
    quire::cli::main()
}
