//! Child processes of a build: the bubblewrap command line that confines `ansible-playbook`, the
//! process-group runner with its SIGTERM → grace → SIGKILL termination, and the per-build
//! ssh-agent.
