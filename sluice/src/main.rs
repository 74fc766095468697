//! The `sluice` binary: parses the command line, installs logging and hands over to one crate per
//! subcommand.
fn main() {}
