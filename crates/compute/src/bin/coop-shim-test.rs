//! The shim as a standalone binary, for the runtime's integration tests
//! (`tests/runtime.rs`): the coop binary does the same from its hidden
//! `coop shim` subcommand. Run as `coop-shim-test start|exec|delete|userns ...`.

fn main() -> std::process::ExitCode {
    coop_compute::shim::main(std::env::args_os().skip(1).collect())
}
