//! Speculative repository state: clones every project a build needs into its workspace with
//! git2, merges the change (and the changes ahead of it) onto its branch with the project's merge
//! mode, and checks out the branch each project should show.
