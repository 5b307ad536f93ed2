#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    dedge::cli::main()
}
