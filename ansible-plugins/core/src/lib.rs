//! The pure-Rust core of Sluice's Ansible callbacks: the node console client (protocol v1),
//! Zuul's `job-output.txt` line format and the `job-output.json` writer.
