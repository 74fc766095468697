//! Harness for Sluice's integration tests: a real sshd on loopback with a throwaway key, git
//! repository fixtures, and a runner for the `sluice` binary.
