fn main() -> std::process::ExitCode {
    dedge::cli::main()
}
